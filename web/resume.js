// @ts-check
// A reload (or a phone's pull-to-refresh) after the start: what this tab keeps so that its
// party gets its own place back and still sees what it had.
//
// - the party's resume secret (client.js newResume), drawn once per tab and session and kept
//   in sessionStorage (this tab only, gone when it closes): the server gives the place that
//   joined with it back to whoever shows it again, before and after the start;
// - the place it had, so that the reload asks for it;
// - the last result (the worker's result report and the program's printed output), so that
//   a reload shows it again;
// - a warning (beforeunload) while a round runs: a reload then ends the computation.

import { newResume } from './client.js';

/**
 * @typedef {object} KeptResult what a round showed, as this tab keeps it
 * @property {number} round
 * @property {any} result the worker's result report (result.js renderResult), or null
 * @property {string} output what the program printed
 * @property {number} at when it finished (ms since 1970)
 */

/** @param {string} what @param {string} sessionId */
const key = (what, sessionId) => `mpyc-webrtc-${what}:${sessionId}`;

/**
 * This tab's resume secret for ``sessionId``, and whether it held a place with it before
 * this load (``keepPlace``), which the server keeps for it after the start too; else a new
 * secret.
 * @param {string} sessionId
 * @returns {{resume: string, before: boolean}}
 */
export function keptResume(sessionId) {
  const kept = sessionStorage.getItem(key('resume', sessionId));
  if (kept && keptPlace(sessionId) !== null) return { resume: kept, before: true };
  return { resume: newResume(), before: false };
}

/**
 * The server gave this tab place ``pid`` for the join with ``resume``: keep both.
 * @param {string} sessionId @param {number} pid @param {string} resume
 */
export function keepPlace(sessionId, pid, resume) {
  sessionStorage.setItem(key('resume', sessionId), resume);
  sessionStorage.setItem(key('place', sessionId), String(pid));
}

/** @param {string} sessionId @returns {number | null} */
export function keptPlace(sessionId) {
  const text = sessionStorage.getItem(key('place', sessionId));
  return text !== null && /^\d+$/.test(text) ? Number(text) : null;
}

/** @param {string} sessionId @returns {KeptResult | null} */
export function lastResult(sessionId) {
  try {
    const kept = JSON.parse(sessionStorage.getItem(key('result', sessionId)) ?? 'null');
    return kept && typeof kept.round === 'number' ? kept : null;
  } catch {
    return null;
  }
}

/**
 * Keep each round's result as the worker reports it: its result, what it printed, and (once
 * it exits without a problem) that it is done.
 * @param {Worker} worker
 * @param {string} sessionId
 * @param {() => number} round the round running now
 */
export function keepResults(worker, sessionId, round) {
  /** @type {{result: any, output: string}} */
  let current = { result: null, output: '' };
  worker.addEventListener('message', (event) => {
    const message = event.data ?? {};
    if (message.type === 'stdout') {
      current.output += `${message.text}\n`;
    } else if (message.type === 'report' && message.kind === 'result') {
      try {
        current.result = JSON.parse(message.detail);
      } catch {
        current.result = null;
      }
    } else if (message.type === 'exit') {
      if (!message.problem) {
        /** @type {KeptResult} */
        const kept = { round: round(), ...current, at: Date.now() };
        try {
          sessionStorage.setItem(key('result', sessionId), JSON.stringify(kept));
        } catch {
          // full (a huge output): the result is still on the page
        }
      }
      current = { result: null, output: '' };
    }
  });
}

/**
 * Ask before leaving while ``running()``: a reload or a closed tab ends the computation for
 * every party. (Browsers show their own words; they ask only after the person used the page.)
 * @param {() => boolean} running
 */
export function warnBeforeLeaving(running) {
  window.addEventListener('beforeunload', (event) => {
    if (!running()) return;
    event.preventDefault();
    event.returnValue = ''; // older browsers need this too
  });
}
