// @ts-check
// A session that closed can be made again: the same program, arguments, parties, places and
// pins, with a new link. The lobby offers it when its session closes, and so does the join
// page of a late joiner (the server remembers a closed session's settings: GET
// /api/sessions/ID answers 410 with them). The settings go to the create page through this
// browser's localStorage; the create page fills its form with them (create.js).
// Also here: the sentence that says when an idle session would close.

import { byTestId } from './common.js';
import { say } from './sentences.js';

/** Where the create page finds the settings to fill in (read once, then removed). */
export const AGAIN_KEY = 'mpyc-webrtc-again';

/**
 * @typedef {object} Settings a create request (POST /api/sessions) without its link
 * @property {number} parties
 * @property {string} program
 * @property {string[]} args
 * @property {string} [source]
 * @property {string[]} labels
 * @property {string[]} pins
 * @property {boolean} relay_only
 * @property {boolean} no_privacy
 */

/**
 * The settings of session ``sessionId`` if the server says it closed, else null.
 * @param {string} sessionId
 * @returns {Promise<Settings | null>}
 */
export async function closedSettings(sessionId) {
  try {
    const response = await fetch(`/api/sessions/${encodeURIComponent(sessionId)}`, {
      headers: { Accept: 'application/json' },
    });
    if (response.status !== 410) return null;
    return (await response.json()).settings ?? null;
  } catch {
    return null;
  }
}

/**
 * Show "Create it again with the same settings" under the page's error: it opens the create
 * page filled in with ``settings`` (``role``: the place to take, this party's own).
 * @param {Settings | null | undefined} settings
 * @param {number | null} [role]
 */
export function offerAgain(settings, role = null) {
  if (!settings || document.querySelector('[data-testid="create-again"]')) return;
  const link = document.createElement('button');
  link.type = 'button';
  link.textContent = say('again.create_again');
  link.dataset.testid = 'create-again';
  const help = document.createElement('p');
  help.className = 'help';
  help.dataset.testid = 'create-again-help';
  help.textContent = say('again.create_again_help');
  link.addEventListener('click', () => {
    localStorage.setItem(AGAIN_KEY, JSON.stringify({ settings, role }));
    location.assign('/?again');
  });
  const box = document.createElement('div');
  box.className = 'again-box';
  box.append(link, help);
  byTestId('error').after(box);
}

/**
 * The settings kept for the create page, once (they are removed as they are read).
 * @returns {{settings: Settings, role: number | null} | null}
 */
export function takeKeptSettings() {
  const text = localStorage.getItem(AGAIN_KEY);
  localStorage.removeItem(AGAIN_KEY);
  if (!text) return null;
  try {
    const kept = JSON.parse(text);
    return kept && typeof kept.settings === 'object' ? kept : null;
  } catch {
    return null;
  }
}

/**
 * When the session closes if nobody is in it, for the lobby: it never closes for idleness
 * while someone is connected.
 * @param {{idle: number | null, at: number | null} | undefined} closes
 * @returns {string}
 */
export function closesSentence(closes) {
  if (!closes) return '';
  const parts = [];
  if (closes.idle !== null) {
    const minutes = Math.round(closes.idle / 60);
    const after = closes.idle >= 120 ? say('closes.minutes', { minutes })
      : say('closes.seconds', { seconds: Math.round(closes.idle) });
    parts.push(say('closes.idle', { after }));
  }
  if (closes.at !== null) {
    const at = new Date(closes.at * 1000);
    const sameDay = at.toDateString() === new Date().toDateString();
    const time = at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    parts.push(say('closes.at', { when: sameDay ? time : `${at.toLocaleDateString()} ${time}` }));
  }
  return parts.join(' ');
}

/**
 * Show ``closesSentence`` in the lobby (under the session's facts).
 * @param {{idle: number | null, at: number | null} | undefined} closes
 */
export function showCloses(closes) {
  const text = closesSentence(closes);
  if (!text) return;
  let note = /** @type {HTMLElement | null} */ (document.querySelector('[data-testid="session-closes"]'));
  if (!note) {
    note = document.createElement('p');
    note.className = 'help';
    note.dataset.testid = 'session-closes';
    byTestId('me').querySelector('dl')?.after(note);
  }
  note.textContent = text;
}
