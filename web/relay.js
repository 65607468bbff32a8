// @ts-check
// The page keeps the data channels and relays them to Python in the worker: what happens
// to a channel goes into the worker's inbox (ring.js), what Python sends comes back as
// worker messages (send, close-channel, low-water). Why the channels stay here, and not
// in the worker: py_worker/ring.py.

import { KINDS, RingWriter } from './ring.js';

const encoder = new TextEncoder();

/**
 * @typedef {object} Relayed
 * @property {number} peer
 * @property {RTCDataChannel} channel
 * @property {() => void} [opened] the link's own interest in the channel opening
 */

export class ChannelRelay {
  /** @param {RingWriter} ring */
  constructor(ring) {
    this.ring = ring;
    /** @type {Map<number, Relayed>} by channel id */
    this.channels = new Map();
    this.nextId = 1;
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
    this.channels.set(id, { peer, channel, opened });
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
   * A message for the running program (start, peer-left, peer-failed, names,
   * signaling-ended): through the inbox, since Python does not read worker messages then.
   * @param {{type: string, [field: string]: unknown}} message
   */
  tell(message) {
    this.ring.write(KINDS.CONTROL, 0, 0, JSON.stringify(message));
  }
}
