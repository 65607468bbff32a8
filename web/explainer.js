// @ts-check
// "How does this keep my input secret?": a short explainer for someone new to secure
// multiparty computation, on the lobby and on the create page. Its words are sentences of
// mpyc_webrtc/sentences.py (explain.*, served at /api/sentences) like every other sentence
// a person reads, so a translation changes them there.

import { Sentences, sentences as loaded } from './sentences.js';

/** The explainer's paragraphs, in order. */
export const PARAGRAPHS = ['explain.mpc', 'explain.server', 'explain.fingerprint', 'explain.keys'];

/**
 * The explainer as a closed ``<details>`` (``#how-secret``): its summary is the question.
 * @param {Sentences} sentences
 * @returns {HTMLDetailsElement}
 */
export function explainer(sentences) {
  const box = document.createElement('details');
  box.className = 'explainer';
  box.id = 'how-secret';
  box.dataset.testid = 'explainer';
  const summary = document.createElement('summary');
  summary.textContent = sentences.say('explain.title');
  box.append(summary, ...PARAGRAPHS.map((key) => {
    const paragraph = document.createElement('p');
    paragraph.textContent = sentences.say(key);
    return paragraph;
  }));
  if (location.hash === '#how-secret') box.open = true; // linked to it
  return box;
}

/**
 * Put the explainer at the end of ``where`` (the page's header, under its lead), once.
 * @param {Element | null} where
 * @param {Sentences | null} [sentences] the page's table (loaded, by default)
 */
export async function addExplainer(where, sentences = null) {
  if (!where || where.querySelector('#how-secret')) return;
  where.append(explainer(sentences ?? loaded()));
}
