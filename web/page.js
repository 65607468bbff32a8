// @ts-check
// What the parts of the lobby page share: its elements, its state, where the party stands
// (lobby.js), the worker, and the few things every part does (log, say the status, stop
// for good, draw the roster, time the round). join.js runs the page; session-view.js shows
// the session and its places; worker-events.js hears the worker.

import { missingCapabilities } from './capabilities.js';
import { byTestId } from './common.js';
import { showEnded } from './ended-view.js';
import { fingerprint, publicKey } from './identity.js';
import { Lobby } from './lobby.js';
import { RosterView } from './roster-view.js';
import { ResultCard, RoundProgress, sizeText } from './round-view.js';
import { say, sentencesAnyway } from './sentences.js';

/** @typedef {import('./input-view.js').InputView} InputView */
/** @typedef {import('./links.js').PeerLink} PeerLink */
/** @typedef {import('./sentences.js').Sentences} Sentences */
/** @typedef {import('./signaling.js').PageSignaling} PageSignaling */

/** The page's elements by their data-testid, named in camelCase. */
export const ui = /** @type {any} */ (Object.fromEntries([
  'title', 'summary', 'status', 'progress-box', 'progress', 'progress-text', 'activity', 'error',
  'invite', 'invite-link', 'copy-link', 'copy-result', 'invite-qr', 'places', 'place-buttons',
  'me', 'pid', 'session-id', 'parties', 'input-form', 'your-name', 'input-area', 'input-label',
  'party-input', 'input-choices', 'input-help', 'ready', 'unready', 'result-card', 'result',
  'output', 'output-box', 'elapsed', 'run-again', 'again-help', 'roster-summary', 'roster', 'pairs-box',
  'pairs', 'relay-note', 'program', 'fingerprint', 'fingerprint-check', 'program-source', 'log',
  'privacy', 'no-privacy-box', 'accept-no-privacy', 'my-identity', 'my-identity-text',
  'copy-identity', 'copy-identity-result', 'chat', 'chat-log', 'chat-form', 'chat-input',
  'chat-send', 'chat-refused',
].map((id) => [id.replace(/-(\w)/g, (_, c) => c.toUpperCase()), byTestId(id)])));

export const NAME_KEY = 'mpyc-webrtc-name';
export const lobby = new Lobby();
const params = new URLSearchParams(location.search);

export const page = {
  openedAt: performance.now(),
  /** @type {string | null} */
  sessionId: null,
  wantedRole: params.has('role') ? Number(params.get('role')) : null,
  /** @type {number | null} the place asked for in the last join */
  askedRole: null,
  /** @type {Record<string, any> | null} GET /api/sessions/ID */
  session: null,
  /** @type {Sentences | null} what to say (GET /api/sentences) */
  sentences: null,
  /** @type {{secret: import('./sealing.js').Bytes, programHash: string} | null} the link's fragment */
  link: null,
  /** the link's fragment as read (#k=...&p=...), for the invite link */
  fragment: '',
  /** @type {string | null} the input this party confirmed with "I'm ready" */
  confirmedInput: null,
  /** whether the worker was told to run (round 1) */
  running: false,
  /** @type {{full: boolean, sentence: string} | null} how private the inputs are (Python says) */
  privacy: null,
  /** @type {PageSignaling | null} */
  signaling: null,
  /** @type {InputView | null} */
  input: null,
  /** @type {RosterView | null} */
  rosterView: null,
  /** @type {import('./chat-view.js').ChatView | null} */
  chatView: null,
  workerReady: false,
  /** @type {import('./relay.js').ChannelRelay | null} the data channels, relayed to the worker */
  relay: null,
  /** @type {string | null} why the input cannot be used, as Python said */
  inputProblem: 'not checked yet',
  inputCheck: 0,
  /** @type {Map<number, PeerLink>} */
  links: new Map(),
  /** the connection to the server was lost in the lobby and is being opened again */
  reconnecting: false,
  /** this tab is back in its place after a reload after the start (resume.js): it shows
   * its last result and who is still there until it runs again (new links, ``fresh``) */
  returned: false,
  /** @type {Set<number>} the parties seen as left after the start */
  departed: new Set(),
  roundStarted: 0,
  /** @type {ReturnType<typeof setInterval> | undefined} */
  timer: undefined,
  /** @type {{messages: number, bytes: number} | null} */
  traffic: null,
  /** how far a running round has got (round-view.js) */
  progress: new RoundProgress(),
  /** the result card's Copy button and history (round-view.js) */
  resultCard: new ResultCard(),
  /**
   * What this browser lacks to take part (capabilities.js): if anything, it only holds its
   * place and tells the others why, and no Python is loaded.
   * @type {import('./capabilities.js').Capability[]}
   */
  lacks: missingCapabilities(),
  /** @type {import('./identity.js').Identity | null} this browser's key pair */
  identity: null,
  /** @type {Map<number, import('./roster-view.js').VerifiedIdentity>} the others' verified keys */
  identities: new Map(),
  /** @type {Map<string, string>} fingerprints of the keys shown, by did */
  fingerprints: new Map(),
};

/**
 * Python's worker; in a browser that cannot take part, a stand-in that is never told to
 * load anything (and may not even have workers to make one).
 * @type {Worker}
 */
export const worker = page.lacks.length ? /** @type {Worker} */ (/** @type {unknown} */ ({
  postMessage() {}, terminate() {}, onmessage: null, onerror: null,
})) : new Worker('/web/worker.js', { type: 'module' });

// -- small helpers ------------------------------------------------------------------------

/** What the signaling client knows: the welcome and the latest roster. */
export function client() {
  return page.signaling?.client ?? null;
}

/** @param {string} text */
export function log(text) {
  const welcome = client()?.welcome;
  const who = welcome ? `[session ${page.sessionId} party ${welcome.pid}]`
    : `[session ${page.sessionId ?? '-'}]`;
  const line = `${new Date().toTimeString().slice(0, 8)} ${who} page: ${text}`;
  console.log(line);
  appendLog(line);
}

/** @param {string} line */
export function appendLog(line) {
  ui.log.textContent += `${line}\n`;
}

/** @param {string} text @param {string} [tone] */
export function setStatus(text, tone = 'busy') {
  ui.status.textContent = text;
  ui.status.dataset.tone = tone;
}

/** @param {string} text */
export function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = !text;
}

/**
 * Stop for good with a message; the page can only be reloaded after this.
 * @param {string} status the key of the status (title.*)
 * @param {string} message
 */
export function fail(status, message) {
  const wasRunning = lobby.running;
  if (!lobby.go('fail')) return;
  const words = sentencesAnyway(); // this may come before the table does
  setStatus(words.say(status), 'error');
  showError(message);
  log(`stopped: ${message}`);
  for (const control of [ui.partyInput, ui.yourName, ui.ready, ui.unready, ui.runAgain,
    ui.acceptNoPrivacy]) {
    control.disabled = true;
  }
  for (const radio of ui.inputChoices.querySelectorAll('input')) radio.disabled = true;
  ui.unready.hidden = true;
  ui.runAgain.hidden = true;
  ui.places.hidden = true;
  ui.progressBox.hidden = true;
  stopTimer(wasRunning ? 'round.stopped_after' : null);
  renderRoster();
  showEnded({
    status, sentences: words, joined: Boolean(client()?.welcome), described: Boolean(page.session), started: !ui.resultCard.hidden,
  });
}

/** The facts the roster view shows. @returns {import('./roster-view.js').RosterFacts} */
export function rosterFacts() {
  const welcome = client()?.welcome;
  return {
    me: welcome?.pid ?? null,
    labels: welcome?.labels ?? page.session?.labels ?? [],
    roster: /** @type {import('./roster-view.js').RosterFacts['roster']} */ (client()?.roster ?? null),
    parties: welcome?.parties ?? page.session?.parties ?? 0,
    joinedSoFar: page.session?.joined ?? 0,
    myState: page.reconnecting && lobby.phase === 'lobby' ? 'reconnecting'
      : page.lacks.length && lobby.phase === 'lobby' ? 'unsupported' : lobby.myState,
    lacks: page.lacks,
    identities: page.identities,
    fingerprintOf,
  };
}

/**
 * The fingerprint of ``did`` if known; else null, and it is worked out (the roster is
 * drawn again then). A did that is not one gets none.
 * @param {string} did
 * @returns {string | null}
 */
export function fingerprintOf(did) {
  const known = page.fingerprints.get(did);
  if (known !== undefined) return known || null;
  page.fingerprints.set(did, '');
  let key;
  try {
    key = publicKey(did);
  } catch {
    return null;
  }
  fingerprint(key).then((print) => {
    page.fingerprints.set(did, print);
    renderRoster();
  }).catch(() => {});
  return null;
}

/** @param {number} pid @param {{you?: boolean}} [options] */
export function partyName(pid, options) {
  return RosterView.partyName(rosterFacts(), pid, options);
}

export function renderRoster() {
  page.rosterView?.render(rosterFacts());
}

// -- the round's clock --------------------------------------------------------------------

export function startTimer() {
  page.roundStarted = performance.now();
  page.progress.start();
  clearInterval(page.timer);
  page.timer = setInterval(showActivity, 500);
  showActivity();
}

/** @param {string | null} prefix the key of the sentence (round.finished_in, round.stopped_after) */
export function stopTimer(prefix) {
  clearInterval(page.timer);
  page.timer = undefined;
  if (prefix && page.roundStarted) {
    const seconds = (performance.now() - page.roundStarted) / 1000;
    ui.elapsed.textContent = say(prefix, { seconds: seconds.toFixed(1), traffic: trafficText() });
  }
  byTestId('round-progress-box').hidden = true;
}

export function trafficText() {
  const t = page.traffic;
  if (!t) return '';
  return say('round.traffic', { messages: t.messages.toLocaleString('en'), size: sizeText(t.bytes) });
}

export function showActivity() {
  if (!lobby.running) return;
  const now = performance.now();
  byTestId('round-progress-box').hidden = false;
  page.progress.show({ bar: /** @type {HTMLProgressElement} */ (byTestId('round-progress')), text: ui.activity }, {
    computing: lobby.phase === 'computing', seconds: (now - page.roundStarted) / 1000, traffic: page.traffic, now,
  });
}

/** Close the connections and the signaling socket: this party is finished for good. */
export function closeEverything() {
  for (const link of page.links.values()) link.close();
  page.signaling?.close(200); // let the last messages go out
}

/** @param {unknown} error */
export function describe(error) {
  return error instanceof Error ? error.message : String(error);
}

/** The input's controls and buttons, as where the party stands allows. */
export function updateButtons() {
  const unsupported = page.lacks.length > 0; // this browser only holds its place
  const editable = page.workerReady && lobby.editable && !unsupported;
  // Nobody commits an input before knowing how private it stays (Python says so with the
  // program's fingerprint), nor, with less than full privacy, without saying they know.
  const unaccepted = page.privacy === null || (!page.privacy.full && !ui.acceptNoPrivacy.checked);
  ui.ready.disabled = !editable || page.inputProblem === 'not checked yet' || unaccepted;
  ui.acceptNoPrivacy.disabled = !editable;
  const loading = !page.workerReady && !unsupported && lobby.in('lobby', 'joining');
  page.input?.setEditable(editable, { typingAllowed: loading }); // typing may start meanwhile
  ui.yourName.disabled = !editable;
  ui.ready.textContent = say(loading ? 'button.loading'
    : lobby.phase === 'again' || page.returned ? 'button.ready_again' : 'button.ready');
  ui.unready.hidden = !(lobby.ready && lobby.phase === 'lobby');
  // While a round runs and after it, the result is what matters; "Run again" brings it back.
  ui.ready.hidden = lobby.in('connecting', 'computing', 'done');
  if (page.returned) ui.unready.hidden = true; // a round may start at once: no taking it back
}
