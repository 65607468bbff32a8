// The browser's identity module (web/identity.js) against the known answers of
// mpyc_webrtc/identity.py (tests/identity_vectors.json); run by tests/test_identity.py:
//
//     node tests/js/identity_vectors.mjs VECTORS.json
//
// Prints {"checked": N, "failures": [...]}. Node's WebCrypto has Ed25519, as browsers do;
// a key from a seed is imported as PKCS #8 (the browser itself only ever generates keys).

import { readFileSync } from 'node:fs';

import {
  didKey, fingerprint, linkStatement, publicKey, statement, verify,
} from '../../web/identity.js';

const hex = (text) => new Uint8Array(text.match(/../g)?.map((h) => parseInt(h, 16)) ?? []);
const toHex = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
// PKCS #8 for an Ed25519 private key: this fixed prefix, then the 32-byte seed.
const PKCS8_PREFIX = hex('302e020100300506032b657004220420');

const { cases, link } = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const failures = [];
let checked = 0;
const check = (name, got, expected) => {
  checked += 1;
  if (got !== expected) failures.push({ name, got, expected });
};

for (const [n, c] of cases.entries()) {
  const key = await crypto.subtle.importKey(
    'pkcs8', new Uint8Array([...PKCS8_PREFIX, ...hex(c.seed)]), { name: 'Ed25519' }, false,
    ['sign']);
  const message = statement(...c.fields);
  check(`${n} did`, didKey(hex(c.public)), c.did);
  check(`${n} public`, toHex(publicKey(c.did)), c.public);
  check(`${n} fingerprint`, await fingerprint(hex(c.public)), c.fingerprint);
  check(`${n} statement`, toHex(message), c.statement);
  const signature = new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, key, message));
  const verified = toHex(signature) === c.signature &&
    await verify(c.did, hex(c.signature), message) &&
    !(await verify(c.did, hex(c.signature), statement('other', ...c.fields)));
  check(`${n} signature`, verified, true);
}
check('link statement', toHex(linkStatement(...link.args)), link.statement);
console.log(JSON.stringify({ checked, failures }));
