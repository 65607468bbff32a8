// @ts-check
// What the lobby shows of the session before anyone computes: the program, its code and
// fingerprint, the invite link and its QR code, and the named places to choose from.

import { qrcode } from '/vendor/qrcode-generator/dist/qrcode.mjs';
import { byTestId, copyText, fetchJson, showCode } from './common.js';
import { InputView } from './input-view.js';
import { describe, fail, lobby, NAME_KEY, page, renderRoster, setStatus, ui } from './page.js';
import { fingerprintOf } from './sealing.js';
import { say } from './sentences.js';
import { inputChanged } from './worker-events.js';

export function showSession() {
  const session = /** @type {Record<string, any>} */ (page.session);
  const { program } = session;
  ui.title.textContent = program.title;
  ui.summary.textContent = program.builtin ? program.summary : say('session.own_summary');
  const args = program.args.join(' ');
  const text = say(`session.${program.builtin ? 'builtin' : 'uploaded'}${args ? '_args' : ''}`,
    { title: program.title, name: program.name, ...(args ? { args } : {}) });
  ui.program.textContent = text;
  ui.fingerprint.textContent = fingerprintOf(page.link?.programHash ?? '');
  // A browser that cannot take part loads no Python, so nothing checks the code here.
  ui.fingerprintCheck.textContent = say(page.lacks.length ? 'session.from_link' : 'session.checking');
  showCode(ui.programSource, program.source);
  ui.parties.textContent = String(session.parties);
  ui.invite.hidden = false;
  // The secret stays in the fragment, which browsers never send to the server.
  ui.inviteLink.value = `${session.join_url}${page.fragment}`;
  ui.inviteQr.src = qrCode(ui.inviteLink.value);
  if (page.rosterView) page.rosterView.onFull = foldInvite;
  ui.yourName.value = localStorage.getItem(NAME_KEY) ?? '';
  page.input = new InputView(ui, program.input, inputChanged);
  renderRoster();
}

/** @type {boolean | null} whether every place was taken when the invite card was last drawn */
let wasFull = null;

/**
 * Fold the invite card to one line once every place is taken (on a phone it would stand
 * between the status and the input), and open it again if a place comes free. In between,
 * the person may open or close it as they like.
 * @param {boolean} full
 */
export function foldInvite(full) {
  if (full === wasFull) return;
  wasFull = full;
  const details = /** @type {HTMLDetailsElement} */ (byTestId('invite-details'));
  details.open = !full;
  byTestId('invite-title').textContent = say(full ? 'invite.title_full' : 'invite.title');
}

/**
 * The invite link as a QR code image (made here: the server never sees the secret).
 * @param {string} text
 */
function qrCode(text) {
  const code = qrcode(0, 'M');
  code.addData(text);
  code.make();
  return code.createDataURL(6, 2);
}

ui.copyLink.addEventListener('click', async () => {
  const copied = await copyText(ui.inviteLink.value, ui.inviteLink);
  ui.copyResult.textContent = say(copied ? 'invite.copied' : 'invite.selected');
});

/**
 * Ask "Which party are you?" with one button per named place; taken places are disabled,
 * and the server is asked every 2 seconds which are still free.
 * @param {(pid: number) => void} join
 */
export async function choosePlace(join) {
  lobby.go('choose');
  setStatus(say('status.choose_place'), 'ok');
  ui.places.hidden = false;
  const session = /** @type {Record<string, any>} */ (page.session);
  while (lobby.phase === 'choosing') {
    const taken = new Set(session.members.map((/** @type {{pid: number}} */ m) => m.pid));
    /** @type {string[]} the key each place is kept for ('' for none) */
    const pins = Array.isArray(session.pins) ? session.pins : [];
    const mine = page.identity?.did;
    const buttons = session.labels.map((/** @type {string} */ label, /** @type {number} */ pid) => {
      const button = document.createElement('button');
      button.type = 'button';
      button.dataset.testid = `place-${pid}`;
      button.textContent = label || say('place.default', { number: pid + 1 }); // people count from 1
      // A place kept for another key would refuse this browser: not offered.
      const kept = Boolean(pins[pid]) && pins[pid] !== mine;
      button.disabled = taken.has(pid) || kept;
      if (taken.has(pid)) button.title = say('places.taken');
      else if (kept) button.title = say('places.kept_other');
      else if (pins[pid]) button.textContent = say('places.kept_you', { place: button.textContent });
      button.addEventListener('click', () => {
        ui.places.hidden = true;
        join(pid);
      });
      return button;
    });
    ui.placeButtons.replaceChildren(...buttons);
    renderRoster();
    await new Promise((resolve) => { setTimeout(resolve, 2000); });
    if (lobby.phase !== 'choosing') break;
    try {
      Object.assign(session, await fetchJson(`/api/sessions/${encodeURIComponent(page.sessionId ?? '')}`));
    } catch (error) {
      if (/** @type {any} */ (error).code === 'unknown_session') fail('title.no_such_session', describe(error));
    }
    if (session.started) fail('title.session_full', say('places.all_joined'));
  }
}
