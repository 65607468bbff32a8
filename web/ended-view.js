// @ts-check
// What the lobby shows once it stopped for good ("Failed", "Session full", "Incomplete
// link", ...): only what still applies, and the next step. page.js's fail() calls it; it
// takes the facts it needs, so it imports nothing of the page's state.

import { byTestId } from './common.js';
import { bringIntoView } from './round-view.js';
/** @typedef {import('./sentences.js').Sentences} Sentences */

/**
 * @typedef {object} EndedFacts
 * @property {string} status the key of the status the page stopped with (title.*)
 * @property {Sentences} sentences what to say
 * @property {boolean} joined whether this page held a place (it was welcomed)
 * @property {boolean} described whether the session's description (its program) was read
 * @property {boolean} started whether a round had started here
 */

/** Statuses after which this link leads nowhere: only a new session computes again. */
const LINK_USED_UP = new Set(['title.session_full', 'title.no_such_session', 'title.session_closed',
  'title.no_session', 'title.incomplete_link', 'title.server_shutting_down']);

/**
 * Hide what no longer applies and offer the next step.
 * @param {EndedFacts} facts
 */
export function showEnded({ status, sentences, joined, described, started }) {
  const hide = (/** @type {string} */ id) => {
    const element = byTestId(id);
    if (element) element.hidden = true;
  };
  // Nobody is to be invited into a session that ended for this page, nor choose a place.
  hide('invite');
  hide('places');
  if (!joined) {
    // Not a party: the places, the input and the chat were never this page's to show.
    for (const id of ['me', 'parties-card', 'chat']) hide(id);
  } else {
    hide('input-form'); // nothing more can be confirmed
  }
  if (!described) hide('program-card'); // no program was read: no fingerprint to compare
  const check = byTestId('fingerprint-check'); // a check that will not happen any more
  if (check && check.textContent === sentences.table['session.checking']) check.textContent = sentences.say('session.from_link');
  // A round that stopped before its result: say so, instead of a promise of a result.
  const result = byTestId('result');
  if (started && result.hidden) {
    const output = byTestId('output');
    if (!output.textContent) hide('output-box');
    const none = byTestId('no-result');
    none.textContent = sentences.say('ended.no_result');
    none.hidden = false;
  }
  const next = byTestId('next-step');
  const help = byTestId('next-step-help');
  if (LINK_USED_UP.has(status)) {
    help.textContent = sentences.say(joined ? 'ended.session_over' : 'ended.link_used_up');
  } else if (started) {
    help.textContent = sentences.say('ended.new_session');
  } else {
    help.textContent = sentences.say('ended.retry');
  }
  next.hidden = false;
  const card = byTestId('status').closest('section');
  if (card instanceof HTMLElement) bringIntoView(card, byTestId('status'));
}
