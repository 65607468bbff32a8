// @ts-check
// The page keeps the data channels and relays them to Python in the worker: what happens
// to a channel goes into the worker's inbox (ring.js), what Python sends comes back as
// worker messages (send, close-channel, low-water). Why the channels stay here, and not
// in the worker: py_worker/ring.py. While Python computes, its event loop gets no turn
// and it sends nothing, for longer than the others wait before calling a party gone: the
// page sends the link's keepalive for it (keepAlive), as a native peer's network thread does.

import { KINDS, RingWriter } from './ring.js';

const encoder = new TextEncoder();

/**
 * @typedef {object} Relayed
 * @property {number} peer
 * @property {RTCDataChannel} channel
 * @property {() => void} [opened] the link's own interest in the channel opening
 * @property {number} lastSent when anything was last sent on it (performance.now())
 * @property {{every: number, text: string, highWater: number}} [keepalive] Python's wish
 */

export class ChannelRelay {
  /** @param {RingWriter} ring */
  constructor(ring) {
    this.ring = ring;
    /** @type {Map<number, Relayed>} by channel id */
    this.channels = new Map();
    this.nextId = 1;
    /** @type {ReturnType<typeof setInterval> | null} */
    this.ticker = null;
  }

  /**
   * Relay ``channel`` to ``peer`` from now on (in the task that made it, before it opens).
   * @param {number} peer
   * @param {RTCDataChannel} channel
   * @param {() => void} [opened]
   * @returns {number} the channel's id
   */
  add(peer, channel, opened) {
    const id = this.nextId++;
    const { ring } = this;
    this.channels.set(id, { peer, channel, opened, lastSent: performance.now() });
    ring.reset(peer);
    ring.write(KINDS.CHANNEL, peer, id);
    channel.binaryType = 'arraybuffer';
    channel.onopen = () => {
      ring.write(KINDS.OPEN, peer, id);
      opened?.();
    };
    channel.onmessage = ({ data }) => {
      if (typeof data === 'string') ring.write(KINDS.TEXT, peer, id, data);
      else ring.write(KINDS.BINARY, peer, id, /** @type {ArrayBuffer} */ (data));
    };
    // A channel the peer began to close cannot send any more: Python must know at once.
    channel.addEventListener('closing', () => ring.write(KINDS.CLOSING, peer, id));
    channel.onclose = () => {
      ring.write(KINDS.CLOSED, peer, id);
      this.channels.delete(id);
      this.tickIfNeeded();
    };
    channel.onerror = (event) => {
      const error = /** @type {RTCErrorEvent} */ (event).error;
      ring.write(KINDS.ERROR, peer, id, (error && error.message) || 'unknown error');
    };
    channel.onbufferedamountlow = () => this.drained(id);
    return id;
  }

  /**
   * Python's data for channel ``id``.
   * @param {number} id
   * @param {Uint8Array | string} data
   */
  send(id, data) {
    const relayed = this.channels.get(id);
    if (!relayed) return; // closed meanwhile: Python hears that from the inbox
    const { channel, peer } = relayed;
    relayed.lastSent = performance.now();
    const size = typeof data === 'string' ? encoder.encode(data).length : data.length;
    try {
      if (typeof data === 'string') channel.send(data);
      else channel.send(/** @type {Uint8Array<ArrayBuffer>} */ (data));
    } catch (error) {
      // Closing or closed: Python sees the state change in the inbox and stops sending.
      this.ring.write(KINDS.ERROR, peer, id, `could not send: ${error instanceof Error ? error.message : error}`);
    }
    this.ring.sent(peer, size, channel.bufferedAmount);
    this.drained(id);
  }

  /**
   * Tell Python that channel ``id`` drained, if it waits for that and it did.
   * @param {number} id
   */
  drained(id) {
    const relayed = this.channels.get(id);
    if (!relayed) return;
    const { channel, peer } = relayed;
    this.ring.sent(peer, 0, channel.bufferedAmount);
    if (channel.bufferedAmount <= channel.bufferedAmountLowThreshold && this.ring.takeDrainWish(peer)) {
      this.ring.write(KINDS.DRAINED, peer, id);
    }
  }

  /** @param {number} id */
  close(id) {
    const relayed = this.channels.get(id);
    if (relayed && (relayed.channel.readyState === 'connecting' || relayed.channel.readyState === 'open')) {
      relayed.channel.close();
    }
  }

  /** @param {number} id @param {number} amount */
  lowWater(id, amount) {
    const relayed = this.channels.get(id);
    if (relayed) relayed.channel.bufferedAmountLowThreshold = amount;
  }

  /**
   * Send ``text`` on channel ``id`` whenever Python sent nothing on it for ``every``
   * seconds, unless ``highWater`` bytes or more wait in it (py_worker/channel.py).
   * @param {number} id @param {number} every @param {string} text @param {number} highWater
   */
  keepAlive(id, every, text, highWater) {
    const relayed = this.channels.get(id);
    if (!relayed) return;
    relayed.keepalive = { every, text, highWater };
    this.tickIfNeeded();
  }

  /** A timer while some channel wants keepalives, none otherwise. */
  tickIfNeeded() {
    const wanted = [...this.channels.values()].filter((r) => r.keepalive);
    if (wanted.length && this.ticker === null) {
      const every = Math.min(...wanted.map((r) => r.keepalive?.every ?? 1));
      this.ticker = setInterval(() => this.tick(), (every * 1000) / 2);
    } else if (!wanted.length && this.ticker !== null) {
      clearInterval(this.ticker);
      this.ticker = null;
    }
  }

  tick() {
    const now = performance.now();
    for (const relayed of this.channels.values()) {
      const { channel, keepalive } = relayed;
      if (!keepalive || channel.readyState !== 'open') continue;
      if (now - relayed.lastSent < keepalive.every * 1000) continue;
      if (channel.bufferedAmount >= keepalive.highWater) continue;
      try {
        channel.send(keepalive.text);
        relayed.lastSent = now;
      } catch {
        // Closing: the inbox tells Python.
      }
    }
  }

  /**
   * A message for the running program (start, peer-left, peer-away, peer-failed, names,
   * signaling-ended): through the inbox, since Python does not read worker messages then.
   * @param {{type: string, [field: string]: unknown}} message
   */
  tell(message) {
    this.ring.write(KINDS.CONTROL, 0, 0, JSON.stringify(message));
  }
}
