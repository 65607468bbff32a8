// @ts-check
// The page's WebSocket to the signaling server: the I/O around SignalingClient (client.js),
// as mpyc_webrtc/native/signaling.py is for the native peer. What a message means and what
// to do about it is the client's business; this carries messages, signs what the client
// says to sign (identity.js), seals and opens the `signal` and `chat` boxes (sealing.js, in
// order: receivers check the numbers), checks the signatures the client asks about, sends
// chat messages over a peer connection's chat channel when it is open (else sealed through
// the server), and hands every other event to the page's handlers. A connection lost in the lobby is opened again after the
// client's delay (`reconnect`, with a little jitter); the client then joins again at its
// own place.

import { SignalingClient } from './client.js';
import { statement, verify } from './identity.js';
import { ProtocolError } from './protocol.js';
import {
  fromBase64Url, openDescriptor, Sealer, TamperError, toBase64Url,
} from './sealing.js';

/** @typedef {import('./client.js').ClientEvent} ClientEvent */
/** @typedef {import('./protocol.js').Protocol} Protocol */
/** @typedef {import('./sentences.js').Sentences} Sentences */
/** @typedef {Record<string, (event: ClientEvent) => void>} Handlers */
/** @typedef {import('./identity.js').Identity} Identity */
/**
 * Where a chat payload for ``peer`` goes without the server: its peer connection's chat
 * channel; false if that is not open (then it goes sealed, through the server).
 * @typedef {(peer: number, payload: Record<string, unknown>) => boolean} ChatSender
 */

/** At most this share of a reconnect delay is added at random (parties that lost the
 * server together do not all come back in the same instant). */
const RECONNECT_JITTER = 0.1;

export class PageSignaling {
  /**
   * @param {object} options
   * @param {string} options.session the session's id, from this page's address
   * @param {{secret: import('./sealing.js').Bytes, programHash: string}} options.link the
   *   link's fragment
   * @param {string} options.token the join token
   * @param {Protocol} options.protocol the wire schema (GET /api/protocol)
   * @param {Sentences} options.sentences
   * @param {Handlers} options.handlers what the page does with each client event
   * @param {(text: string) => void} options.log
   * @param {string[]} [options.lacks] what this browser lacks to take part (capabilities.js):
   *   then it joins only to hold its place and tell the others why
   * @param {Identity | null} options.identity this browser's key pair: it signs the join,
   *   its offers and answers and its chat messages (null only in a browser that lacks
   *   Ed25519 and other things too: it joins just to hold its place)
   * @param {string} options.resume this party's resume secret (client.js newResume), drawn
   *   before, since ``proof`` signs it
   * @param {string | null} options.proof base64url of the signature over
   *   ``joinStatement(session, resume)``
   * @param {ChatSender} [options.chatSender]
   */
  constructor({
    session, link, token, protocol, sentences, handlers, log, lacks = [], identity, resume, proof,
    chatSender = () => false,
  }) {
    this.session = session;
    this.link = link;
    this.protocol = protocol;
    this.sentences = sentences;
    this.handlers = handlers;
    this.log = log;
    this.identity = identity;
    this.chatSender = chatSender;
    /** what every client made here joins with: the same on every attempt */
    this.joining = { token, lacks, identity: identity?.did ?? null, proof, resume };
    this.client = this.newClient();
    /** @type {WebSocket | null} */
    this.ws = null;
    /** @type {Promise<Sealer> | null} from the welcome on */
    this.sealer = null;
    this.outgoing = Promise.resolve(); // sealed signals and chat leave one after another
    this.incoming = Promise.resolve(); // and are opened one after another
    this.checking = Promise.resolve(); // signatures are checked in the order asked
    this.chats = Promise.resolve(); // chat boxes are opened one after another
    /** @type {ReturnType<typeof setTimeout> | undefined} the next reconnect attempt */
    this.retry = undefined;
    /** closed by the page: a connection that ends now stays closed */
    this.closing = false;
  }

  /**
   * Open the WebSocket and join, as ``name`` (may be ''), at place ``role`` if one was chosen.
   * @param {string} name
   * @param {number | null} role
   */
  join(name, role) {
    // A fresh client for each attempt (after "this place is taken", the person joins again).
    if (this.client.phase !== 'new') this.client = this.newClient();
    this.client.name = name;
    this.client.role = role;
    this.closing = false;
    this.connect();
  }

  /** A signaling client that joins with this page's token, identity, proof and resume. */
  newClient() {
    const { token, lacks, identity, proof, resume } = this.joining;
    return new SignalingClient(this.session, this.link.programHash, this.sentences,
      { token, lacks: [...lacks], identity, proof, resume });
  }

  /** Open a WebSocket to the server; the client says what to send once it is open. */
  connect() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${location.host}/ws`);
    this.ws = ws;
    // Only the current socket speaks: a closed attempt's late events change nothing.
    ws.onopen = () => {
      if (this.ws === ws) this.handle(this.client.connected());
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      let message;
      try {
        message = this.protocol.decode(event.data);
      } catch (error) {
        this.log(`ignoring a message from the server: ${describe(error)}`);
        return;
      }
      this.handle(this.client.receive(message));
    };
    ws.onclose = () => {
      if (this.ws === ws) this.handle(this.client.disconnected());
    };
    ws.onerror = () => this.log('the connection to the session server reported an error');
  }

  /** Whether the WebSocket can take a message now. */
  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /**
   * Close the WebSocket, after ``delay`` ms for the last messages to go out.
   * @param {number} [delay]
   */
  close(delay = 0) {
    const { ws } = this;
    this.closing = true;
    clearTimeout(this.retry);
    if (ws) setTimeout(() => ws.close(), delay);
  }

  // -- the client's inputs, for the page ------------------------------------------------------

  /** @param {string} digest */
  described(digest) { this.handle(this.client.described(digest)); }

  /** @param {string} digest */
  programChecked(digest) { this.handle(this.client.programChecked(digest)); }

  /**
   * @param {boolean} ready
   * @param {string | null} [name]
   * @returns {boolean} whether it could be said (the WebSocket is open)
   */
  setReady(ready, name = null) {
    if (!this.open) return false;
    this.handle(this.client.setReady(ready, name));
    return true;
  }

  /** @param {number} peer @param {string} kind @param {string} sdp */
  localDescription(peer, kind, sdp) { this.handle(this.client.localDescription(peer, kind, sdp)); }

  /** @param {number} peer @param {{candidate?: string, sdpMid?: string | null, sdpMLineIndex?: number | null}} candidate */
  localCandidate(peer, candidate) { this.handle(this.client.localCandidate(peer, candidate)); }

  /** @param {number} peer @param {string} state @param {string | null} path */
  linkState(peer, state, path) { this.handle(this.client.linkState(peer, state, path)); }

  /** @param {string} state @param {string | null} [detail] */
  status(state, detail = null) { this.handle(this.client.status(state, detail)); }

  /** @param {string} message */
  tampered(message) { this.handle(this.client.tampered(message)); }

  /**
   * The person wrote a chat message (the client says where it goes, or why not).
   * @param {string} text
   */
  say(text) { this.handle(this.client.say(text)); }

  /**
   * A chat frame that came over ``peer``'s chat channel (a JSON object).
   * @param {number} peer
   * @param {Record<string, unknown>} payload
   */
  chatReceived(peer, payload) {
    this.handle(this.client.chatReceived(peer, payload));
  }

  // -- the client's events --------------------------------------------------------------------

  /** @param {ClientEvent[]} events */
  handle(events) {
    for (const event of events) {
      switch (event.event) {
        case 'send': this.send(event.message); break;
        case 'seal': this.seal(event.to, event.payload, event.sign); break;
        case 'open': this.openBox(event.from, event.seq, event.box); break;
        case 'verify': this.verify(event); break;
        case 'chat_out': // the page shows it as sent
          this.chatOut(event.payload, event.sign, event.to);
          this.handlers.chat_out?.(event);
          break;
        case 'open_chat': this.openChat(event.from, event.seq, event.box); break;
        case 'restart_numbering': { // after what was sealed and opened before
          const { sealer } = this;
          const restart = async () => (await sealer)?.restart(event.peer);
          this.outgoing = this.outgoing.then(restart).catch(() => {});
          this.incoming = this.incoming.then(restart).catch(() => {});
          break;
        }
        case 'open_descriptor': {
          const { client } = this;
          openDescriptor(this.link.secret, event.descriptor)
            .then((descriptor) => this.handle(client.descriptorOpened(descriptor)));
          break;
        }
        case 'welcome':
          // The session in the sealed data is the one in this page's link, not the server's word.
          this.sealer = Sealer.create(this.link.secret, this.session, event.welcome.pid,
            event.welcome.parties, this.sentences);
          this.handlers.welcome?.(event);
          break;
        case 'reconnect': {
          clearTimeout(this.retry);
          if (this.closing) break; // the page closed it: it stays closed
          const wait = event.delay * 1000 * (1 + Math.random() * RECONNECT_JITTER);
          this.retry = setTimeout(() => {
            if (!this.closing && this.client.phase === 'reconnecting') this.connect();
          }, wait);
          this.handlers.reconnect?.(event);
          break;
        }
        default: this.handlers[event.event]?.(event);
      }
    }
  }

  /** @param {Record<string, any>} message */
  send(message) {
    const { type, v, ...fields } = message;
    let text;
    try {
      text = this.protocol.encode(type, fields);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      this.log(`could not send a '${type}' message: ${error.message}`);
      return;
    }
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
  }

  /**
   * Seal ``payload`` for ``peer`` and send it, after everything sealed before (the numbers
   * are in sending order); if ``sign`` is given, first sign ``statement(...sign)`` into
   * ``payload.signature``.
   * @param {number} peer @param {Record<string, any>} payload @param {string[]} [sign]
   */
  seal(peer, payload, sign) {
    const { sealer } = this;
    if (!sealer) return;
    this.outgoing = this.outgoing.then(async () => {
      if (sign) payload.signature = await this.signature(sign);
      this.send({ type: 'signal', ...await (await sealer).seal(peer, payload) });
    }).catch((error) => this.log(`could not send a signaling message to party ${peer}: ${describe(error)}`));
  }

  /** @param {string[]} fields @returns {Promise<string>} base64url */
  async signature(fields) {
    if (!this.identity) throw new Error('this browser has no identity key to sign with');
    return toBase64Url(await this.identity.sign(statement(...fields)));
  }

  /**
   * Check a signature the client asks about; tell it whether it holds (a signature that is
   * not even base64url does not).
   * @param {ClientEvent} event ``verify``: id, identity, signature, statement
   */
  verify({ id, identity, signature, statement: fields }) {
    const { client } = this;
    const check = (async () => {
      try {
        return await verify(identity, fromBase64Url(signature), statement(...fields));
      } catch {
        return false;
      }
    })();
    this.checking = this.checking.then(async () => {
      const ok = await check;
      if (client === this.client) this.handle(client.verified(id, ok));
    });
  }

  /**
   * Send a chat message: signed once, then to each pid of ``to`` over its chat channel if
   * that is open, else sealed as a ``chat`` message through the server (in order, after
   * what was sealed before: receivers take only growing numbers).
   * @param {Record<string, any>} payload @param {string[]} sign @param {number[]} to
   */
  chatOut(payload, sign, to) {
    const { sealer } = this;
    this.outgoing = this.outgoing.then(async () => {
      payload.signature = await this.signature(sign);
      for (const peer of to) {
        if (this.chatSender(peer, payload)) {
          this.log(`chat message ${payload.number} to party ${peer} over the data channel`);
        } else if (sealer) {
          this.send({ type: 'chat', ...await (await sealer).sealChat(peer, payload) });
          this.log(`chat message ${payload.number} to party ${peer} through the server, sealed`);
        }
      }
    }).catch((error) => this.log(`could not send a chat message: ${describe(error)}`));
  }

  /** @param {number} sender @param {number} seq @param {string} box */
  openChat(sender, seq, box) {
    const { sealer, client } = this;
    if (!sealer) return;
    this.chats = this.chats.then(async () => {
      let payload;
      try {
        payload = await (await sealer).openChat(sender, seq, box);
      } catch (error) {
        if (error instanceof TamperError) this.handle(this.client.tampered(error.message));
        else this.log(`a chat message from party ${sender} could not be read: ${describe(error)}`);
        return;
      }
      if (client === this.client) this.handle(client.chatReceived(sender, payload));
    });
  }

  /** @param {number} sender @param {number} seq @param {string} box */
  openBox(sender, seq, box) {
    const { sealer } = this;
    if (!sealer) return;
    this.incoming = this.incoming.then(async () => {
      let payload;
      try {
        payload = await (await sealer).open(sender, seq, box);
      } catch (error) {
        if (error instanceof TamperError) this.handle(this.client.tampered(error.message));
        else this.handlers.unreadable?.({ event: 'unreadable', message: describe(error) });
        return;
      }
      this.handle(this.client.opened(sender, payload));
    });
  }
}

/** @param {unknown} error */
function describe(error) {
  return error instanceof Error ? error.message : String(error);
}
