// @ts-check
// Sealed signaling in the browser (WebCrypto): the join link's secret, the join token,
// and AES-GCM boxes for everything parties tell each other through the server.
//
// The construction is specified once, in mpyc_webrtc/wire.py (module docstring). Its
// constants are this page's own (SEALING), never the server's word: a server that served
// other ones (say, the key's label as the token's, to be shown the sealing key as a join
// token) is refused (differingRules). tests/test_client.py checks SEALING against wire.py;
// the native peer implements the same in mpyc_webrtc/sealing.py, and known-answer vectors
// made by the Python side check this file. What it says when something is wrong comes from
// the sentences (mpyc_webrtc/sentences.py, GET /api/sentences).

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });
const { subtle } = globalThis.crypto;

export class TamperError extends Error {}

/** @typedef {import('./sentences.js').Sentences} Sentences */
/**
 * @typedef {object} SealingRules the constants of the sealing (as the "sealing" part of the
 * schema document, mpyc_webrtc/wire.py schema_document)
 * @property {string} token_info HKDF info of the join token
 * @property {string} key_info HKDF info of the sealing key
 * @property {string} program_hash_context the first part of what a program hash hashes
 * @property {string} aad a box's associated data, with ``{session}``, ``{from}``, ``{to}``
 * and ``{seq}`` to fill in
 * @property {Record<string, readonly string[]>} signal_kinds payload kind -> the fields it must have
 * @property {string} chat_aad a chat box's associated data, filled in as ``aad``
 * @property {readonly string[]} signal_box_kinds the kinds a ``signal`` box may hold
 * @property {readonly string[]} chat_box_kinds the kinds a ``chat`` box may hold
 * @property {string} descriptor_info HKDF info of the session descriptor's key
 * @property {string} descriptor_aad the descriptor's associated data
 * @property {readonly string[]} descriptor_fields what a descriptor holds
 */
/** @typedef {{to: number, seq: number, box: string}} SignalFields */

/** The sealing's constants (wire.py: TOKEN_INFO, KEY_INFO, PROGRAM_HASH_CONTEXT,
 * signal_aad, SIGNAL_KINDS). @type {Readonly<SealingRules>} */
export const SEALING = Object.freeze({
  token_info: 'mpyc-webrtc v1 join token',
  key_info: 'mpyc-webrtc v1 seal key',
  program_hash_context: 'mpyc-webrtc program v1\u0000',
  aad: 'mpyc-webrtc v1 signal|{session}|{from}|{to}|{seq}',
  signal_kinds: Object.freeze({
    offer: ['sdp', 'program', 'identity', 'name', 'signature'],
    answer: ['sdp', 'program', 'identity', 'name', 'signature'],
    candidate: ['candidate'],
    chat: ['text', 'identity', 'name', 'signature', 'number'],
  }),
  chat_aad: 'mpyc-webrtc v1 chat|{session}|{from}|{to}|{seq}',
  signal_box_kinds: Object.freeze(['offer', 'answer', 'candidate']),
  chat_box_kinds: Object.freeze(['chat']),
  descriptor_info: 'mpyc-webrtc v1 descriptor key',
  descriptor_aad: 'mpyc-webrtc v1 session descriptor',
  descriptor_fields: Object.freeze(['parties', 'relay_only', 'labels', 'program', 'args', 'pins']),
});

/**
 * The first of the server's sealing constants (GET /api/protocol, "sealing") that is not
 * this page's own, or null if they all agree.
 * @param {unknown} served
 * @returns {string | null}
 */
export function differingRules(served) {
  const theirs = /** @type {Record<string, unknown>} */ (served ?? {});
  for (const [name, ours] of Object.entries(SEALING)) {
    if (JSON.stringify(theirs[name]) !== JSON.stringify(ours)) return name;
  }
  return null;
}
/** @typedef {Uint8Array<ArrayBuffer>} Bytes bytes in an ArrayBuffer of their own, as WebCrypto takes them */

/**
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function toBase64Url(bytes) {
  let text = '';
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Strict: the URL-safe alphabet, no padding, and only the canonical encoding (as
 * sealing.b64url_decode), so no two texts decode to the same bytes.
 * @param {string} text
 * @returns {Bytes}
 */
export function fromBase64Url(text) {
  if (typeof text !== 'string' || !/^[A-Za-z0-9_-]*$/.test(text)) throw new Error('not base64url');
  const padded = text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4);
  const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  if (toBase64Url(bytes) !== text) throw new Error('not canonical base64url');
  return bytes;
}

/**
 * @param {ArrayBuffer | Uint8Array} bytes
 * @returns {string}
 */
export function toHex(bytes) {
  return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * @param {BufferSource} bytes
 * @returns {Promise<string>}
 */
export async function sha256Hex(bytes) {
  return toHex(await subtle.digest('SHA-256', bytes));
}

/**
 * 32 fresh random bytes: the session's secret, drawn by whoever creates it.
 * @returns {Bytes}
 */
export function newSecret() {
  return crypto.getRandomValues(new Uint8Array(32));
}

/**
 * The fragment of a join link: ``k=<secret>&p=<program hash>``.
 * @param {Uint8Array} secret
 * @param {string} programHash
 * @returns {string}
 */
export function toFragment(secret, programHash) {
  return `k=${toBase64Url(secret)}&p=${programHash}`;
}

/**
 * The secret and program hash from ``location.hash``, or an Error whose message is the
 * sentence for a person: the same rules and words as sealing.JoinSecret.from_fragment
 * (only ``k`` and ``p`` count, nothing is percent-decoded, ``p`` may be upper case).
 * @param {string} hash
 * @param {Sentences} sentences
 * @returns {{secret: Bytes, programHash: string}}
 */
export function parseFragment(hash, sentences) {
  /** @type {Record<string, string>} */
  const fields = {};
  const damaged = (/** @type {string} */ detail) => new Error(sentences.say('link.damaged', { detail }));
  for (const part of hash.trim().replace(/^#/, '').split('&')) {
    const at = part.indexOf('=');
    const key = at < 0 ? part : part.slice(0, at);
    if (at >= 0 && (key === 'k' || key === 'p')) {
      if (key in fields) throw damaged(sentences.say('link.twice', { key }));
      fields[key] = part.slice(at + 1);
    }
  }
  if (!('k' in fields) && !('p' in fields)) throw new Error(sentences.say('link.missing_secret'));
  if (!('k' in fields)) throw damaged(sentences.say('link.no_secret'));
  if (!('p' in fields)) throw damaged(sentences.say('link.no_hash'));
  let secret = new Uint8Array(0);
  try {
    secret = fromBase64Url(fields.k);
  } catch {
    // described below
  }
  if (secret.length !== 32) throw damaged(sentences.say('link.bad_secret', { bytes: 32 }));
  const programHash = fields.p.toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(programHash)) throw damaged(sentences.say('link.bad_hash'));
  return { secret, programHash };
}

/**
 * @param {Bytes} secret
 * @param {string} info
 * @param {number} [length] in bytes
 * @returns {Promise<Bytes>}
 */
async function hkdf(secret, info, length = 32) {
  const key = await subtle.importKey('raw', secret, 'HKDF', false, ['deriveBits']);
  const bits = await subtle.deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: encoder.encode(info) },
    key, length * 8);
  return new Uint8Array(bits);
}

/**
 * The join token the server checks (it keeps only its SHA-256), and that hash.
 * @param {Bytes} secret
 * @returns {Promise<{token: string, tokenHash: string}>}
 */
export async function joinToken(secret) {
  const token = toBase64Url(await hkdf(secret, SEALING.token_info));
  return { token, tokenHash: await sha256Hex(encoder.encode(token)) };
}

/**
 * SHA-256 (hex) of a program as launch.program_hash builds it.
 * @param {string} source
 * @param {string[]} args
 * @returns {Promise<string>}
 */
export async function programHash(source, args) {
  const parts = [encoder.encode(SEALING.program_hash_context)];
  const lengthOf = (/** @type {number} */ n) => {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, n);
    return bytes;
  };
  const add = (/** @type {string} */ text) => {
    const bytes = encoder.encode(text);
    parts.push(lengthOf(bytes.length), bytes);
  };
  add(source);
  parts.push(lengthOf(args.length));
  for (const arg of args) add(arg);
  const total = parts.reduce((n, part) => n + part.length, 0);
  const all = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    all.set(part, offset);
    offset += part.length;
  }
  return sha256Hex(all);
}

/**
 * Five groups of four hex digits, as launch.fingerprint shows a program hash.
 * @param {string} hash
 * @returns {string}
 */
export function fingerprintOf(hash) {
  return /** @type {RegExpMatchArray} */ (hash.slice(0, 20).match(/.{4}/g)).join(' ');
}

/**
 * The sealed description of a session (SEALING.descriptor_fields of ``descriptor``), for
 * POST /api/sessions, as sealing.seal_descriptor makes it.
 * @param {Bytes} secret
 * @param {Record<string, unknown>} descriptor
 * @param {Bytes} [nonce] 12 bytes, fresh for every box (tests pass known ones)
 * @returns {Promise<string>}
 */
export async function sealDescriptor(secret, descriptor, nonce = crypto.getRandomValues(new Uint8Array(12))) {
  /** @type {Record<string, unknown>} */
  const doc = {};
  for (const name of SEALING.descriptor_fields) doc[name] = descriptor[name];
  const key = await descriptorKey(secret);
  const sealed = await subtle.encrypt(
    { name: 'AES-GCM', iv: nonce, additionalData: encoder.encode(SEALING.descriptor_aad) },
    key, encoder.encode(JSON.stringify(doc)));
  const box = new Uint8Array(12 + sealed.byteLength);
  box.set(nonce);
  box.set(new Uint8Array(sealed), 12);
  return toBase64Url(box);
}

/**
 * What the session's creator chose, or null if ``box`` is missing, does not open with this
 * secret or is not a descriptor (as sealing.open_descriptor).
 * @param {Bytes} secret
 * @param {unknown} box
 * @returns {Promise<Record<string, any> | null>}
 */
export async function openDescriptor(secret, box) {
  try {
    const bytes = fromBase64Url(/** @type {string} */ (box));
    if (bytes.length < 12 + 16) return null;
    const plain = await subtle.decrypt(
      { name: 'AES-GCM', iv: bytes.slice(0, 12), additionalData: encoder.encode(SEALING.descriptor_aad) },
      await descriptorKey(secret), bytes.slice(12));
    const doc = JSON.parse(decoder.decode(plain));
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return null;
    const names = Object.keys(doc).sort();
    return JSON.stringify(names) === JSON.stringify([...SEALING.descriptor_fields].sort()) ? doc : null;
  } catch {
    return null;
  }
}

/** @param {Bytes} secret */
async function descriptorKey(secret) {
  const raw = await hkdf(secret, SEALING.descriptor_info);
  return subtle.importKey('raw', raw, 'AES-GCM', false, ['encrypt', 'decrypt']);
}

/** Seals and opens the ``signal`` boxes of one party in one session. */
export class Sealer {
  /**
   * @param {Bytes} secret
   * @param {string} session
   * @param {number} pid this party
   * @param {number} parties how many parties the session has: senders are 0 to parties - 1
   * @param {Sentences} sentences
   * @returns {Promise<Sealer>}
   */
  static async create(secret, session, pid, parties, sentences) {
    const raw = await hkdf(secret, SEALING.key_info);
    const key = await subtle.importKey('raw', raw, 'AES-GCM', false, ['encrypt', 'decrypt']);
    return new Sealer(key, session, pid, parties, sentences);
  }

  /**
   * @param {CryptoKey} key
   * @param {string} session
   * @param {number} pid
   * @param {number} parties
   * @param {Sentences} sentences
   */
  constructor(key, session, pid, parties, sentences) {
    this.key = key;
    this.session = session;
    this.pid = pid;
    this.parties = parties;
    this.sentences = sentences;
    /** @type {Map<number, number>} */
    this.sent = new Map(); // receiver -> last seq sent
    /** @type {Map<number, number>} */
    this.received = new Map(); // sender -> last seq accepted
    /** @type {Map<number, number>} */
    this.chatSent = new Map(); // the same for chat boxes, which count on their own
    /** @type {Map<number, number>} */
    this.chatReceived = new Map();
  }

  /**
   * @param {number} sender
   * @param {number} receiver
   * @param {number} seq
   * @param {string} [template] SEALING.aad or SEALING.chat_aad
   * @returns {Bytes}
   */
  aad(sender, receiver, seq, template = SEALING.aad) {
    return encoder.encode(template.replace('{session}', this.session)
      .replace('{from}', String(sender)).replace('{to}', String(receiver))
      .replace('{seq}', String(seq)));
  }

  /**
   * The fields of a ``signal`` message to ``to`` carrying ``payload``.
   * @param {number} to
   * @param {Record<string, unknown>} payload
   * @param {Bytes} [nonce] 12 bytes, fresh for every box (tests pass known ones)
   * @returns {Promise<SignalFields>}
   */
  async seal(to, payload, nonce = crypto.getRandomValues(new Uint8Array(12))) {
    const seq = (this.sent.get(to) ?? 0) + 1;
    this.sent.set(to, seq);
    return this.box(to, seq, payload, SEALING.aad, nonce);
  }

  /**
   * The fields of a ``chat`` message to ``to`` carrying ``payload`` (sealing.Sealer.seal_chat).
   * @param {number} to
   * @param {Record<string, unknown>} payload
   * @returns {Promise<SignalFields>}
   */
  async sealChat(to, payload) {
    const seq = (this.chatSent.get(to) ?? 0) + 1;
    this.chatSent.set(to, seq);
    return this.box(to, seq, payload, SEALING.chat_aad, crypto.getRandomValues(new Uint8Array(12)));
  }

  /**
   * @param {number} to @param {number} seq @param {Record<string, unknown>} payload
   * @param {string} template @param {Bytes} nonce
   * @returns {Promise<SignalFields>}
   */
  async box(to, seq, payload, template, nonce) {
    const sealed = await subtle.encrypt(
      { name: 'AES-GCM', iv: nonce, additionalData: this.aad(this.pid, to, seq, template) },
      this.key, encoder.encode(JSON.stringify(payload)));
    const box = new Uint8Array(12 + sealed.byteLength);
    box.set(nonce);
    box.set(new Uint8Array(sealed), 12);
    return { to, seq, box: toBase64Url(box) };
  }

  /** The payload of a ``signal`` from ``sender``, or a TamperError saying what is wrong.
   * Authentication first, then the number, then the content (as sealing.Sealer.open); a
   * refused message does not advance the count.
   * @param {number} sender
   * @param {number} seq checked all the same: it comes from the network
   * @param {string} box
   * @returns {Promise<Record<string, any>>}
   */
  async open(sender, seq, box) {
    const say = this.refusal(sender);
    const plain = await this.decrypt(sender, seq, box, SEALING.aad);
    const expected = (this.received.get(sender) ?? 0) + 1;
    if (seq < expected) throw say('tamper.replayed', { seq });
    if (seq > expected) throw say('tamper.out_of_order', { seq, expected });
    const payload = this.checkPayload(plain, SEALING.signal_box_kinds);
    if (typeof payload === 'string') throw say('tamper.bad_content', { detail: payload });
    this.received.set(sender, seq);
    return payload;
  }

  /** The payload of a ``chat`` from ``sender``: as ``open``, but any number above the last
   * one accepted will do, and only the ``chat`` kind (sealing.Sealer.open_chat).
   * @param {number} sender
   * @param {number} seq
   * @param {string} box
   * @returns {Promise<Record<string, any>>}
   */
  async openChat(sender, seq, box) {
    const say = this.refusal(sender);
    const plain = await this.decrypt(sender, seq, box, SEALING.chat_aad);
    if (seq <= (this.chatReceived.get(sender) ?? 0)) throw say('tamper.replayed', { seq });
    const payload = this.checkPayload(plain, SEALING.chat_box_kinds);
    if (typeof payload === 'string') throw say('tamper.bad_content', { detail: payload });
    this.chatReceived.set(sender, seq);
    return payload;
  }

  /**
   * ``peer`` came back after a reload, with a new page whose numbers start again: signals
   * to and from it, and chat from it, are numbered afresh (sealing.py Sealer.restart).
   * @param {number} peer
   */
  restart(peer) {
    this.sent.delete(peer);
    this.received.delete(peer);
    this.chatReceived.delete(peer);
  }

  /** @param {number} sender */
  refusal(sender) {
    return (/** @type {string} */ key, /** @type {Record<string, any>} */ fields) => new TamperError(this.sentences.say(key, { who: this.sentences.place(sender), ...fields }));
  }

  /**
   * @param {number} sender @param {number} seq @param {string} box @param {string} template
   * @returns {Promise<ArrayBuffer>}
   */
  async decrypt(sender, seq, box, template) {
    try {
      // Numbers only, as sealing.Sealer.open: a sender '0' would count apart from 0 below,
      // and its replays would pass as new.
      if (!Number.isInteger(sender) || sender < 0 || sender >= this.parties || sender === this.pid
          || !Number.isInteger(seq) || seq < 1) throw new Error('bad numbers');
      const bytes = fromBase64Url(box);
      if (bytes.length < 12 + 16) throw new Error('too short');
      return await subtle.decrypt(
        { name: 'AES-GCM', iv: bytes.slice(0, 12), additionalData: this.aad(sender, this.pid, seq, template) },
        this.key, bytes.slice(12));
    } catch {
      throw this.refusal(sender)('tamper.failed_authentication', {});
    }
  }

  /**
   * The payload of an authentic box, or what is wrong with it (as sealing._check_payload).
   * @param {ArrayBuffer} plain
   * @param {readonly string[]} allowed the kinds this box may hold
   * @returns {Record<string, any> | string}
   */
  checkPayload(plain, allowed) {
    const say = (/** @type {string} */ key, fields = {}) => this.sentences.say(key, fields);
    let payload;
    try {
      payload = JSON.parse(decoder.decode(plain));
    } catch {
      return say('tamper.not_json');
    }
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
      return say('tamper.not_object');
    }
    const { kind } = payload;
    /** @type {Record<string, readonly string[]>} */
    const kinds = SEALING.signal_kinds;
    const needs = typeof kind === 'string' && allowed.includes(kind) && Object.hasOwn(kinds, kind) ? kinds[kind] : null;
    if (!needs) return say('tamper.unknown_kind', { kind: JSON.stringify(kind ?? null) });
    const missing = needs.find((/** @type {string} */ field) => typeof payload[field] !== 'string');
    if (missing) return say('tamper.missing_field', { kind, field: missing });
    return payload;
  }
}
