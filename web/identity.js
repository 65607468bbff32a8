// @ts-check
// This browser's long-term identity: an Ed25519 key pair kept in IndexedDB, its private
// key not extractable (script can sign with it, never read it). The twin of
// mpyc_webrtc/identity.py, which documents the formats (did:key, the fingerprint, the
// signed statements); tests/identity_vectors.json holds known answers both must give.

const ED25519_PREFIX = [0xed, 0x01];
const DID_PREFIX = 'did:key:z';
const STATEMENT_CONTEXT = new TextEncoder().encode('mpyc-webrtc v1 identity\u0000');
const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const ED25519 = { name: 'Ed25519' };

/** @typedef {Uint8Array<ArrayBuffer>} Bytes bytes in an ArrayBuffer of their own, as WebCrypto takes them */

/** A did:key, key or signature that is not what it must be; the message is for a person. */
export class IdentityError extends Error {}

/** @param {Uint8Array} data */
export function b58encode(data) {
  let number = 0n;
  for (const byte of data) number = number * 256n + BigInt(byte);
  let out = '';
  while (number > 0n) {
    out = B58[Number(number % 58n)] + out;
    number /= 58n;
  }
  let zeros = 0;
  while (zeros < data.length && data[zeros] === 0) zeros += 1;
  return '1'.repeat(zeros) + out;
}

/** @param {string} text @returns {Bytes} */
export function b58decode(text) {
  let number = 0n;
  for (const char of text) {
    const digit = B58.indexOf(char);
    if (digit < 0) throw new IdentityError(`'${char}' is not a base58 character.`);
    number = number * 58n + BigInt(digit);
  }
  const body = [];
  while (number > 0n) {
    body.unshift(Number(number % 256n));
    number /= 256n;
  }
  let zeros = 0;
  while (zeros < text.length && text[zeros] === '1') zeros += 1;
  return new Uint8Array([...new Array(zeros).fill(0), ...body]);
}

/** The did:key of an Ed25519 public key (32 bytes). @param {Uint8Array} publicKey */
export function didKey(publicKey) {
  if (publicKey.length !== 32) throw new IdentityError('An Ed25519 public key has 32 bytes.');
  return DID_PREFIX + b58encode(new Uint8Array([...ED25519_PREFIX, ...publicKey]));
}

/** The public key a did:key names. @param {string} did @returns {Bytes} */
export function publicKey(did) {
  const shown = JSON.stringify(String(did).slice(0, 60));
  if (typeof did !== 'string' || !did.startsWith(DID_PREFIX)) {
    throw new IdentityError(`${shown} is not a did:key identifier (did:key:z6Mk...).`);
  }
  const raw = b58decode(did.slice(DID_PREFIX.length));
  if (raw.length !== 34 || raw[0] !== ED25519_PREFIX[0] || raw[1] !== ED25519_PREFIX[1]) {
    throw new IdentityError(`${shown} is not the did:key of an Ed25519 key.`);
  }
  const key = raw.slice(2);
  if (didKey(key) !== did) {
    throw new IdentityError(`${shown} is not written the one way a did:key is.`);
  }
  return key;
}

/** What a person reads out to check a key: ABCD-EFGH-IJKL-MNOP. @param {Bytes} key */
export async function fingerprint(key) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', key)).slice(0, 10);
  let bits = 0;
  let value = 0;
  let text = '';
  for (const byte of digest) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      text += B32[(value >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return [0, 4, 8, 12].map((i) => text.slice(i, i + 4)).join('-');
}

/**
 * The bytes signed for ``fields`` (length-prefixed UTF-8).
 * @param {...string} fields
 * @returns {Bytes}
 */
export function statement(...fields) {
  const parts = [STATEMENT_CONTEXT];
  for (const field of fields) {
    const data = new TextEncoder().encode(field);
    const length = new Uint8Array(4);
    new DataView(length.buffer).setUint32(0, data.length);
    parts.push(length, data);
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * What party ``sender`` signs in its offer or answer to ``receiver`` (see
 * mpyc_webrtc/identity.py's link_statement).
 * @param {string} session @param {number} sender @param {number} receiver
 * @param {string} label @param {string} name @param {string} certificate
 * @param {string} program
 */
export function linkStatement(session, sender, receiver, label, name, certificate, program) {
  return statement('link', session, String(sender), String(receiver), label, name,
    certificate, program);
}

/**
 * What a party signs to join ``session`` with its identity (identity.join_statement).
 * @param {string} session @param {string} resume
 */
export function joinStatement(session, resume) {
  return statement('join', session, resume);
}

/**
 * What party ``sender`` signs for its chat message ``number`` (identity.chat_statement).
 * @param {string} session @param {number} sender @param {string} number
 * @param {string} name @param {string} text
 */
export function chatStatement(session, sender, number, name, text) {
  return statement('chat', session, String(sender), number, name, text);
}

/**
 * Whether ``signature`` is the key of ``did``'s over ``message``.
 * @param {string} did @param {Bytes} signature @param {Bytes} message
 */
export async function verify(did, signature, message) {
  let key;
  try {
    key = await crypto.subtle.importKey('raw', publicKey(did), ED25519, false, ['verify']);
  } catch {
    return false;
  }
  return crypto.subtle.verify(ED25519, key, signature, message);
}

/** A key pair: did, fingerprint, sign. */
export class Identity {
  /** @param {CryptoKeyPair} keys @param {Bytes} publicRaw @param {string} print */
  constructor(keys, publicRaw, print) {
    this.keys = keys;
    this.public = publicRaw;
    this.did = didKey(publicRaw);
    this.fingerprint = print;
  }

  /** @param {CryptoKeyPair} keys */
  static async of(keys) {
    const raw = new Uint8Array(await crypto.subtle.exportKey('raw', keys.publicKey));
    return new Identity(keys, raw, await fingerprint(raw));
  }

  /** A new key pair whose private half cannot be read by any script. */
  static async generate() {
    const keys = /** @type {CryptoKeyPair} */ (
      await crypto.subtle.generateKey(ED25519, false, ['sign', 'verify']));
    return Identity.of(keys);
  }

  /** @param {Bytes} message */
  async sign(message) {
    return new Uint8Array(await crypto.subtle.sign(ED25519, this.keys.privateKey, message));
  }
}

/**
 * Whether this browser's WebCrypto has Ed25519 (Chrome and Edge 137, Firefox 129, Safari 17
 * on; older ones lack it): without it this browser can neither sign nor check a signature.
 */
export async function ed25519Supported() {
  try {
    await crypto.subtle.generateKey(ED25519, false, ['sign', 'verify']);
    return true;
  } catch {
    return false;
  }
}

// -- what this browser keeps: its key pair, and the keys it computed with ---------------------

const DB = 'mpyc-webrtc';
/** Version 1 had the identity only; version 2 added the known identities. */
const DB_VERSION = 2;
const STORE = 'identity';
const KNOWN = 'known';

/** @returns {Promise<IDBDatabase>} */
function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, DB_VERSION);
    // From any older version (or none) to this one: add the stores that are missing, keep
    // what is there (above all the identity: a new key would be another person).
    request.onupgradeneeded = () => {
      const db = request.result;
      if (!db.objectStoreNames.contains(STORE)) db.createObjectStore(STORE);
      if (!db.objectStoreNames.contains(KNOWN)) db.createObjectStore(KNOWN);
    };
    request.onsuccess = () => {
      const db = request.result;
      db.onversionchange = () => db.close(); // a newer page upgrades: let it
      resolve(db);
    };
    request.onerror = () => reject(request.error);
    request.onblocked = () => reject(new Error(
      'Another tab of this site holds an older version of its stored data open; close it and reload this page.'));
  });
}

/**
 * @param {IDBDatabase} db @param {string} store @param {'readonly'|'readwrite'} mode
 * @param {(s: IDBObjectStore) => IDBRequest} act
 * @returns {Promise<any>}
 */
function inStore(db, store, mode, act) {
  return new Promise((resolve, reject) => {
    const request = act(db.transaction(store, mode).objectStore(store));
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/**
 * This browser's identity, made and kept (IndexedDB keeps the CryptoKey objects
 * themselves, the private one still not extractable) the first time.
 * @returns {Promise<{identity: Identity, created: boolean}>}
 */
export async function loadOrCreate() {
  const db = await openDb();
  try {
    const kept = /** @type {CryptoKeyPair | undefined} */ (
      await inStore(db, STORE, 'readonly', (s) => s.get('self')));
    if (kept) return { identity: await Identity.of(kept), created: false };
    const identity = await Identity.generate();
    await inStore(db, STORE, 'readwrite', (s) => s.put(identity.keys, 'self'));
    return { identity, created: true };
  } finally {
    db.close();
  }
}

/**
 * What this browser remembers of a key it computed with (the twin of the native peer's
 * known.json): the name it last claimed, when it was first and last seen (ISO times), and
 * how often.
 * @typedef {{name: string, first: string, last: string, count: number}} KnownRecord
 */

/**
 * What to tell the person about a verified key: a ``known.*`` sentence key and its fields.
 * ``other``: for ``name_reused``, the key that had the name before (its fingerprint goes
 * into the sentence).
 * @typedef {{kind: 'new' | 'known' | 'renamed' | 'name_reused', fields: Record<string, string>,
 *   other?: string}} KnownVerdict
 */

/** A name as compared: case and runs of white space do not count. @param {string} name */
const folded = (name) => tidy(name).toLowerCase();
/** A name as kept: white space at the ends dropped, runs of it made one space. @param {string} name */
const tidy = (name) => (name || '').split(/\s+/).filter(Boolean).join(' ');

/**
 * ``once, last on 2026-12-07``: how often and how recently a key was met (known.when).
 * @param {KnownRecord} seen
 */
export function knownWhen(seen) {
  const count = Number(seen.count) || 1;
  const day = String(seen.last ?? '').slice(0, 10);
  const times = count === 1 ? 'once' : count === 2 ? 'twice' : `${count} times`;
  return day ? `${times}, last on ${day}` : times;
}

/**
 * The verdict on ``did`` claiming ``name`` (may be ''), given what this browser remembers
 * (the twin of mpyc_webrtc/known.py's recognise): ``known`` (seen, the same name, or none
 * now or then), ``renamed`` (seen as another name), ``name_reused`` (never seen, but with
 * the name of a key seen before: a person may be misled), else ``new``.
 * @param {Map<string, KnownRecord>} records by did
 * @param {string} did
 * @param {string} name
 * @returns {KnownVerdict}
 */
export function knownVerdict(records, did, name) {
  const now = tidy(name);
  const seen = records.get(did);
  if (seen) {
    const before = String(seen.name || '');
    if (now && before && folded(now) !== folded(before)) {
      return { kind: 'renamed', fields: { before, name: now } };
    }
    return { kind: 'known', fields: { name: before || now, when: knownWhen(seen) } };
  }
  if (now) {
    for (const other of [...records.keys()].sort()) {
      const record = /** @type {KnownRecord} */ (records.get(other));
      if (other !== did && folded(String(record.name || '')) === folded(now)) {
        return { kind: 'name_reused', fields: { name: now }, other };
      }
    }
  }
  return { kind: 'new', fields: {} };
}

/**
 * ``did`` claiming ``name`` was verified in a session: the verdict (on what was kept
 * before), then it is kept. ``name_reused`` gets the other key's fingerprint.
 * @param {string} did
 * @param {string} name
 * @param {Date} [now]
 * @returns {Promise<KnownVerdict>}
 */
export async function meetKnown(did, name, now = new Date()) {
  const db = await openDb();
  try {
    const [keys, values] = await Promise.all([
      inStore(db, KNOWN, 'readonly', (s) => s.getAllKeys()),
      inStore(db, KNOWN, 'readonly', (s) => s.getAll()),
    ]);
    /** @type {Map<string, KnownRecord>} */
    const records = new Map(keys.map((/** @type {string} */ key, /** @type {number} */ i) => [key, values[i]]));
    const verdict = knownVerdict(records, did, name);
    if (verdict.other) {
      let print = '?';
      try {
        print = await fingerprint(publicKey(verdict.other));
      } catch {
        // a record that is not a did:key: said as '?'
      }
      verdict.fields.fingerprint = print;
    }
    const seen = records.get(did);
    const at = now.toISOString().replace(/\.\d+Z$/, 'Z'); // to the second, UTC, as known.py
    const kept = tidy(name);
    /** @type {KnownRecord} */
    const record = seen ? { ...seen, name: kept || seen.name, last: at, count: (Number(seen.count) || 0) + 1 }
      : { name: kept, first: at, last: at, count: 1 };
    await inStore(db, KNOWN, 'readwrite', (s) => s.put(record, did));
    return verdict;
  } finally {
    db.close();
  }
}
