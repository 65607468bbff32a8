// @ts-check
// The session's shape: what its creator sealed (the descriptor) against what the server
// says, and the DTLS certificate a party shows. The twin of mpyc_webrtc/shape.py, used by
// client.js; the same scenarios check both.

import { SEALING } from './sealing.js';

/**
 * What the server's welcome says of the descriptor's fields (the program: the link's,
 * which this party checks on its own).
 * @param {Record<string, any>} welcome
 * @param {string} linkHash
 * @returns {Record<string, unknown>}
 */
export function saidBy(welcome, linkHash) {
  return {
    parties: welcome.parties,
    relay_only: welcome.relay_only,
    labels: welcome.labels,
    program: linkHash,
    args: welcome.program?.args,
    pins: welcome.pins,
  };
}

/**
 * The first field where the server's word differs from the creator's, with both values in
 * words; null if none does. Places' names compare with white space collapsed.
 * @param {Record<string, any>} descriptor
 * @param {Record<string, unknown>} said
 * @returns {[string, string, string] | null}
 */
export function difference(descriptor, said) {
  for (const name of SEALING.descriptor_fields) {
    let chosen = descriptor[name];
    let told = said[name];
    if (name === 'labels') {
      chosen = normalLabels(chosen, descriptor.parties);
      told = normalLabels(told, descriptor.parties);
    }
    if (JSON.stringify(chosen) !== JSON.stringify(told)) return [name, shown(chosen), shown(told)];
  }
  return null;
}

/**
 * The DTLS certificate fingerprint an SDP shows (``sha-256 AB:CD:...``), if any.
 * @param {string} sdp
 * @returns {string | null}
 */
export function certificate(sdp) {
  const found = /^a=fingerprint:(\S+) (\S+)/m.exec(sdp);
  return found ? `${found[1].toLowerCase()} ${found[2].toUpperCase()}` : null;
}

/**
 * @param {unknown} labels
 * @param {unknown} parties
 */
function normalLabels(labels, parties) {
  if (!Array.isArray(labels) || !Number.isInteger(parties)) return labels;
  const names = labels.map((x) => String(x).split(/\s+/).filter(Boolean).join(' '));
  while (names.length < /** @type {number} */ (parties)) names.push('');
  return names;
}

/**
 * A descriptor's value for a person.
 * @param {unknown} value
 */
function shown(value) {
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (Array.isArray(value)) return value.map((x) => JSON.stringify(x)).join(', ') || 'none';
  return JSON.stringify(value) ?? 'null';
}
