// @ts-check
// The lobby and run page of one party: join a session, confirm an input, and compute.
//
// This main thread does what only it can: signaling over the WebSocket (signaling.js, with
// the rules of client.js) and one RTCPeerConnection per other party (links.js). Each
// connection's data channel goes to the worker (worker.js) the moment it is created; Python
// there (py_worker/) runs the program. Where the party stands is lobby.js's table; what the
// page shows of it: roster-view.js, input-view.js and the functions below.

import { qrcode } from '/vendor/qrcode-generator/dist/qrcode.mjs';
import { byTestId, copyText, fetchJson, plural, showCode } from './common.js';
import { InputView } from './input-view.js';
import { PeerLink } from './links.js';
import { Lobby } from './lobby.js';
import { Protocol } from './protocol.js';
import { renderResult } from './result.js';
import { RosterView } from './roster-view.js';
import { fingerprintOf, joinToken, parseFragment } from './sealing.js';
import { Sentences } from './sentences.js';
import { PageSignaling } from './signaling.js';

/** @typedef {import('./client.js').ClientEvent} ClientEvent */

/** The page's elements by their data-testid, named in camelCase. */
const ui = /** @type {any} */ (Object.fromEntries([
  'title', 'summary', 'status', 'progress-box', 'progress', 'progress-text', 'activity', 'error',
  'invite', 'invite-link', 'copy-link', 'copy-result', 'invite-qr', 'places', 'place-buttons',
  'me', 'pid', 'session-id', 'parties', 'input-form', 'your-name', 'input-area', 'input-label',
  'party-input', 'input-choices', 'input-help', 'ready', 'unready', 'result-card', 'result',
  'output', 'output-box', 'elapsed', 'run-again', 'again-help', 'roster-summary', 'roster', 'pairs-box',
  'pairs', 'relay-note', 'program', 'fingerprint', 'fingerprint-check', 'program-source', 'log',
].map((id) => [id.replace(/-(\w)/g, (_, c) => c.toUpperCase()), byTestId(id)])));

const NAME_KEY = 'mpyc-webrtc-name';
const params = new URLSearchParams(location.search);
const lobby = new Lobby();

const page = {
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
  /** @type {PageSignaling | null} */
  signaling: null,
  /** @type {InputView | null} */
  input: null,
  /** @type {RosterView | null} */
  rosterView: null,
  workerReady: false,
  jspi: true,
  /** @type {string | null} why the input cannot be used, as Python said */
  inputProblem: 'not checked yet',
  inputCheck: 0,
  /** @type {Map<number, PeerLink>} */
  links: new Map(),
  roundStarted: 0,
  /** @type {ReturnType<typeof setInterval> | undefined} */
  timer: undefined,
  /** @type {{messages: number, bytes: number} | null} */
  traffic: null,
};

const worker = new Worker('/web/worker.js', { type: 'module' });

// -- small helpers ------------------------------------------------------------------------

/** What the signaling client knows: the welcome and the latest roster. */
function client() {
  return page.signaling?.client ?? null;
}

/** @param {string} text */
function log(text) {
  const welcome = client()?.welcome;
  const who = welcome ? `[session ${page.sessionId} party ${welcome.pid}]`
    : `[session ${page.sessionId ?? '-'}]`;
  const line = `${new Date().toTimeString().slice(0, 8)} ${who} page: ${text}`;
  console.log(line);
  appendLog(line);
}

/** @param {string} line */
function appendLog(line) {
  ui.log.textContent += `${line}\n`;
}

/** @param {string} text @param {string} [tone] */
function setStatus(text, tone = 'busy') {
  ui.status.textContent = text;
  ui.status.dataset.tone = tone;
}

/** @param {string} text */
function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = !text;
}

/**
 * Stop for good with a message; the page can only be reloaded after this.
 * @param {string} status
 * @param {string} message
 */
function fail(status, message) {
  const wasRunning = lobby.running;
  if (!lobby.go('fail')) return;
  setStatus(status, 'error');
  showError(message);
  log(`stopped: ${message}`);
  for (const control of [ui.partyInput, ui.yourName, ui.ready, ui.unready, ui.runAgain]) {
    control.disabled = true;
  }
  for (const radio of ui.inputChoices.querySelectorAll('input')) radio.disabled = true;
  ui.unready.hidden = true;
  ui.runAgain.hidden = true;
  ui.places.hidden = true;
  ui.progressBox.hidden = true;
  stopTimer(wasRunning ? 'Stopped after' : null);
  renderRoster();
}

/** The facts the roster view shows. @returns {import('./roster-view.js').RosterFacts} */
function rosterFacts() {
  const welcome = client()?.welcome;
  return {
    me: welcome?.pid ?? null,
    labels: welcome?.labels ?? page.session?.labels ?? [],
    roster: /** @type {import('./roster-view.js').RosterFacts['roster']} */ (client()?.roster ?? null),
    parties: welcome?.parties ?? page.session?.parties ?? 0,
    joinedSoFar: page.session?.joined ?? 0,
    myState: lobby.myState,
  };
}

/** @param {number} pid @param {{you?: boolean}} [options] */
function partyName(pid, options) {
  return RosterView.partyName(rosterFacts(), pid, options);
}

function renderRoster() {
  page.rosterView?.render(rosterFacts());
}

// -- start-up: what is this session, and load Python ------------------------------------

async function init() {
  const match = location.pathname.match(/\/join\/([^/]+)\/?$/);
  if (!match) {
    worker.terminate();
    fail('No session', 'This page needs a session link, which looks like http://HOST/join/SESSION_ID. Ask the person who created the session for it.');
    return;
  }
  const sessionId = page.sessionId = decodeURIComponent(match[1]);
  ui.sessionId.textContent = sessionId;
  let sentences;
  try {
    sentences = page.sentences = new Sentences(await fetchJson('/api/sentences'));
  } catch (error) {
    worker.terminate();
    fail('Cannot load', describe(error));
    return;
  }
  let link;
  try {
    link = page.link = parseFragment(location.hash, sentences);
  } catch (error) {
    worker.terminate();
    fail('Incomplete link', describe(error));
    return;
  }
  let session, assets, schema;
  try {
    [session, assets, schema] = await Promise.all([
      fetchJson(`/api/sessions/${encodeURIComponent(sessionId)}`),
      fetchJson('/api/assets'),
      fetchJson('/api/protocol'),
    ]);
  } catch (error) {
    worker.terminate();
    fail(/** @type {any} */ (error).code === 'unknown_session' ? 'No such session' : 'Cannot load', describe(error));
    return;
  }
  page.session = session;
  if (!globalThis.crypto?.subtle) {
    worker.terminate();
    fail('Cannot run here', 'This page must be opened over https:// (or on this computer, as http://127.0.0.1): browsers allow the encryption it needs only there.');
    return;
  }
  const { token } = await joinToken(link.secret, schema.sealing);
  const signaling = page.signaling = new PageSignaling({
    session: sessionId, link, token, protocol: new Protocol(schema), sentences, handlers: fromClient, log,
  });
  page.rosterView = new RosterView(ui, sentences);
  showSession();
  signaling.described(session.program.hash); // another program than the link's: stop here
  if (lobby.phase === 'failed') {
    worker.terminate();
    return;
  }
  if (assets.missing) {
    worker.terminate();
    fail('Cannot run here', assets.missing);
    return;
  }
  if (session.started || session.joined >= session.parties) {
    worker.terminate();
    fail('Session full', `This session already has all ${session.parties} parties, so nobody else can join it. Ask the person who created it for a new link.`);
    return;
  }
  worker.postMessage({ type: 'load', assets });
  const named = session.labels.some(Boolean);
  if (named && (page.wantedRole === null || !Number.isInteger(page.wantedRole))) {
    choosePlace();
  } else {
    join(page.wantedRole);
  }
}

function showSession() {
  const session = /** @type {Record<string, any>} */ (page.session);
  const { program } = session;
  ui.title.textContent = program.title;
  ui.summary.textContent = program.builtin ? program.summary
    : 'A program written by the person who created this session. Read it below before you take part.';
  let text = program.builtin ? `${program.title} (built-in program "${program.name}")`
    : `${program.name}, an MPyC program uploaded by the session's creator`;
  if (program.args.length) text += `, with arguments ${program.args.join(' ')}`;
  ui.program.textContent = text;
  ui.fingerprint.textContent = fingerprintOf(page.link?.programHash ?? '');
  ui.fingerprintCheck.textContent = '(from the link; checking the code…)';
  showCode(ui.programSource, program.source);
  ui.parties.textContent = String(session.parties);
  ui.invite.hidden = false;
  // The secret stays in the fragment, which browsers never send to the server.
  ui.inviteLink.value = `${session.join_url}${location.hash}`;
  ui.inviteQr.src = qrCode(ui.inviteLink.value);
  ui.yourName.value = localStorage.getItem(NAME_KEY) ?? '';
  page.input = new InputView(ui, program.input, inputChanged);
  renderRoster();
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
  ui.copyResult.textContent = copied ? 'Copied. Paste it into a message to the others.'
    : 'Selected: press Ctrl+C (or ⌘C) to copy it.';
});

// -- choosing a named place, and joining ----------------------------------------------------

async function choosePlace() {
  lobby.go('choose');
  setStatus('Choose your place', 'ok');
  ui.places.hidden = false;
  const session = /** @type {Record<string, any>} */ (page.session);
  while (lobby.phase === 'choosing') {
    const taken = new Set(session.members.map((/** @type {{pid: number}} */ m) => m.pid));
    const buttons = session.labels.map((/** @type {string} */ label, /** @type {number} */ pid) => {
      const button = document.createElement('button');
      button.type = 'button';
      button.dataset.testid = `place-${pid}`;
      button.textContent = label || `Party ${pid}`;
      button.disabled = taken.has(pid);
      if (taken.has(pid)) button.title = 'Someone already took this place';
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
      if (/** @type {any} */ (error).code === 'unknown_session') fail('No such session', describe(error));
    }
    if (session.started) fail('Session full', 'All parties joined this session before you, so you cannot join it any more. Ask the person who created it for a new link.');
  }
}

/** @param {number | null} role */
function join(role) {
  if (!lobby.go('join')) return;
  setStatus('Joining the session…');
  page.askedRole = Number.isInteger(role) ? role : null;
  page.signaling?.join(ui.yourName.value.trim(), page.askedRole);
}

// -- what the signaling client says (client.js events) ---------------------------------------

/** @type {Record<string, (event: ClientEvent) => void>} */
const fromClient = {
  welcome({ welcome }) {
    if (!lobby.go('welcome')) return;
    ui.me.hidden = false;
    ui.pid.textContent = partyName(welcome.pid, { you: false });
    ui.relayNote.hidden = !welcome.relay_only;
    log(`joined as party ${welcome.pid} of ${welcome.parties}`);
    history.replaceState(null, '', `${location.pathname}?role=${welcome.pid}${location.hash}`);
    updateButtons();
    renderRoster();
  },
  join_failed({ code, message }) {
    log(`the server reports ${code}: ${message}`);
    if (code === 'role_taken' && lobby.go('placeTaken')) {
      showError(message);
      page.signaling?.close();
      page.session?.members.push({ pid: page.askedRole });
      choosePlace();
      return;
    }
    const status = code === 'session_full' ? 'Session full'
      : code === 'unknown_session' ? 'No such session' : 'Could not join';
    fail(status, message);
    page.signaling?.close();
  },
  check_program() {
    checkFingerprint();
  },
  program_ok() {
    ui.fingerprintCheck.textContent = '✓ the code your browser will run matches the link';
    ui.fingerprintCheck.classList.remove('problem');
  },
  roster({ roster }) {
    const me = client()?.welcome?.pid;
    if (me !== undefined) ui.pid.textContent = partyName(me, { you: false });
    // So that an error about a party can say who that is.
    worker.postMessage({
      type: 'names',
      members: roster.members.map((/** @type {Record<string, any>} */ { pid, name, label }) => ({ pid, name, label })),
    });
    if (lobby.in('done', 'again')) {
      const gone = roster.members.filter((/** @type {{state: string}} */ m) => m.state === 'left')
        .map((/** @type {{pid: number}} */ m) => m.pid);
      if (gone.length) {
        cannotRunAgain(`${partyName(gone[0], { you: false })} has left, so this session cannot run again. Start a new session to compute again.`);
        for (const pid of gone) page.links.get(pid)?.close();
      }
    }
    refreshLobbyStatus();
    renderRoster();
  },
  start({ round }) {
    if (lobby.go('start')) beginRound(round);
  },
  connect({ peer, offer }) {
    linkTo(peer, offer);
  },
  remote({ peer, kind, sdp }) {
    page.links.get(peer)?.remote(kind, sdp);
  },
  candidate({ peer, candidate, sdpMid, sdpMLineIndex }) {
    page.links.get(peer)?.candidate({ candidate, sdpMid, sdpMLineIndex });
  },
  unexpected({ peer, kind, expected }) {
    log(`party ${peer} sent an ${kind} while ${expected ? `an ${expected}` : 'nothing more'} was due; ignored`);
  },
  peer_left({ peer }) {
    if (lobby.running) worker.postMessage({ type: 'peer-left', peer });
  },
  server_error({ code, message }) {
    log(`the server reports ${code}: ${message}`);
    if (code === 'session_expired') {
      worker.postMessage({ type: 'signaling-ended', reason: message });
      if (lobby.in('lobby', 'joining')) fail('Session closed', message);
    } else if (code === 'party_left') {
      lobby.ready = false;
      cannotRunAgain(message);
    } else if (!lobby.in('done', 'failed')) {
      showError(message);
    }
  },
  tampered({ message }) {
    // Someone interfered: stop at once, connect to nobody, and say so.
    worker.postMessage({ type: 'signaling-ended', reason: message });
    for (const pid of page.links.keys()) {
      worker.postMessage({ type: 'peer-failed', peer: pid, reason: message });
    }
    fail('Tampering detected', message);
    closeEverything();
  },
  unreadable({ message }) {
    fail('Failed', `A signaling message could not be read: ${message}.`);
  },
  closed() {
    if (lobby.phase === 'joining') {
      fail('Could not join', 'The connection to the session server closed before you could join. Reload the page to try again.');
    } else if (lobby.phase === 'lobby') {
      worker.postMessage({ type: 'signaling-ended', reason: 'The connection to the session server was lost.' });
      fail('Disconnected', 'The connection to the session server was lost before the computation started. Reload the page to join again.');
    } else if (lobby.running) {
      log('the connection to the session server closed; the computation goes on directly between the parties');
    } else if (lobby.in('done', 'again')) {
      cannotRunAgain('The connection to the session server closed, so this session cannot run again. Start a new session to compute again.');
    }
  },
};

/** @param {string} text */
function cannotRunAgain(text) {
  ui.runAgain.disabled = true;
  ui.ready.disabled = true;
  ui.againHelp.hidden = false;
  ui.againHelp.textContent = text;
}

function refreshLobbyStatus() {
  const roster = client()?.roster;
  if (!roster || !lobby.in('lobby', 'again')) return;
  const me = client()?.welcome?.pid;
  const present = roster.members.filter((/** @type {{state: string}} */ m) => m.state !== 'left');
  const missing = roster.parties - present.length;
  const waiting = present.filter((/** @type {{ready: boolean, pid: number}} */ m) => !m.ready && m.pid !== me).length;
  if (missing > 0 && lobby.phase === 'lobby') {
    setStatus(`Waiting for ${plural(missing, 'more party', 'more parties')} to join`);
  } else if (!lobby.ready) {
    setStatus(lobby.phase === 'again' ? 'Run again?' : 'Everyone is here: enter your input and press "I\'m ready"', 'ok');
  } else if (waiting > 0) {
    setStatus(`Waiting for ${plural(waiting, 'party', 'parties')} to press "${lobby.phase === 'again' ? 'I\'m ready to run again' : 'I\'m ready'}"`);
  } else {
    setStatus('Everyone is ready: starting');
  }
}

// -- the worker ---------------------------------------------------------------------------

worker.onmessage = (event) => {
  const message = event.data;
  const handler = fromWorker[message.type];
  if (handler) handler(message);
  else log(`unexpected message from the worker: ${message.type}`);
};

worker.onerror = (event) => {
  event.preventDefault();
  fail('Failed', `The Python worker stopped: ${event.message || 'it could not be started in this browser'}.`);
};

/** @type {Record<string, (message: any) => void>} */
const fromWorker = {
  progress({ percent, text }) {
    if (page.workerReady) return;
    ui.progress.value = percent;
    ui.progressText.textContent = `Loading Python: ${text.toLowerCase()}… ${percent}%`;
  },
  ready({ jspi, seconds }) {
    page.workerReady = true;
    page.jspi = jspi;
    const ms = performance.now() - page.openedAt;
    log(`Python and MPyC ready ${(ms / 1000).toFixed(2)} s after the page opened (worker: ${seconds.toFixed(2)} s)`);
    /** @type {any} */ (window).mpycTimings = { readyMs: ms };
    ui.progress.value = 100;
    ui.progressBox.hidden = true;
    checkFingerprint();
    if (!jspi && page.session?.program.builtin) {
      fail('Cannot run here', 'This browser cannot run this session\'s program: it lacks JavaScript Promise Integration (JSPI), which the program needs. Please open the link in a recent Chrome or Edge, or take part with the mpyc-webrtc-peer command.');
      return;
    }
    checkInput();
    updateButtons();
  },
  fingerprint({ hash }) {
    // Python hashed the program this party is about to run; the link says what the
    // creator chose. Nothing connects before they agree (the client sees to that).
    if (hash !== page.link?.programHash) {
      ui.fingerprintCheck.textContent = `✗ the code here has fingerprint ${fingerprintOf(hash)}`;
      ui.fingerprintCheck.classList.add('problem');
    }
    page.signaling?.programChecked(hash);
  },
  'input-checked'({ id, problem }) {
    if (id !== page.inputCheck) return; // an answer about older text
    page.inputProblem = problem;
    page.input?.checked(problem);
    updateButtons();
  },
  stdout({ text }) {
    ui.output.textContent += `${text}\n`;
  },
  log({ text }) {
    appendLog(text);
  },
  report({ kind, detail }) {
    if (kind === 'connected') {
      log(`data channels to all parties are open (${detail} s after the start)`);
      if (lobby.go('connected')) setStatus('Computing');
      page.signaling?.status('connected');
      renderRoster();
    } else if (kind === 'channel') {
      page.links.get(Number(detail))?.opened();
    } else if (kind === 'traffic') {
      page.traffic = JSON.parse(detail);
      showActivity();
    } else if (kind === 'result') {
      renderResult(ui.result, JSON.parse(detail));
      ui.outputBox.open = false; // the same, as plain text
    }
  },
  exit({ problem }) {
    if (problem) {
      page.signaling?.status('failed', problem);
      fail('Failed', problem);
      closeEverything();
    } else if (lobby.go('finished')) {
      setStatus('Done', 'ok');
      page.signaling?.status('done');
      stopTimer('Finished in');
      ui.runAgain.hidden = false;
      ui.runAgain.disabled = false;
      updateButtons();
      renderRoster();
    }
  },
  failed({ during, message }) {
    if (during === 'check-input' || during === 'fingerprint') {
      log(message);
      return;
    }
    fail(during === 'load' ? 'Cannot load Python' : 'Failed', message);
    closeEverything();
  },
};

/** Have Python fingerprint the program this party will run (the welcome's). */
function checkFingerprint() {
  const welcome = client()?.welcome;
  if (!page.workerReady || !welcome) return;
  worker.postMessage({ type: 'fingerprint', program: welcome.program });
}

// -- the input ----------------------------------------------------------------------------

function checkInput() {
  if (!page.workerReady || !page.input) return;
  page.inputCheck += 1;
  worker.postMessage({
    type: 'check-input', id: page.inputCheck, program: page.session?.program, text: page.input.value,
  });
}

function inputChanged() {
  page.inputProblem = 'not checked yet';
  updateButtons();
  checkInput();
}

function updateButtons() {
  const editable = page.workerReady && lobby.editable;
  ui.ready.disabled = !editable || page.inputProblem === 'not checked yet';
  const loading = !page.workerReady && lobby.in('lobby', 'joining');
  page.input?.setEditable(editable, { typingAllowed: loading }); // typing may start meanwhile
  ui.yourName.disabled = !editable;
  ui.ready.textContent = loading ? 'Loading Python…'
    : lobby.phase === 'again' ? 'I\'m ready to run again' : 'I\'m ready';
  ui.unready.hidden = !(lobby.ready && lobby.phase === 'lobby');
  // While a round runs and after it, the result is what matters; "Run again" brings it back.
  ui.ready.hidden = lobby.in('connecting', 'computing', 'done');
}

ui.inputForm.addEventListener('submit', (/** @type {Event} */ event) => {
  event.preventDefault();
  if (ui.ready.disabled) return;
  if (page.inputProblem) {
    page.input?.refuse(page.inputProblem); // the program's own sentence; nothing is sent
    return;
  }
  const name = ui.yourName.value.trim();
  localStorage.setItem(NAME_KEY, name);
  if (!page.signaling?.setReady(true, name || null)) return;
  lobby.ready = true;
  updateButtons();
  renderRoster();
});

ui.unready.addEventListener('click', () => {
  if (lobby.phase !== 'lobby' || !page.signaling?.setReady(false)) return;
  lobby.ready = false;
  updateButtons();
  renderRoster();
});

ui.runAgain.addEventListener('click', () => {
  if (!lobby.go('runAgain')) return;
  ui.runAgain.hidden = true;
  ui.againHelp.hidden = false;
  ui.againHelp.textContent = 'Change your input if you like and press "I\'m ready to run again". It runs again, over the same connections, once every party agrees.';
  setStatus('Run again?', 'ok');
  updateButtons();
  ui.me.scrollIntoView({ behavior: 'smooth', block: 'center' });
});

// -- a round: connect (first round only) and run the program --------------------------------

/** @param {number} round */
function beginRound(round) {
  page.traffic = null;
  updateButtons();
  ui.againHelp.hidden = true;
  ui.runAgain.hidden = true;
  ui.resultCard.hidden = false;
  ui.result.hidden = true;
  ui.output.textContent = '';
  ui.outputBox.open = true;
  showError('');
  setStatus(round === 1 ? 'Connecting to the other parties' : 'Running again');
  startTimer();
  const input = page.input?.value || null;
  const welcome = client()?.welcome;
  if (round === 1 && welcome) {
    worker.postMessage({
      type: 'run',
      config: {
        session: welcome.session,
        pid: welcome.pid,
        parties: welcome.parties,
        program: welcome.program,
        input,
      },
    });
    worker.postMessage({ type: 'start' });
    // The links come with the client's `connect` events, once the program is checked.
  } else {
    worker.postMessage({ type: 'again', input });
  }
  renderRoster();
}

function startTimer() {
  page.roundStarted = performance.now();
  clearInterval(page.timer);
  page.timer = setInterval(showActivity, 500);
  showActivity();
}

/** @param {string | null} prefix */
function stopTimer(prefix) {
  clearInterval(page.timer);
  page.timer = undefined;
  if (prefix && page.roundStarted) {
    const seconds = (performance.now() - page.roundStarted) / 1000;
    ui.elapsed.textContent = `${prefix} ${seconds.toFixed(1)} s${trafficText()}.`;
  }
  ui.activity.hidden = true;
}

function trafficText() {
  const t = page.traffic;
  if (!t) return '';
  const kb = (t.bytes / 1024).toFixed(t.bytes < 10240 ? 1 : 0);
  return `, ${t.messages.toLocaleString('en')} messages (${kb} KiB) exchanged`;
}

function showActivity() {
  if (!lobby.running) return;
  const seconds = ((performance.now() - page.roundStarted) / 1000).toFixed(1);
  ui.activity.hidden = false;
  ui.activity.textContent = `${lobby.phase === 'computing' ? 'Computing' : 'Connecting'}: ${seconds} s${trafficText()}`;
}

// -- peer connections ---------------------------------------------------------------------

/**
 * The connection to ``peer``, made when the client says so (at the start).
 * @param {number} peer
 * @param {boolean} offer
 */
function linkTo(peer, offer) {
  const welcome = client()?.welcome;
  const signaling = page.signaling;
  if (!welcome || !signaling || lobby.phase === 'failed' || page.links.has(peer)) return;
  const link = new PeerLink(peer, offer, welcome.ice_servers, {
    description: (pid, kind, sdp) => signaling.localDescription(pid, kind, sdp),
    candidate: (pid, { candidate, sdpMid, sdpMLineIndex }) => signaling.localCandidate(pid, { candidate, sdpMid, sdpMLineIndex }),
    transfer: (pid, channel) => worker.postMessage({ type: 'channel', peer: pid, channel }, [channel]),
    failed: (pid, reason) => worker.postMessage({ type: 'peer-failed', peer: pid, reason }),
    changed: linkChanged,
    log,
  }, { relayOnly: Boolean(welcome.relay_only) });
  page.links.set(peer, link);
}

/**
 * Tell the server (and so everyone) how this link is doing; the client says it once per change.
 * @param {PeerLink} link
 */
function linkChanged(link) {
  page.signaling?.linkState(link.peer, link.state(), link.path);
  renderRoster();
}

/** Close the connections and the signaling socket: this party is finished for good. */
function closeEverything() {
  for (const link of page.links.values()) link.close();
  page.signaling?.close(200); // let the last messages go out
}

/** @param {unknown} error */
function describe(error) {
  return error instanceof Error ? error.message : String(error);
}

init().catch((error) => {
  console.error(error);
  fail('Failed', `The page could not start: ${describe(error)}. Reload the page to try again.`);
});
