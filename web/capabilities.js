// @ts-check
// What this browser must have to take part, checked as the lobby opens, before any Python is
// downloaded: so a person whose browser cannot take part hears so before "I'm ready", not
// after a minute of loading and a failure halfway through the start.
//
// The names are wire.CAPABILITIES; a party that lacks some still joins and says which in its
// `unsupported` status, so the others see why it cannot take part (join.js). The sentences
// (capability.*, browser.*) are in mpyc_webrtc/sentences.py. JSPI is not checked here: the
// computation will not need it.

/** @typedef {'webrtc' | 'webassembly' | 'workers' | 'isolation'} Capability (wire.CAPABILITIES) */

/**
 * What this browser lacks of what taking part needs, in the order of wire.CAPABILITIES.
 * @param {Record<string, any>} [scope] the global object to look at
 * @returns {Capability[]}
 */
export function missingCapabilities(scope = globalThis) {
  /** @type {Capability[]} */
  const lacks = [];
  // The links: a peer connection, and a data channel on it (what carries MPyC's messages).
  const peerConnection = scope.RTCPeerConnection;
  if (typeof peerConnection !== 'function'
    || typeof peerConnection.prototype?.createDataChannel !== 'function') lacks.push('webrtc');
  // Python (Pyodide) is compiled to WebAssembly; some settings (Safari's Lockdown Mode,
  // for one) switch it off.
  const wasm = scope.WebAssembly;
  if (typeof wasm !== 'object' || wasm === null || typeof wasm.instantiate !== 'function') {
    lacks.push('webassembly');
  }
  if (typeof scope.Worker !== 'function') lacks.push('workers');
  // Python in the worker waits for the page's news in shared memory (py_worker/ring.py),
  // which browsers give only to a cross-origin isolated page.
  if (!(scope.crossOriginIsolated === true
    && typeof scope.SharedArrayBuffer === 'function')) lacks.push('isolation');
  return lacks;
}

/**
 * Whether the missing isolation is the server's doing, not the browser's: the browser knows
 * cross-origin isolation (a current one does) but this page did not get it, because the
 * page came without the headers that ask for it. Then no other browser would do better.
 * @param {Capability[]} lacks what missingCapabilities found
 * @param {Record<string, any>} [scope]
 */
export function isolationWithheld(lacks, scope = globalThis) {
  return lacks.length === 1 && lacks[0] === 'isolation' && scope.crossOriginIsolated === false;
}
