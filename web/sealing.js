// Sealed signaling in the browser (WebCrypto): the join link's secret, the join token,
// and AES-GCM boxes for everything parties tell each other through the server.
//
// The construction is specified once, in mpyc_webrtc/wire.py (module docstring), and its
// constants come from the server's schema document (GET /api/protocol, "sealing"); the
// native peer implements the same in mpyc_webrtc/sealing.py, and a test checks this file
// against known-answer vectors made by the Python side.

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });
const { subtle } = globalThis.crypto;

export class TamperError extends Error {}

// The sentences of mpyc_webrtc/sealing.py, so that native and browser parties say the same.
const TAMPER = 'Tampering detected:';
const STOP = 'Stop, and do not take part in this session.';

/** The sentence for a program that is not the link's (sealing.tamper_server_program). */
export function serverProgramMessage(ours, link) {
  return `${TAMPER} the server gave this party a different program than the one the session's creator chose (fingerprint ${fingerprintOf(ours)}; the link says ${fingerprintOf(link)}). ${STOP}`;
}

/** The sentence for a peer whose program differs (sealing.tamper_peer_program). */
export function peerProgramMessage(party, theirs, ours) {
  return `${TAMPER} party ${party} runs a different program than this party (fingerprint ${fingerprintOf(theirs)}; this party runs ${fingerprintOf(ours)}). The parties were given different programs. ${STOP}`;
}

export function toBase64Url(bytes) {
  let text = '';
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Strict: the URL-safe alphabet, no padding, and only the canonical encoding (as
 * sealing.b64url_decode), so no two texts decode to the same bytes. */
export function fromBase64Url(text) {
  if (typeof text !== 'string' || !/^[A-Za-z0-9_-]*$/.test(text)) throw new Error('not base64url');
  const padded = text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4);
  const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  if (toBase64Url(bytes) !== text) throw new Error('not canonical base64url');
  return bytes;
}

export function toHex(bytes) {
  return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

export async function sha256Hex(bytes) {
  return toHex(await subtle.digest('SHA-256', bytes));
}

/** 32 fresh random bytes: the session's secret, drawn by whoever creates it. */
export function newSecret() {
  return crypto.getRandomValues(new Uint8Array(32));
}

/** The fragment of a join link: ``k=<secret>&p=<program hash>``. */
export function toFragment(secret, programHash) {
  return `k=${toBase64Url(secret)}&p=${programHash}`;
}

const ASK_AGAIN = 'Ask the person who created the session for the whole link, and copy all of it.';

/** The secret and program hash from ``location.hash``, or an Error saying what is wrong
 * (the same rules and sentences as sealing.JoinSecret.from_fragment). */
export function parseFragment(hash) {
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  const ks = params.getAll('k');
  const ps = params.getAll('p');
  if (!ks.length && !ps.length) {
    throw new Error(`The join link lacks its secret part (after the # sign). ${ASK_AGAIN}`);
  }
  const damaged = (detail) => new Error(`The join link's secret part (after the # sign) is damaged: ${detail}. ${ASK_AGAIN}`);
  if (ks.length !== 1 || ps.length !== 1) throw damaged('it must have exactly one k and one p');
  let secret = null;
  try {
    secret = fromBase64Url(ks[0]);
  } catch {
    throw damaged('k is not base64url');
  }
  if (secret.length !== 32) throw damaged(`k has ${secret.length} bytes instead of 32`);
  const programHash = ps[0].toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(programHash)) throw damaged('p is not 64 hex digits');
  return { secret, programHash };
}

async function hkdf(secret, info, length = 32) {
  const key = await subtle.importKey('raw', secret, 'HKDF', false, ['deriveBits']);
  const bits = await subtle.deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: encoder.encode(info) },
    key, length * 8);
  return new Uint8Array(bits);
}

/** The join token the server checks (it keeps only its SHA-256), and that hash. */
export async function joinToken(secret, sealing) {
  const token = toBase64Url(await hkdf(secret, sealing.token_info));
  return { token, tokenHash: await sha256Hex(encoder.encode(token)) };
}

/** SHA-256 (hex) of a program as launch.program_hash builds it. */
export async function programHash(source, args, sealing) {
  const parts = [encoder.encode(sealing.program_hash_context)];
  const lengthOf = (n) => {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, n);
    return bytes;
  };
  const add = (text) => {
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

/** Five groups of four hex digits, as launch.fingerprint shows a program hash. */
export function fingerprintOf(hash) {
  return hash.slice(0, 20).match(/.{4}/g).join(' ');
}

/** Seals and opens the ``signal`` boxes of one party in one session. */
export class Sealer {
  static async create(secret, session, pid, sealing) {
    const raw = await hkdf(secret, sealing.key_info);
    const key = await subtle.importKey('raw', raw, 'AES-GCM', false, ['encrypt', 'decrypt']);
    return new Sealer(key, session, pid, sealing);
  }

  constructor(key, session, pid, sealing) {
    this.key = key;
    this.session = session;
    this.pid = pid;
    this.sealing = sealing;
    this.sent = new Map(); // receiver -> last seq sent
    this.received = new Map(); // sender -> last seq accepted
  }

  aad(sender, receiver, seq) {
    return encoder.encode(this.sealing.aad.replace('{session}', this.session)
      .replace('{from}', String(sender)).replace('{to}', String(receiver))
      .replace('{seq}', String(seq)));
  }

  /** The fields of a ``signal`` message to ``to`` carrying ``payload``. */
  async seal(to, payload, nonce = crypto.getRandomValues(new Uint8Array(12))) {
    const seq = (this.sent.get(to) ?? 0) + 1;
    this.sent.set(to, seq);
    const sealed = await subtle.encrypt(
      { name: 'AES-GCM', iv: nonce, additionalData: this.aad(this.pid, to, seq) },
      this.key, encoder.encode(JSON.stringify(payload)));
    const box = new Uint8Array(12 + sealed.byteLength);
    box.set(nonce);
    box.set(new Uint8Array(sealed), 12);
    return { to, seq, box: toBase64Url(box) };
  }

  /** The payload of a ``signal`` from ``sender``, or a TamperError saying what is wrong.
   * Authentication first, then the number, then the content (as sealing.Sealer.open); a
   * refused message does not advance the count. */
  async open(sender, seq, box) {
    const who = `Someone between you and party ${sender} (the signaling server or the network)`;
    let plain;
    try {
      if (!Number.isInteger(seq) || seq < 1) throw new Error('bad number');
      const bytes = fromBase64Url(box);
      if (bytes.length < 12 + 16) throw new Error('too short');
      plain = await subtle.decrypt(
        { name: 'AES-GCM', iv: bytes.slice(0, 12), additionalData: this.aad(sender, this.pid, seq) },
        this.key, bytes.slice(12));
    } catch {
      throw new TamperError(`${TAMPER} a signaling message said to come from party ${sender} failed authentication. ${who} changed it, or it was not sent by party ${sender}. ${STOP}`);
    }
    const expected = (this.received.get(sender) ?? 0) + 1;
    if (seq < expected) {
      throw new TamperError(`${TAMPER} signaling message ${seq} from party ${sender} arrived again (replayed). ${who} sent it twice. ${STOP}`);
    }
    if (seq > expected) {
      throw new TamperError(`${TAMPER} signaling message ${seq} from party ${sender} arrived out of order (number ${seq}, expected ${expected}). ${who} held back, dropped or reordered messages. ${STOP}`);
    }
    let payload;
    let problem = null;
    try {
      payload = JSON.parse(decoder.decode(plain));
    } catch {
      problem = 'not JSON';
    }
    if (!problem) {
      const needs = this.sealing.signal_kinds[payload?.kind];
      if (!needs || typeof payload !== 'object' || Array.isArray(payload)) {
        problem = `unknown kind ${JSON.stringify(payload?.kind ?? null)}`;
      } else {
        const missing = needs.find((field) => typeof payload[field] !== 'string');
        if (missing) problem = `no text field '${missing}'`;
      }
    }
    if (problem) {
      throw new TamperError(`${TAMPER} a sealed signaling message from party ${sender} is not a valid offer, answer or ICE candidate (${problem}). Only someone with the join link can seal messages, so party ${sender} or someone else with the link sent it. ${STOP}`);
    }
    this.received.set(sender, seq);
    return payload;
  }
}
