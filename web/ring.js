// @ts-check
// The page's side of the worker's inbox: records written into a SharedArrayBuffer, then
// Atomics.notify. Python in the worker sleeps in Atomics.wait on it while a program runs
// (py_worker/ring.py explains why, and defines the layout; tests/test_ring.py checks that
// these numbers and this writer agree with that reader).

export const WRITE = 0;
export const READ = 1;
export const PAGE_WAITING = 2;
export const MAX_PEERS = 64;
export const SENT = 8; // + 2 * peer
export const BUFFERED = 9; // + 2 * peer
export const WANT_DRAIN = SENT + 2 * MAX_PEERS; // + peer
export const HEADER_WORDS = WANT_DRAIN + MAX_PEERS;
export const DATA_OFFSET = 4 * HEADER_WORDS;
export const DATA_SIZE = 1 << 23;
export const HEADER_BYTES = 12;
export const KINDS = Object.freeze({
  CHANNEL: 1, OPEN: 2, BINARY: 3, TEXT: 4, CLOSING: 5, CLOSED: 6, DRAINED: 7, ERROR: 8, CONTROL: 9,
});

const encoder = new TextEncoder();

export class RingWriter {
  /**
   * @param {SharedArrayBuffer | ArrayBuffer} buffer DATA_OFFSET + size bytes (an
   *   ArrayBuffer only in tests: Atomics.notify then wakes nobody)
   * @param {number} [size] the ring's size, a power of two
   */
  constructor(buffer, size = DATA_SIZE) {
    this.buffer = buffer;
    this.size = size;
    this.header = new Int32Array(buffer, 0, HEADER_WORDS);
    this.data = new Uint8Array(buffer, DATA_OFFSET, size);
    /** @type {Uint8Array[]} records that did not fit yet, in order */
    this.queue = [];
  }

  /** A fresh buffer for a ring of ``size`` bytes (shared: the page must be cross-origin isolated). */
  static create(size = DATA_SIZE) {
    return new RingWriter(new SharedArrayBuffer(DATA_OFFSET + size), size);
  }

  /**
   * Append a record and wake the reader; kept in order for later if the ring is full.
   * @param {number} kind one of KINDS
   * @param {number} peer
   * @param {number} channel
   * @param {Uint8Array | ArrayBuffer | string} [payload]
   */
  write(kind, peer, channel, payload = new Uint8Array(0)) {
    const body = typeof payload === 'string' ? encoder.encode(payload)
      : payload instanceof Uint8Array ? payload : new Uint8Array(payload);
    const length = HEADER_BYTES + body.length;
    const record = new Uint8Array(length + ((4 - (length % 4)) % 4));
    const view = new DataView(record.buffer);
    view.setUint8(0, kind);
    view.setUint16(2, peer, true);
    view.setUint32(4, channel, true);
    view.setUint32(8, body.length, true);
    record.set(body, HEADER_BYTES);
    if (record.length > this.size) throw new Error(`a message of ${body.length} bytes does not fit the worker's inbox`);
    this.queue.push(record);
    this.flush();
  }

  /** Move queued records into the ring as far as they fit (again when the reader made room). */
  flush() {
    let wrote = false;
    let flagged = false;
    while (this.queue.length) {
      const record = this.queue[0];
      const write = Atomics.load(this.header, WRITE) >>> 0;
      const read = Atomics.load(this.header, READ) >>> 0;
      const free = this.size - ((write - read) >>> 0);
      if (record.length > free) {
        if (flagged) break;
        // Ask for word when there is room; then look once more, in case the reader made
        // room just before it could see the wish.
        Atomics.store(this.header, PAGE_WAITING, 1);
        flagged = true;
        continue;
      }
      const start = write & (this.size - 1);
      const first = Math.min(record.length, this.size - start);
      this.data.set(record.subarray(0, first), start);
      if (first < record.length) this.data.set(record.subarray(first), 0);
      Atomics.store(this.header, WRITE, (write + record.length) | 0);
      this.queue.shift();
      wrote = true;
    }
    if (wrote) Atomics.notify(this.header, WRITE);
  }

  /**
   * What the page did with channel ``peer``'s data: Python's bufferedAmount is what it
   * posted minus ``sent`` plus ``buffered``.
   * @param {number} peer
   * @param {number} sentBytes just handed to the channel
   * @param {number} buffered the channel's bufferedAmount now
   */
  sent(peer, sentBytes, buffered) {
    Atomics.add(this.header, SENT + 2 * peer, sentBytes | 0);
    Atomics.store(this.header, BUFFERED + 2 * peer, buffered | 0);
  }

  /**
   * A new channel to ``peer``: nothing sent on it yet.
   * @param {number} peer
   */
  reset(peer) {
    Atomics.store(this.header, SENT + 2 * peer, 0);
    Atomics.store(this.header, BUFFERED + 2 * peer, 0);
    Atomics.store(this.header, WANT_DRAIN + peer, 0);
  }

  /**
   * Whether Python waits for channel ``peer`` to drain (and forget that it did).
   * @param {number} peer
   */
  takeDrainWish(peer) {
    return Atomics.exchange(this.header, WANT_DRAIN + peer, 0) === 1;
  }
}
