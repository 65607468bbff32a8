// The lobby's round view (web/round-view.js) without a browser, for tests/test_round_view.py:
// prints, as JSON, what it says of sizes, of a finished round's status, and of a running
// round's progress (on stand-ins for the <progress> bar and the text).

import { readFileSync } from 'node:fs';
import { doneStatus, RoundProgress, sizeText } from '../../web/round-view.js';
import { Sentences, useSentences } from '../../web/sentences.js';

// The page's words: the table of mpyc_webrtc/sentences.py, given on stdin.
useSentences(new Sentences(JSON.parse(readFileSync(0, 'utf8'))));

/** A stand-in for a <progress> element: its value attribute, as the page would have it. */
function bar() {
  return {
    max: 1,
    /** @type {number | null} */
    value: null,
    removeAttribute(name) { if (name === 'value') this.value = null; },
  };
}

const sizes = Object.fromEntries([0, 1, 900, 1024, 3873 * 1024, 12831 * 1024, 5 * 1024 ** 3]
  .map((n) => [n, sizeText(n)]));
const statuses = ['The average salary is 53,333.33.', 'Everyone voted yes.', 'sort = -1,0,7',
  'Party 2 has the most: 9.', 'Alice gives a present to Bob.', '', null].map((h) => doneStatus(h));

// Round 1: nothing to measure by; the rate over the last seconds. Round 2: measured
// against round 1's 1,000 messages.
const progress = new RoundProgress();
const shown = [];
const ui = { bar: bar(), text: { textContent: '' } };
const show = (facts) => {
  progress.show(ui, facts);
  shown.push({ text: ui.text.textContent, value: ui.bar.value });
};
progress.start();
show({ computing: false, seconds: 0.2, traffic: null, now: 0 });
show({ computing: true, seconds: 0.5, traffic: { messages: 100, bytes: 2048 }, now: 500 });
show({ computing: true, seconds: 1.5, traffic: { messages: 400, bytes: 13138944 }, now: 1500 });
progress.finished({ messages: 1000, bytes: 20000000 });
progress.start();
show({ computing: true, seconds: 0.5, traffic: { messages: 400, bytes: 600 }, now: 10000 });
show({ computing: true, seconds: 9.0, traffic: { messages: 1500, bytes: 600 }, now: 18500 });
console.log(JSON.stringify({ sizes, statuses, shown }));
