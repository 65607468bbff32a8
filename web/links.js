// @ts-check
// One RTCPeerConnection per other party, made on the main thread (workers cannot), with its
// negotiated data channel relayed to the worker (relay.js) from the task that created it, and
// a second one for the chat (wire.CHAT_CHANNEL), which stays here on the page. What to do and
// when (who offers, which description or candidate to apply) comes from the signaling
// client's events (client.js: connect, remote, candidate); a PeerLink only does it, in the
// order it is told, as mpyc_webrtc/native/links.py does with aiortc.

import { say } from './sentences.js';

/** The chat's data channel (wire.CHAT_CHANNEL); MPyC's is `mpyc`, id 0. */
const CHAT_LABEL = 'chat';
const CHAT_ID = 1;
/** A chat frame longer than this is not one (a message is at most 500 characters, signed). */
const MAX_CHAT_FRAME = 16384;

/**
 * A chat frame as its payload: a JSON object, or null for anything else.
 * @param {unknown} data
 * @returns {Record<string, unknown> | null}
 */
export function chatPayload(data) {
  if (typeof data !== 'string' || data.length > MAX_CHAT_FRAME) return null;
  let payload;
  try {
    payload = JSON.parse(data);
  } catch {
    return null;
  }
  return payload !== null && typeof payload === 'object' && !Array.isArray(payload) ? payload : null;
}

/**
 * How a connection's packets travel once connected: 'direct', 'relayed' or null.
 * @param {RTCPeerConnection} pc
 * @returns {Promise<string | null>}
 */
async function pathOf(pc) {
  const stats = await pc.getStats();
  /** @type {any} */
  let pair = null;
  stats.forEach((report) => {
    if (report.type === 'transport' && report.selectedCandidatePairId) {
      pair = stats.get(report.selectedCandidatePairId) ?? pair;
    }
  });
  if (!pair) {
    stats.forEach((report) => {
      if (report.type === 'candidate-pair' && report.nominated && report.state === 'succeeded') pair = report;
    });
  }
  if (!pair) return null;
  const types = [stats.get(pair.localCandidateId), stats.get(pair.remoteCandidateId)]
    .map((candidate) => candidate?.candidateType);
  return types.includes('relay') ? 'relayed' : 'direct';
}

/** What a link that was replaced still reports: nothing. */
const QUIET = {
  description() {}, candidate() {}, chat() {}, failed() {}, changed() {}, channel() {},
};

/**
 * @typedef {object} LinkHooks
 * @property {(peer: number, kind: string, sdp: string) => void} description this party's
 *   offer or answer is made (to seal and send)
 * @property {(peer: number, candidate: RTCIceCandidate) => void} candidate an ICE candidate
 *   of this party's (trickle ICE)
 * @property {(peer: number, channel: RTCDataChannel, opened: () => void) => void} channel
 *   relay the channel to the worker (in the task that made it, before anything arrives);
 *   ``opened`` when it opens
 * @property {(peer: number, payload: Record<string, unknown>) => void} chat a chat frame
 *   from the peer, parsed: a JSON object (anything else is dropped here)
 * @property {(link: PeerLink) => void} changed its state or path changed
 * @property {(peer: number, reason: string) => void} failed it gave up; ``reason`` ends with
 *   a period
 * @property {(text: string) => void} log
 */

export class PeerLink {
  /**
   * @param {number} peer
   * @param {boolean} offer whether this party offers (the lower pid, as the client decides)
   * @param {RTCIceServer[]} iceServers
   * @param {LinkHooks} hooks
   * @param {{relayOnly?: boolean, ordered?: boolean}} [options] ``ordered`` is false when
   *   the worker recovers lost messages itself (mpyc_webrtc/recovery.py): a resent message
   *   must not queue behind the lost one
   */
  constructor(peer, offer, iceServers, hooks, { relayOnly = false, ordered = true } = {}) {
    this.peer = peer;
    this.hooks = hooks;
    // Relay only: gather no host or server-reflexive candidates, so the other party never
    // learns this computer's addresses (only the relay's).
    this.pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: relayOnly ? 'relay' : 'all' });
    // Negotiated on both sides, so it exists before any SDP; relayed from this same task,
    // before it can open.
    const channel = this.pc.createDataChannel('mpyc', { negotiated: true, id: 0, ordered });
    // The chat's own channel: negotiated too (wire.CHAT_CHANNEL, the same on every side),
    // kept on the page, never mixed with MPyC's.
    this.chat = this.pc.createDataChannel(CHAT_LABEL, { negotiated: true, id: CHAT_ID, ordered: true });
    this.chat.onmessage = ({ data }) => {
      const payload = chatPayload(data);
      if (payload) hooks.chat(peer, payload);
    };
    this.remoteSet = false;
    this.steps = Promise.resolve(); // this link's signaling steps, one after another
    this.failed = false;
    this.channelOpen = false;
    this.closed = false;
    /** @type {string | null} */
    this.path = null;
    hooks.channel(peer, channel, () => this.opened());
    this.pc.onicecandidate = ({ candidate }) => {
      if (candidate && candidate.candidate) hooks.candidate(peer, candidate);
    };
    this.pc.onconnectionstatechange = () => {
      hooks.log(`connection to party ${peer}: ${this.pc.connectionState}`);
      if (this.pc.connectionState === 'failed') this.giveUp(say('connect.link_failed'));
      if (this.pc.connectionState === 'connected') {
        pathOf(this.pc).then((path) => {
          this.path = path;
          hooks.changed(this);
        }).catch(() => {});
      }
      hooks.changed(this);
    };
    this.pc.onsignalingstatechange = () => hooks.changed(this);
    if (offer) {
      this.step(async () => {
        await this.pc.setLocalDescription(await this.pc.createOffer());
        hooks.description(peer, 'offer', this.pc.localDescription?.sdp ?? '');
      });
    }
    hooks.changed(this);
  }

  /** @param {() => Promise<void>} action */
  step(action) {
    this.steps = this.steps.then(action).catch((error) => {
      this.giveUp(say('connect.setup_failed', { reason: error.message || error }));
    });
  }

  /**
   * The peer's offer or answer (client event ``remote``); after an offer, answer it.
   * @param {'offer' | 'answer'} kind
   * @param {string} sdp
   */
  remote(kind, sdp) {
    this.step(async () => {
      await this.pc.setRemoteDescription({ type: kind, sdp });
      this.remoteSet = true;
      this.hooks.changed(this);
      if (kind === 'offer') {
        await this.pc.setLocalDescription(await this.pc.createAnswer());
        this.hooks.description(this.peer, 'answer', this.pc.localDescription?.sdp ?? '');
      }
    });
  }

  /**
   * The peer's ICE candidate (client event ``candidate``), after its description.
   * @param {RTCIceCandidateInit} init
   */
  candidate(init) {
    this.step(async () => {
      try {
        await this.pc.addIceCandidate(init);
      } catch (error) {
        this.hooks.log(`ignoring an unusable connection candidate from party ${this.peer}: ${error instanceof Error ? error.message : error}`);
      }
    });
  }

  /** Whether a chat frame can go over this connection now. */
  get chatOpen() {
    return this.chat.readyState === 'open';
  }

  /**
   * Send one chat payload as a JSON text frame; false if the channel is not open.
   * @param {Record<string, unknown>} payload
   */
  sendChat(payload) {
    if (!this.chatOpen) return false;
    try {
      this.chat.send(JSON.stringify(payload));
      return true;
    } catch {
      return false; // it began closing meanwhile
    }
  }

  opened() {
    this.channelOpen = true;
    this.hooks.changed(this);
  }

  /** @param {string} reason */
  giveUp(reason) {
    if (this.failed) return;
    this.failed = true;
    this.hooks.log(`connection to party ${this.peer}: ${reason}`);
    this.hooks.failed(this.peer, reason);
    this.hooks.changed(this);
  }

  /** The link state as the wire names it (mpyc_webrtc/wire.py LINK_STATES). */
  state() {
    const { pc } = this;
    if (this.failed || pc.connectionState === 'failed') return 'failed';
    if (this.closed || pc.connectionState === 'closed') return 'closed';
    if (this.channelOpen) return 'ready';
    if (pc.connectionState === 'connected') return 'connected';
    if (!this.remoteSet || pc.signalingState !== 'stable') return 'signaling';
    return 'connecting';
  }

  /**
   * @param {{quiet?: boolean}} [options] ``quiet``: a new link to the same peer replaces this
   * one (it came back after a reload): nothing this one does is reported any more.
   */
  close({ quiet = false } = {}) {
    if (this.closed) return;
    this.closed = true;
    if (quiet) this.hooks = { ...this.hooks, ...QUIET };
    this.pc.close();
    this.hooks.changed(this);
  }
}
