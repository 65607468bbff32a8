// The page's ring writer (web/ring.js), for tests/test_ring.py: writes the records given
// as JSON and prints the layout's numbers, the header and the ring's bytes, for the
// Python reader (py_worker/ring.py) to read.
//
//     node tests/js/ring_records.mjs SIZE RECORDS.json
//
// RECORDS: [[kind, peer, channel, text or [bytes...]], ...]; "READ n" moves the reader on
// by hand (as if Python had read n bytes) before the next record.

import { readFileSync } from 'node:fs';

import * as ringModule from '../../web/ring.js';

const { RingWriter, DATA_OFFSET } = ringModule;
const [size, file] = [Number(process.argv[2]), process.argv[3]];
const writer = new RingWriter(new ArrayBuffer(DATA_OFFSET + size), size);
for (const step of JSON.parse(readFileSync(file, 'utf8'))) {
  if (typeof step === 'string') {
    const moved = Number(step.split(' ')[1]);
    Atomics.store(writer.header, ringModule.READ, (Atomics.load(writer.header, ringModule.READ) + moved) | 0);
    writer.flush();
    continue;
  }
  const [kind, peer, channel, payload] = step;
  writer.write(kind, peer, channel, typeof payload === 'string' ? payload : new Uint8Array(payload));
}
const layout = Object.fromEntries(['WRITE', 'READ', 'PAGE_WAITING', 'MAX_PEERS', 'SENT', 'BUFFERED',
  'WANT_DRAIN', 'HEADER_WORDS', 'DATA_OFFSET', 'DATA_SIZE', 'HEADER_BYTES', 'KINDS']
  .map((name) => [name, ringModule[name]]));
console.log(JSON.stringify({
  layout,
  header: Array.from(writer.header),
  data: Buffer.from(writer.data).toString('base64'),
  queued: writer.queue.length,
}));
