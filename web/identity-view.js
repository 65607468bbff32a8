// @ts-check
// Who is who, as the lobby shows it: this browser's own key (identity.js: made once, kept
// in IndexedDB, its private half unreadable), and each other party's key once the signaling
// client verified it on that party's peer connection (its ``identity`` event), with what
// this browser remembers of the key from earlier sessions (known identities).

import { copyText } from './common.js';
import {
  ed25519Supported, fingerprint, Identity, loadOrCreate, meetKnown, publicKey,
} from './identity.js';
import { describe, log, page, renderRoster, ui } from './page.js';
import { say } from './sentences.js';

/** @typedef {import('./client.js').ClientEvent} ClientEvent */
/** @typedef {import('./identity.js').KnownVerdict} KnownVerdict */

/**
 * This browser's identity: the one it keeps, or a new one it keeps from now on. If it
 * cannot keep one (no IndexedDB, say), one for this visit only; null without Ed25519.
 * @returns {Promise<Identity | null>}
 */
export async function ownIdentity() {
  try {
    const { identity, created } = await loadOrCreate();
    if (created) log(`made this browser's identity key: ${identity.did}`);
    return identity;
  } catch (error) {
    if (!await ed25519Supported()) return null;
    log(`this browser could not keep its identity key (${describe(error)}); using a new one for this visit only`);
    return Identity.generate();
  }
}

/**
 * "You are did:key:... (fingerprint ...)." with a Copy button.
 * @param {Identity} identity
 * @param {import('./sentences.js').Sentences} sentences
 */
export function showMine(identity, sentences) {
  ui.myIdentityText.textContent = sentences.say('identity.yours', {
    identity: identity.did, fingerprint: identity.fingerprint,
  });
  ui.myIdentity.hidden = false;
}

ui.copyIdentity?.addEventListener('click', async () => {
  const did = page.identity?.did;
  if (!did) return;
  const copied = await copyText(did, null);
  ui.copyIdentityResult.textContent = copied ? say('result.copied') : '';
});

/** @type {Map<string, Promise<KnownVerdict | null>>} the verdict on each key met in this page */
const verdicts = new Map();

/**
 * The client verified party ``peer``'s key (``identity`` event): show it, and what this
 * browser remembers of it; then remember it. A key met twice in one page is looked up and
 * counted once.
 * @param {ClientEvent} event peer, identity, name, label, who (its place in words)
 */
export async function verifiedIdentity({ peer, identity, name, who }) {
  const print = await fingerprint(publicKey(identity));
  /** @type {import('./roster-view.js').VerifiedIdentity} */
  const shown = { did: identity, name: name ?? '', who: String(who), fingerprint: print, known: null };
  page.identities.set(peer, shown);
  page.fingerprints.set(identity, print);
  log(`party ${peer} is ${identity} (fingerprint ${print})${name ? `, named '${name}' by itself` : ''}: verified`);
  renderRoster();
  if (!verdicts.has(identity)) {
    verdicts.set(identity, meetKnown(identity, name ?? '').catch((error) => {
      log(`could not look up or remember party ${peer}'s key: ${describe(error)}`);
      return null;
    }));
  }
  const known = await verdicts.get(identity);
  if (page.identities.get(peer) !== shown) return; // something newer came meanwhile
  shown.known = known ?? null;
  if (known) log(`party ${peer}'s key: ${known.kind}`);
  renderRoster();
}
