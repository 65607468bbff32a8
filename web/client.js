// @ts-check
// A party's side of signaling, without I/O: the twin of mpyc_webrtc/client.py.
//
// Same methods (in camelCase), same rules, same events: the Python module's docstring is
// the specification and lists them. The page (lobby.js, links.js) feeds this what happened
// and does what the returned events say; tests/client_scenarios.json drives both twins.

import { fingerprintOf } from './sealing.js';
import { certificate as certificateOf, difference, saidBy } from './shape.js';

/** @typedef {import('./sentences.js').Sentences} Sentences */
/** @typedef {{event: string, [field: string]: any}} ClientEvent */
/**
 * @typedef {{pid: number, name?: string, label?: string, state?: string, ready?: boolean,
 *   lacks?: string[]}} Member
 */

const VERSION = 1; // wire.VERSION; a test checks they agree
/** The member state of a party that cannot take part (wire.UNSUPPORTED). */
const UNSUPPORTED = 'unsupported';
/** The member state of a party that lost its connection before the start (wire.RECONNECTING). */
const RECONNECTING = 'reconnecting';
/** How long to wait before reconnecting: the first delay, doubled per attempt, at most. */
export const RECONNECT_FIRST_DELAY = 0.5;
export const RECONNECT_MAX_DELAY = 8;
/** Attempts in a row without getting the place back before giving up (about two minutes). */
export const MAX_RECONNECT_ATTEMPTS = 20;
/** Errors in the lobby after which the session is over: no use reconnecting. */
const SESSION_ENDING = new Set(['server_shutting_down', 'session_expired', 'too_many_messages']);
/** The welcome's fields that must not change when this party joins again. */
const REJOIN_SAME = ['session', 'parties', 'relay_only', 'labels', 'program', 'descriptor', 'pins'];
/** Longest chat message, in characters (wire.MAX_CHAT_LENGTH). */
export const MAX_CHAT_LENGTH = 500;
/** What a chat payload carries (wire.SIGNAL_KINDS.chat). */
const CHAT_FIELDS = ['text', 'identity', 'name', 'signature', 'number'];

/**
 * Seconds before reconnect attempt ``attempt`` (1, 2, ...): 0.5, 1, 2, 4, 8, 8, ...
 * (client.reconnect_delay).
 * @param {number} attempt
 */
export function reconnectDelay(attempt) {
  return Math.min(RECONNECT_FIRST_DELAY * 2 ** (attempt - 1), RECONNECT_MAX_DELAY);
}

/** A party's own resume secret: 16 random bytes, base64url (22 characters). */
export function newResume() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * A roster member's state as a person reads it: a ``member.*`` key of the sentences
 * (as client.member_state).
 * @param {Member} member
 * @param {boolean} started
 */
export function memberState(member, started) {
  const { state } = member;
  if (state === 'left' || state === 'failed' || state === UNSUPPORTED || state === RECONNECTING) return state;
  if (!started) return member.ready ? 'ready' : 'joined';
  if (state === 'done') return member.ready ? 'again' : 'done';
  if (state === 'connected') return 'computing';
  return 'connecting';
}

/**
 * What a browser lacks, in words: ``WebRTC data channels and WebAssembly`` (names the
 * sentences do not know are left out: they come from the server, which may lie). As
 * client.lacks_words.
 * @param {unknown[]} lacks
 * @param {Sentences} sentences
 */
export function lacksWords(lacks, sentences) {
  const words = lacks.filter((name) => typeof name === 'string' && Object.hasOwn(sentences.table, `capability.${name}`))
    .map((name) => sentences.say(`capability.${name}`));
  if (!words.length) return sentences.say('capability.unknown');
  return words.length === 1 ? words[0] : `${words.slice(0, -1).join(', ')} and ${words[words.length - 1]}`;
}

/**
 * A ``member.*`` state (``memberState``) as a sentence; ``unsupported`` says what the
 * party's browser lacks. As client.state_words.
 * @param {string} state
 * @param {unknown[] | undefined} lacks
 * @param {Sentences} sentences
 */
export function stateWords(state, lacks, sentences) {
  if (state === UNSUPPORTED) return sentences.say('member.unsupported', { lacks: lacksWords(lacks ?? [], sentences) });
  return sentences.say(`member.${state}`);
}

/**
 * How a roster member is doing, as the roster says it to a person (client.member_words).
 * @param {Member} member
 * @param {boolean} started
 * @param {Sentences} sentences
 */
export function memberWords(member, started, sentences) {
  return stateWords(memberState(member, started), Array.isArray(member.lacks) ? member.lacks : [], sentences);
}

/**
 * @param {string} type
 * @param {Record<string, any>} fields
 * @returns {ClientEvent}
 */
function send(type, fields) {
  return { event: 'send', message: { v: VERSION, type, ...fields } };
}

/**
 * The ``candidate`` event for a peer's candidate payload; none for end-of-candidates.
 * @param {number} peer
 * @param {Record<string, any>} payload
 * @returns {ClientEvent[]}
 */
function candidateEvents(peer, payload) {
  if (!payload.candidate) return [];
  const mid = payload.sdpMid ?? null;
  let index = payload.sdpMLineIndex ?? null;
  if (mid === null && index === null) index = 0; // there is only one media section
  return [{ event: 'candidate', peer, candidate: payload.candidate, sdpMid: mid, sdpMLineIndex: index }];
}

/** What the rules remember about the link to one party. */
class Link {
  /** @param {number} peer @param {boolean} offerer */
  constructor(peer, offerer) {
    this.peer = peer;
    this.offerer = offerer;
    /** @type {string | null} the description due from the peer; null once it came */
    this.expecting = offerer ? 'answer' : 'offer';
    /** @type {Record<string, any>[]} candidates that came before it */
    this.early = [];
    /** the description came and its signature is being checked (``verify``) */
    this.verifying = false;
  }
}

export class SignalingClient {
  /**
   * @param {string} session
   * @param {string} linkHash the program hash the join link carries
   * @param {Sentences} sentences
   * @param {{token: string, name?: string, role?: number | null, ready?: boolean,
   *   lacks?: string[] | null, resume?: string | null, identity?: string | null,
   *   proof?: string | null}} options ``lacks``: what this
   *   party's browser lacks of wire.CAPABILITIES (then it only holds its place and says
   *   why); ``resume``: this party's own secret for getting its place back (by default a
   *   new one); ``identity``: this party's did:key, ``proof`` its signature over
   *   joinStatement(session, resume)
   */
  constructor(session, linkHash, sentences, {
    token, name = '', role = null, ready = false, lacks = null, resume = null,
    identity = null, proof = null,
  }) {
    this.session = session;
    this.linkHash = linkHash;
    this.sentences = sentences;
    this.token = token;
    this.name = name;
    this.identity = identity;
    this.proof = proof;
    this.role = role;
    this.lacks = [...(lacks ?? [])];
    /** whether this party said it is ready for the next round (and did not take it back) */
    this.ready = ready && !this.lacks.length;
    /** it took it back, and the server may have started the round before it heard so */
    this.retracting = false;
    /**
     * @type {'new' | 'joining' | 'lobby' | 'reconnecting' | 'rejoining' | 'started'
     *   | 'stopped' | 'refused' | 'closed'}
     */
    this.phase = 'new';
    /** whether the connection to the server closed for good (disconnected) */
    this.closed = false;
    /** shown on every join: a server gives the place it was taken with back to it */
    this.resume = resume ?? newResume();
    /** reconnect attempts since the connection was lost (0: connected, or never lost) */
    this.attempt = 0;
    /** the server said ``reconnect``: the next attempt goes at once */
    this.reconnectNow = false;
    /** an error said the session is over (SESSION_ENDING): no reconnecting */
    this.sessionOver = false;
    /** @type {Record<string, any> | null} */
    this.welcome = null;
    /** @type {Record<string, any> | null} */
    this.roster = null;
    this.round = 0;
    this.programOk = false;
    this.sessionOk = false;
    /** @type {Set<string>} the DTLS certificate fingerprints this party shows */
    this.ownCertificates = new Set();
    /** @type {Map<number, string>} and each peer */
    this.certificates = new Map();
    /** @type {Map<number, Link>} */
    this.links = new Map();
    /** @type {[number, Record<string, any>][]} signals from parties without a link yet */
    this.held = [];
    /** @type {Set<number>} */
    this.gone = new Set();
    /** @type {Set<number>} peers seen away (left or reconnecting) after the start: one seen
     * again is back after a reload, with a new page (``restart_numbering``) */
    this.away = new Set();
    /** @type {Map<number, [string, string | null]>} */
    this.reported = new Map();
    /** @type {Map<number, {identity: string, name: string}>} each peer's verified identity */
    this.identities = new Map();
    /** @type {Map<number, string>} the key each peer signed its chat with before that */
    this.claimed = new Map();
    /** @type {Map<string, [string, number, Record<string, any>]>} signatures being checked */
    this.pending = new Map();
    this.verifications = 0;
    /** this party's chat messages so far */
    this.chats = 0;
  }

  /** @returns {number | null} */
  get pid() { return this.welcome ? this.welcome.pid : null; }

  /** @returns {number | null} */
  get parties() { return this.welcome ? this.welcome.parties : null; }

  get stopped() { return this.phase === 'stopped'; }

  /** Whether the program and the session are known to be what the link's creator chose. */
  get checked() { return this.programOk && this.sessionOk; }

  // -- the connection to the server -------------------------------------------------------

  /**
   * The WebSocket is open: ask to join (again, after a ``reconnect``: this party's own place).
   * @returns {ClientEvent[]}
   */
  connected() {
    let role;
    if (this.phase === 'new') {
      this.phase = 'joining';
      role = this.role;
    } else if (this.phase === 'reconnecting') {
      this.phase = 'rejoining';
      role = this.pid;
    } else {
      return [];
    }
    /** @type {Record<string, any>} */
    const fields = { session: this.session, token: this.token };
    if (this.name) fields.name = this.name;
    if (role !== null && role !== undefined) fields.role = role;
    fields.ready = this.ready;
    fields.resume = this.resume;
    if (this.identity !== null && this.proof !== null) {
      fields.identity = this.identity;
      fields.proof = this.proof;
    }
    return [send('join', fields)];
  }

  /**
   * The WebSocket closed, for whatever reason (or a new one could not be opened).
   * @returns {ClientEvent[]}
   */
  disconnected() {
    if (this.closed) return [];
    // Before the start and after it alike: a party that lost its connection for a moment
    // gets its place back, and whoever computes with it goes on over their links.
    if (['lobby', 'started', 'reconnecting', 'rejoining'].includes(this.phase) && !this.sessionOver) {
      this.attempt += 1;
      if (this.attempt <= MAX_RECONNECT_ATTEMPTS) {
        const delay = this.reconnectNow ? 0 : reconnectDelay(this.attempt);
        this.reconnectNow = false;
        this.phase = 'reconnecting';
        return [{ event: 'reconnect', attempt: this.attempt, delay }];
      }
      this.closed = true;
      this.phase = 'closed';
      let seconds = 0;
      for (let a = 1; a < this.attempt; a += 1) seconds += reconnectDelay(a);
      return [{
        event: 'closed', welcomed: true, started: this.round > 0,
        message: this.sentences.say('reconnect.gave_up', { seconds: Math.round(seconds) }),
      }];
    }
    this.closed = true;
    const welcomed = this.welcome !== null;
    const started = this.round > 0;
    if (this.phase !== 'stopped') this.phase = 'closed';
    return [{ event: 'closed', welcomed, started }];
  }

  /**
   * A message from the server (JSON, decoded).
   * @param {Record<string, any>} message
   * @returns {ClientEvent[]}
   */
  receive(message) {
    // Nothing the server says counts any more (or: it is not this socket's).
    if (['stopped', 'refused', 'reconnecting'].includes(this.phase)) return [];
    switch (message.type) {
      case 'welcome': return this.receiveWelcome(message);
      case 'error': return this.receiveError(message);
      case 'roster': return this.receiveRoster(message);
      case 'start': return this.receiveStart(message);
      case 'signal': return this.receiveSignal(message);
      case 'chat': return this.receiveChat(message);
      default: return [];
    }
  }

  /** @param {Record<string, any>} message @returns {ClientEvent[]} */
  receiveWelcome(message) {
    if (this.phase === 'rejoining') return this.rejoined(message);
    if (this.welcome !== null) return [];
    this.welcome = message;
    this.phase = 'lobby';
    if (this.lacks.length) { // nothing to check: this party will run nothing
      return [
        { event: 'welcome', welcome: message },
        send('status', { state: UNSUPPORTED, detail: this.lacks.join(',') }),
      ];
    }
    return [
      { event: 'welcome', welcome: message },
      { event: 'open_descriptor', descriptor: message.descriptor ?? null },
      { event: 'check_program', program: message.program },
    ];
  }

  /**
   * The welcome after joining again: this party's own place, as it was.
   * @param {Record<string, any>} message
   * @returns {ClientEvent[]}
   */
  rejoined(message) {
    const welcome = /** @type {Record<string, any>} */ (this.welcome);
    const { pid } = this;
    if (message.pid !== pid) {
      this.phase = 'refused';
      return [{
        event: 'join_failed', code: 'other_place',
        message: this.sentences.say('rejoin.other_place', { got: this.place(message.pid ?? null), who: this.place(pid) }),
      }];
    }
    const changed = REJOIN_SAME.find((name) => JSON.stringify(message[name]) !== JSON.stringify(welcome[name]));
    if (changed !== undefined) {
      return this.tamper(this.sentences.say('tamper.rejoin_changed', { what: this.sentences.say(`shape.${changed}`) }));
    }
    this.welcome = message; // the same session; fresh ICE servers (TURN credentials)
    const started = this.round > 0;
    this.phase = started ? 'started' : 'lobby';
    this.attempt = 0;
    this.retracting = false; // the join said whether it is ready
    // Back after the start, the server holds it not ready (a page that comes back may have
    // lost its computation), and its next round makes its links anew.
    if (started) this.ready = false;
    /** @type {ClientEvent[]} */
    const events = [{ event: 'reconnected', pid, welcome: message, started }];
    if (this.lacks.length) events.push(send('status', { state: UNSUPPORTED, detail: this.lacks.join(',') }));
    return events;
  }

  /** @param {Record<string, any>} message @returns {ClientEvent[]} */
  receiveError(message) {
    const { code } = message;
    let text = message.message || this.sentences.say('server.reported', { code });
    if (code === 'reconnect' && ['lobby', 'started', 'rejoining'].includes(this.phase)) {
      // The server process goes away, the session stays: join again, at once.
      this.reconnectNow = true;
      return [];
    }
    if (code === 'server_shutting_down') {
      // The server's words are general; what it means depends on where this party is.
      text = this.sentences.say(this.round > 0 ? 'server.shutting_down.started' : 'server.shutting_down.lobby');
    }
    if (SESSION_ENDING.has(code)) this.sessionOver = true;
    if (this.phase === 'rejoining') {
      this.phase = 'refused';
      if (code === 'unknown_session') text = this.sentences.say('rejoin.unknown_session');
      else if (['role_taken', 'session_full', 'session_started'].includes(code)) text = this.sentences.say('rejoin.place_taken');
      else if (code !== 'server_shutting_down') text = this.sentences.say('rejoin.refused', { reason: text });
      return [{ event: 'join_failed', code, message: text }];
    }
    if (this.welcome === null && code === 'bad_token') {
      text = this.sentences.say('link.wrong_secret'); // the link had a secret, only not this session's
    }
    return [{ event: this.welcome === null ? 'join_failed' : 'server_error', code, message: text }];
  }

  /** @param {Record<string, any>} message @returns {ClientEvent[]} */
  receiveRoster(message) {
    this.roster = message;
    if (this.retracting && !message.started && (message.members ?? []).some(
      (/** @type {Member} */ m) => m.pid === this.pid && !m.ready,
    )) {
      this.retracting = false; // the server heard it: no round can start on it now
    }
    /** @type {ClientEvent[]} */
    const events = [{ event: 'roster', roster: message }];
    for (const peer of this.identities.keys()) {
      const problem = this.rosterProblem(peer);
      if (problem) return problem;
    }
    if (message.started) {
      for (const member of message.members ?? []) {
        const { pid } = member;
        if (member.state === 'left' && pid !== this.pid && !this.gone.has(pid)) {
          this.gone.add(pid);
          events.push({ event: 'peer_left', peer: pid, message: this.sentences.say('party.left', { who: this.place(pid) }) });
        }
        if (pid === this.pid || !Number.isInteger(pid)) continue;
        if (member.state === 'left' || member.state === RECONNECTING) {
          if (member.state === RECONNECTING && !this.away.has(pid)) events.push({ event: 'peer_away', peer: pid });
          this.away.add(pid);
        } else if (this.away.has(pid)) { // back, with a new page: its numbers start again
          this.away.delete(pid);
          this.gone.delete(pid);
          events.push({ event: 'restart_numbering', peer: pid });
        }
      }
    }
    return events;
  }

  /** @param {Record<string, any>} message @returns {ClientEvent[]} */
  receiveStart(message) {
    if (this.welcome === null || this.phase === 'rejoining') return []; // not before this connection's welcome
    const round = message.round ?? this.round + 1;
    if (!(this.ready || this.retracting)) {
      return this.tamper(this.sentences.say('tamper.unprompted_start', { round }));
    }
    this.ready = false; // the next round needs its own "ready"
    this.retracting = false;
    this.round = round;
    const first = this.phase === 'lobby';
    this.phase = 'started';
    /** @type {ClientEvent[]} */
    const events = [{ event: 'start', round: this.round }];
    if (first) events.push(...this.connectAll());
    else events.push(...this.relink(message.fresh));
    return events;
  }

  /**
   * A later round's start: the links to the parties in ``fresh`` (back in their places
   * after a reload or a lost connection; their old links went with their pages, or may have
   * gone with the network) are made anew: all of them if this party is named.
   * @param {unknown} fresh
   * @returns {ClientEvent[]}
   */
  relink(fresh) {
    const { pid, parties } = this;
    if (pid === null || parties === null || !Array.isArray(fresh)) return [];
    const named = new Set(fresh.filter((p) => Number.isInteger(p) && p >= 0 && p < parties));
    const peers = [...Array(parties).keys()]
      .filter((p) => p !== pid && (named.has(pid) || named.has(p)));
    /** @type {ClientEvent[]} */
    const events = [];
    for (const peer of peers) {
      this.links.set(peer, new Link(peer, pid < peer));
      this.certificates.delete(peer); // its new page has a new certificate
      this.reported.delete(peer);
      this.gone.delete(peer);
      this.away.delete(peer);
      events.push({ event: 'restart_numbering', peer }, { event: 'connect', peer, offer: pid < peer });
    }
    return events;
  }

  /** @param {Record<string, any>} message @returns {ClientEvent[]} */
  receiveChat(message) {
    if (this.welcome === null || this.lacks.length) return []; // chat is best effort
    return [{ event: 'open_chat', from: message.from, seq: message.seq, box: message.box }];
  }

  /** @param {Record<string, any>} message @returns {ClientEvent[]} */
  receiveSignal(message) {
    const sender = message.from;
    if (this.welcome === null) { // nothing to open it with: it cannot be authentic
      return this.tamper(this.sentences.say('tamper.failed_authentication', { who: this.place(sender) }));
    }
    return [{ event: 'open', from: sender, seq: message.seq, box: message.box }];
  }

  // -- this party's program ---------------------------------------------------------------

  /**
   * The hash of the program the server describes before this party joins.
   * @param {string} digest
   * @returns {ClientEvent[]}
   */
  described(digest) {
    if (digest !== this.linkHash) {
      return this.tamper(this.sentences.say('tamper.server_program', {
        ours: fingerprintOf(digest), link: fingerprintOf(this.linkHash),
      }), false);
    }
    return [];
  }

  /**
   * The hash of the program this party will run (``check_program``).
   * @param {string} digest
   * @returns {ClientEvent[]}
   */
  programChecked(digest) {
    if (this.stopped || this.programOk) return [];
    if (digest !== this.linkHash) {
      return this.tamper(this.sentences.say('tamper.server_program', {
        ours: fingerprintOf(digest), link: fingerprintOf(this.linkHash),
      }));
    }
    this.programOk = true;
    /** @type {ClientEvent[]} */
    const events = [{ event: 'program_ok' }];
    if (this.phase === 'started') events.push(...this.connectAll());
    return events;
  }

  /**
   * What the welcome's sealed descriptor holds (``open_descriptor``), or null if it was
   * missing or did not open with the link's secret.
   * @param {Record<string, any> | null} descriptor
   * @returns {ClientEvent[]}
   */
  descriptorOpened(descriptor) {
    if (this.stopped || this.sessionOk || this.welcome === null) return [];
    if (descriptor === null) return this.tamper(this.sentences.say('tamper.no_descriptor'));
    const changed = difference(descriptor, saidBy(this.welcome, this.linkHash));
    if (changed) {
      const [name, chosen, told] = changed;
      return this.tamper(this.sentences.say('tamper.shape', {
        what: this.sentences.say(`shape.${name}`), chosen, said: told,
      }));
    }
    const pinned = this.pin(this.pid);
    if (pinned && pinned !== this.identity) {
      return this.tamper(this.sentences.say('tamper.pinned_self', {
        place: this.place(this.pid), pinned, identity: this.identity ?? 'none',
      }));
    }
    this.sessionOk = true;
    /** @type {ClientEvent[]} */
    const events = [{ event: 'session_ok' }];
    if (this.phase === 'started') events.push(...this.connectAll());
    return events;
  }

  // -- sealed signals ---------------------------------------------------------------------

  /**
   * The payload of a sealed signal from ``sender``, opened and authentic.
   * @param {number} sender
   * @param {Record<string, any>} payload
   * @returns {ClientEvent[]}
   */
  opened(sender, payload) {
    if (this.stopped) return [];
    const link = this.links.get(sender);
    if (!link) {
      if (sender >= 0 && sender < (this.parties ?? 0) && sender !== this.pid) this.held.push([sender, payload]);
      return [];
    }
    const { kind } = payload;
    if (kind === 'candidate') {
      if (link.expecting !== null) {
        link.early.push(payload);
        return [];
      }
      return candidateEvents(sender, payload);
    }
    if (kind !== link.expecting || link.verifying) {
      return [{ event: 'unexpected', peer: sender, kind, expected: link.expecting }];
    }
    if (payload.program !== this.linkHash) {
      return this.tamper(this.sentences.say('tamper.peer_program', {
        who: this.place(sender), theirs: fingerprintOf(String(payload.program)), ours: fingerprintOf(this.linkHash),
      }));
    }
    const same = this.certificate(sender, payload.sdp);
    if (same) return same;
    link.verifying = true;
    return [this.verify('link', sender, payload,
      this.linkFields(sender, /** @type {number} */ (this.pid), payload.name, payload.sdp))];
  }

  /**
   * Whether the signature of ``verify`` event ``id`` is its key's.
   * @param {string} id
   * @param {boolean} ok
   * @returns {ClientEvent[]}
   */
  verified(id, ok) {
    const pending = this.pending.get(id);
    this.pending.delete(id);
    if (!pending || this.stopped) return [];
    const [what, sender, payload] = pending;
    const { identity, name } = payload;
    if (!ok) {
      const kind = what === 'chat' ? this.sentences.say('identity.kind_chat') : payload.kind;
      return this.tamper(this.sentences.say('tamper.bad_signature', { who: this.place(sender), kind, identity }));
    }
    const before = this.identities.get(sender)?.identity ?? this.claimed.get(sender);
    if (before !== undefined && before !== identity) {
      return this.tamper(this.sentences.say('tamper.other_identity', { who: this.place(sender), now: identity, before }));
    }
    if (what === 'chat') {
      this.claimed.set(sender, identity);
      return [{
        event: 'chat', peer: sender, text: payload.text, identity, name, label: this.label(sender),
        who: this.place(sender), bound: this.identities.has(sender),
      }];
    }
    const pinned = this.pin(sender);
    if (pinned && pinned !== identity) {
      return this.tamper(this.sentences.say('tamper.pinned', { place: this.place(sender), pinned, identity }));
    }
    this.identities.set(sender, { identity, name });
    const problem = this.rosterProblem(sender);
    if (problem) return problem;
    const link = /** @type {Link} */ (this.links.get(sender));
    link.expecting = null;
    link.verifying = false;
    /** @type {ClientEvent[]} */
    const events = [
      { event: 'identity', peer: sender, identity, name, label: this.label(sender), who: this.place(sender) },
      { event: 'remote', peer: sender, kind: payload.kind, sdp: payload.sdp },
    ];
    for (const early of link.early) events.push(...candidateEvents(sender, early));
    link.early = [];
    return events;
  }

  /**
   * The I/O layer found tampering (a box that did not open).
   * @param {string} message
   */
  tampered(message) {
    return this.tamper(message);
  }

  /**
   * This party's offer or answer for ``peer`` is made.
   * @param {number} peer
   * @param {string} kind
   * @param {string} sdp
   * @returns {ClientEvent[]}
   */
  localDescription(peer, kind, sdp) {
    if (this.stopped || !this.links.has(peer)) return [];
    const same = this.certificate(null, sdp);
    if (same) return same;
    const payload = { kind, sdp, program: this.linkHash, identity: this.identity ?? '', name: this.name };
    return [{
      event: 'seal', to: peer, payload,
      sign: this.linkFields(/** @type {number} */ (this.pid), peer, this.name, sdp),
    }];
  }

  // -- chat -------------------------------------------------------------------------------

  /**
   * This party writes ``text`` to everyone else in the session.
   * @param {string} text
   * @returns {ClientEvent[]}
   */
  say(text) {
    if (this.stopped) return [];
    const refused = (/** @type {string} */ key, fields = {}) => [{ event: 'chat_refused', message: this.sentences.say(key, fields) }];
    if (this.welcome === null || this.lacks.length || this.phase === 'refused' || this.phase === 'closed') {
      return refused('chat.not_yet');
    }
    // Python's str.strip(): white space at both ends (JavaScript's trim() is the same set
    // for what a person types).
    const trimmed = text.trim();
    if (!trimmed) return refused('chat.empty');
    const length = [...trimmed].length;
    if (length > MAX_CHAT_LENGTH) return refused('chat.too_long', { max: MAX_CHAT_LENGTH, length });
    const to = (this.roster?.members ?? [])
      .filter((/** @type {Member} */ m) => Number.isInteger(m.pid) && m.pid !== this.pid && m.state !== 'left')
      .map((/** @type {Member} */ m) => m.pid);
    if (!to.length) return refused('chat.nobody');
    this.chats += 1;
    const number = String(this.chats);
    const payload = { kind: 'chat', text: trimmed, identity: this.identity ?? '', name: this.name, number };
    return [{
      event: 'chat_out', payload, to,
      sign: ['chat', this.session, String(this.pid), number, this.name, trimmed],
    }];
  }

  /**
   * A chat payload from ``sender``: opened from a sealed ``chat`` message, or read off the
   * chat data channel to that party.
   * @param {unknown} sender
   * @param {unknown} payload
   * @returns {ClientEvent[]}
   */
  chatReceived(sender, payload) {
    if (this.stopped || this.welcome === null) return [];
    const p = /** @type {Record<string, any>} */ (payload);
    const isObject = typeof payload === 'object' && payload !== null && !Array.isArray(payload);
    if (!Number.isInteger(sender) || sender === this.pid || /** @type {number} */ (sender) < 0
        || /** @type {number} */ (sender) >= (this.parties ?? 0) || !isObject || p.kind !== 'chat'
        || !CHAT_FIELDS.every((field) => typeof p[field] === 'string')
        || ![...p.text].length || [...p.text].length > MAX_CHAT_LENGTH) {
      return [{ event: 'unexpected', peer: sender, kind: isObject ? (p.kind ?? null) : null, expected: 'chat' }];
    }
    const peer = /** @type {number} */ (sender);
    return [this.verify('chat', peer, p, ['chat', this.session, String(peer), p.number, p.name, p.text])];
  }

  /**
   * This party found an ICE candidate for the link to ``peer`` (trickle ICE).
   * @param {number} peer
   * @param {{candidate?: string, sdpMid?: string | null, sdpMLineIndex?: number | null}} candidate
   * @returns {ClientEvent[]}
   */
  localCandidate(peer, candidate) {
    if (this.stopped || !this.links.has(peer) || !candidate.candidate) return [];
    const payload = {
      kind: 'candidate',
      candidate: candidate.candidate,
      sdpMid: candidate.sdpMid ?? null,
      sdpMLineIndex: candidate.sdpMLineIndex ?? null,
    };
    return [{ event: 'seal', to: peer, payload }];
  }

  // -- what this party tells the server ---------------------------------------------------

  /**
   * @param {boolean} ready
   * @param {string | null} [name]
   * @returns {ClientEvent[]}
   */
  setReady(ready, name = null) {
    if (this.stopped || this.welcome === null || this.lacks.length) return [];
    this.retracting = this.ready && !ready;
    this.ready = ready;
    if (name) this.name = name; // a join after a lost connection says it again
    if (this.phase === 'reconnecting') return []; // no connection: the next join says it
    return [send('ready', name ? { ready, name } : { ready })];
  }

  /**
   * How the link to ``peer`` is doing; told to the server once per change.
   * @param {number} peer
   * @param {string} state
   * @param {string | null} [path]
   * @returns {ClientEvent[]}
   */
  linkState(peer, state, path = null) {
    const before = this.reported.get(peer);
    if (path === null && before !== undefined) [, path] = before; // a path, once known, stays
    if (before !== undefined && ((before[0] === state && before[1] === path) || before[0] === 'failed')) {
      return [];
    }
    this.reported.set(peer, [state, path]);
    return [send('link', path !== null ? { peer, state, path } : { peer, state })];
  }

  /**
   * @param {string} state
   * @param {string | null} [detail]
   * @returns {ClientEvent[]}
   */
  status(state, detail = null) {
    if (this.welcome === null) return [];
    return [send('status', detail ? { state, detail: [...detail].slice(0, 500).join('') } : { state })];
  }

  // -- helpers ----------------------------------------------------------------------------

  /**
   * Ask the I/O layer to check a signature; ``verified`` goes on from there.
   * @param {string} what @param {number} sender @param {Record<string, any>} payload
   * @param {string[]} fields
   * @returns {ClientEvent}
   */
  verify(what, sender, payload, fields) {
    this.verifications += 1;
    const id = `${what}-${this.verifications}`;
    this.pending.set(id, [what, sender, payload]);
    return {
      event: 'verify', id, peer: sender, identity: payload.identity, signature: payload.signature,
      statement: fields,
    };
  }

  /**
   * What an offer or answer's signature covers (identity.link_statement).
   * @param {number} sender @param {number} receiver @param {string} name @param {string} sdp
   * @returns {string[]}
   */
  linkFields(sender, receiver, name, sdp) {
    return ['link', this.session, String(sender), String(receiver), this.label(sender), name,
      certificateOf(sdp) ?? '', this.linkHash];
  }

  /** @param {number | null} pid @returns {string} */
  label(pid) {
    const labels = this.welcome?.labels ?? [];
    const label = pid !== null && pid >= 0 && pid < labels.length ? labels[pid] : '';
    return String(label).split(/\s+/).filter(Boolean).join(' ');
  }

  /**
   * A place as a person reads it: ``'hospital A' (party 2)`` or ``party 2`` (pid 1).
   * @param {number | null} pid
   */
  place(pid) {
    return this.sentences.place(pid, this.label(pid));
  }

  /**
   * The key place ``pid`` is kept for ('' if none), as the creator sealed it.
   * @param {number | null} pid
   * @returns {string}
   */
  pin(pid) {
    const pins = this.welcome?.pins ?? [];
    const pin = pid !== null && pid >= 0 && pid < pins.length ? pins[pid] : '';
    return typeof pin === 'string' ? pin : '';
  }

  /**
   * Tampering, if the latest roster shows a verified peer with another key or name than
   * the one it signed.
   * @param {number} peer
   * @returns {ClientEvent[] | null}
   */
  rosterProblem(peer) {
    const signed = /** @type {{identity: string, name: string}} */ (this.identities.get(peer));
    const member = (this.roster?.members ?? []).find((/** @type {Member} */ m) => m.pid === peer);
    if (!member) return null;
    const said = member.identity ?? null;
    if (said !== null && said !== signed.identity) {
      return this.tamper(this.sentences.say('tamper.roster_identity', { who: this.place(peer), said, signed: signed.identity }));
    }
    const { name } = member;
    if (name !== signed.name && !(signed.name === '' && name === `party ${peer}`)) {
      return this.tamper(this.sentences.say('tamper.roster_name', {
        who: this.place(peer), said: JSON.stringify(name ?? null), signed: JSON.stringify(signed.name),
      }));
    }
    return null;
  }

  /**
   * Note the DTLS certificate ``party`` (null: this party) shows in ``sdp``; the tampering
   * events if it is this party's own or another peer's.
   * @param {number | null} party
   * @param {string} sdp
   * @returns {ClientEvent[] | null}
   */
  certificate(party, sdp) {
    const certificate = certificateOf(sdp);
    if (!certificate) return null; // no DTLS: nothing could connect with it anyway
    const holder = (/** @type {(p: number) => boolean} */ other) => {
      for (const [p, c] of this.certificates) if (c === certificate && other(p)) return p;
      return null;
    };
    if (party === null) {
      this.ownCertificates.add(certificate);
      const peer = holder(() => true);
      return peer === null ? null : this.tamper(this.sentences.say('tamper.own_certificate', { who: this.place(peer) }));
    }
    if (this.ownCertificates.has(certificate)) {
      return this.tamper(this.sentences.say('tamper.own_certificate', { who: this.place(party) }));
    }
    const other = holder((p) => p !== party);
    if (other !== null) return this.tamper(this.sentences.say('tamper.same_peer', { who: this.place(party), other: this.place(other) }));
    this.certificates.set(party, certificate);
    return null;
  }

  /**
   * The links, once the round started and the program and the session are checked.
   * @returns {ClientEvent[]}
   */
  connectAll() {
    if (!(this.programOk && this.sessionOk)) return [];
    const { pid, parties } = this;
    if (pid === null || parties === null) return [];
    /** @type {ClientEvent[]} */
    const events = [];
    for (let peer = 0; peer < parties; peer += 1) {
      if (peer !== pid && !this.links.has(peer)) {
        this.links.set(peer, new Link(peer, pid < peer)); // the lower pid offers, everywhere
        events.push({ event: 'connect', peer, offer: pid < peer });
      }
    }
    const held = this.held;
    this.held = [];
    for (const [sender, payload] of held) events.push(...this.opened(sender, payload));
    return events;
  }

  /**
   * @param {string} message
   * @param {boolean} [tell]
   * @returns {ClientEvent[]}
   */
  tamper(message, tell = true) {
    if (this.stopped) return [];
    this.phase = 'stopped';
    /** @type {ClientEvent[]} */
    const events = [];
    if (tell && this.welcome !== null) {
      events.push(send('status', { state: 'failed', detail: [...message].slice(0, 500).join('') }));
    }
    events.push({ event: 'tampered', message });
    return events;
  }
}
