// The browser's twin of the signaling client (web/client.js), the sentences
// (web/sentences.js) and the join link's parsing (web/sealing.js), driven by the same
// scenarios as the Python side (tests/client_scenarios.json); run by tests/test_client.py:
//
//     node tests/js/client_scenarios.mjs SCENARIOS.json SENTENCES.json
//
// Prints one JSON object: {"checked": N, "failures": [...]}; a failure names the scenario,
// the step and what came instead of what was expected.

import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';

import { memberState, memberWords, SignalingClient } from '../../web/client.js';
import { parseFragment, toBase64Url } from '../../web/sealing.js';
import { Sentences } from '../../web/sentences.js';

const [scenarioFile, sentenceFile] = process.argv.slice(2);
const doc = JSON.parse(readFileSync(scenarioFile, 'utf8'));
const sentences = new Sentences(JSON.parse(readFileSync(sentenceFile, 'utf8')));

/** snake_case (the scenarios, Python) to camelCase (JavaScript). */
const camel = (name) => name.replace(/_(\w)/g, (_, c) => c.toUpperCase());
/** What JSON makes of a value: the events are compared as the wire would carry them. */
const plain = (value) => JSON.parse(JSON.stringify(value));

const failures = [];
let checked = 0;

for (const scenario of doc.scenarios) {
  const { session, link_hash: linkHash, ...options } = scenario.client;
  const client = new SignalingClient(session, linkHash, sentences, options);
  scenario.steps.forEach((step, index) => {
    checked += 1;
    let got;
    try {
      got = plain(client[camel(step.call)](...(step.args ?? [])));
    } catch (error) {
      got = `raised ${error.stack || error}`;
    }
    const expected = step.expect ?? [];
    if (!isDeepStrictEqual(got, expected)) {
      failures.push({ scenario: scenario.name, step: index, call: step.call, expected, got });
    }
  });
}

for (const [member, started, expected] of doc.member_states) {
  checked += 1;
  const got = memberState(member, started);
  if (got !== expected) failures.push({ member, started, expected, got });
}

for (const [member, started, expected] of doc.member_words) {
  checked += 1;
  let got;
  try {
    got = memberWords(member, started, sentences);
  } catch (error) {
    got = `raised ${error.stack || error}`;
  }
  if (got !== expected) failures.push({ member, started, expected, got });
}

for (const link of doc.links) {
  checked += 1;
  let got;
  try {
    const { secret, programHash } = parseFragment(link.fragment, sentences);
    got = { secret: toBase64Url(secret), program_hash: programHash };
  } catch (error) {
    got = { error: error.message };
  }
  const expected = 'error' in link ? { error: link.error }
    : { secret: link.secret, program_hash: link.program_hash };
  if (!isDeepStrictEqual(got, expected)) failures.push({ fragment: link.fragment, expected, got });
}

console.log(JSON.stringify({ checked, failures }));
