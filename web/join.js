// The lobby and run page of one party: join a session, confirm an input, and compute.
//
// This main thread does what only it can: signaling over the WebSocket and one
// RTCPeerConnection per other party (peers.js). Each connection's data channel goes to the
// worker (worker.js) the moment it is created; Python there (py_worker/) runs the program.

import { qrcode } from '/vendor/qrcode-generator/dist/qrcode.mjs';
import { byTestId as el, copyText, fetchJson, plural, showCode } from './common.js';
import { PeerLink } from './peers.js';
import { Protocol, ProtocolError } from './protocol.js';
import { renderResult } from './result.js';
import {
  fingerprintOf, joinToken, parseFragment, Sealer, TamperError,
} from './sealing.js';
import { Sentences } from './sentences.js';

const ui = Object.fromEntries([
  'title', 'summary', 'status', 'progress-box', 'progress', 'progress-text', 'activity', 'error',
  'invite', 'invite-link', 'copy-link', 'copy-result', 'invite-qr', 'places', 'place-buttons',
  'me', 'pid', 'session-id', 'parties', 'input-form', 'your-name', 'input-area', 'input-label',
  'party-input', 'input-choices', 'input-help', 'ready', 'unready', 'result-card', 'result',
  'output', 'output-box', 'elapsed', 'run-again', 'again-help', 'roster-summary', 'roster', 'pairs-box',
  'pairs', 'relay-note', 'program', 'fingerprint', 'fingerprint-check', 'program-source', 'log',
].map((id) => [id.replace(/-(\w)/g, (_, c) => c.toUpperCase()), el(id)]));

/** How a party's state reads to a person (data-state carries the key). */
const STATE_LABELS = {
  waiting: 'not here yet',
  joined: 'in the lobby, choosing an input',
  ready: 'ready',
  connecting: 'connecting',
  computing: 'computing',
  done: 'finished',
  again: 'finished, wants to run again',
  failed: 'failed',
  left: 'left the session',
};

/** A pair's connection state (wire.LINK_STATES) in words. */
const PAIR_LABELS = {
  signaling: 'exchanging connection details',
  connecting: 'connecting',
  connected: 'connected',
  ready: 'ready',
  closed: 'closed',
  failed: 'could not connect',
};

const NAME_KEY = 'mpyc-webrtc-name';
const params = new URLSearchParams(location.search);

const page = {
  openedAt: performance.now(),
  sessionId: null,
  sentences: null, // what to say (GET /api/sentences)
  wantedRole: params.has('role') ? Number(params.get('role')) : null,
  session: null, // GET /api/sessions/ID
  protocol: null,
  workerReady: false,
  jspi: true,
  inputProblem: 'not checked yet',
  inputCheck: 0,
  // opening | choosing | joining | lobby | connecting | computing | done | again | failed
  phase: 'opening',
  ws: null,
  welcome: null,
  roster: null,
  links: new Map(), // peer pid -> PeerLink
  reportedLinks: new Map(), // peer pid -> 'state/path' last sent to the server
  iAmReady: false,
  round: 0,
  roundStarted: 0,
  timer: null,
  traffic: null,
  myState: 'joined',
  link: null, // {secret, programHash} from the link's fragment
  token: null,
  sealer: null, // Promise of this party's Sealer, from the welcome on
  outgoing: Promise.resolve(), // sealed signals leave one after another, in seq order
  incoming: Promise.resolve(), // and are opened one after another
  programChecked: null, // resolves once the program to run matches the link's hash
  programOk: null,
};
page.programChecked = new Promise((resolve) => { page.programOk = resolve; });

const worker = new Worker('/web/worker.js', { type: 'module' });

// -- small helpers ------------------------------------------------------------------------

function log(text) {
  const who = page.welcome ? `[session ${page.sessionId} party ${page.welcome.pid}]`
    : `[session ${page.sessionId ?? '-'}]`;
  const line = `${new Date().toTimeString().slice(0, 8)} ${who} page: ${text}`;
  console.log(line);
  appendLog(line);
}

function appendLog(line) {
  ui.log.textContent += `${line}\n`;
}

function setStatus(text, tone = 'busy') {
  ui.status.textContent = text;
  ui.status.dataset.tone = tone;
}

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = !text;
}

function running() {
  return ['connecting', 'computing'].includes(page.phase);
}

/** Stop for good with a message; the page can only be reloaded after this. */
function fail(status, message) {
  if (page.phase === 'failed') return;
  const wasRunning = running();
  page.phase = 'failed';
  setStatus(status, 'error');
  showError(message);
  log(`stopped: ${message}`);
  for (const control of [ui.partyInput, ui.yourName, ui.ready, ui.unready, ui.runAgain]) {
    control.disabled = true;
  }
  ui.unready.hidden = true;
  ui.runAgain.hidden = true;
  ui.places.hidden = true;
  ui.progressBox.hidden = true;
  stopTimer(wasRunning ? 'Stopped after' : null);
  page.myState = 'failed';
  renderRoster();
}

function partyName(pid, { you = true } = {}) {
  const label = page.welcome?.labels?.[pid] || page.session?.labels?.[pid] || '';
  const member = page.roster?.members.find((m) => m.pid === pid);
  const name = member && member.name !== `party ${pid}` ? member.name : '';
  let text = label ? `${label} (party ${pid})` : `Party ${pid}`;
  if (name) text += ` · ${name}`;
  if (you && pid === page.welcome?.pid) text += ' — you';
  return text;
}

// -- start-up: what is this session, and load Python ------------------------------------

async function init() {
  const match = location.pathname.match(/\/join\/([^/]+)\/?$/);
  if (!match) {
    worker.terminate();
    fail('No session', 'This page needs a session link, which looks like http://HOST/join/SESSION_ID. Ask the person who created the session for it.');
    return;
  }
  page.sessionId = decodeURIComponent(match[1]);
  ui.sessionId.textContent = page.sessionId;
  let session, assets, schema;
  try {
    page.sentences = new Sentences(await fetchJson('/api/sentences'));
    page.link = parseFragment(location.hash, page.sentences);
  } catch (error) {
    worker.terminate();
    fail(page.sentences ? 'Incomplete link' : 'Cannot load', error.message);
    return;
  }
  try {
    [session, assets, schema] = await Promise.all([
      fetchJson(`/api/sessions/${encodeURIComponent(page.sessionId)}`),
      fetchJson('/api/assets'),
      fetchJson('/api/protocol'),
    ]);
  } catch (error) {
    worker.terminate();
    fail(error.code === 'unknown_session' ? 'No such session' : 'Cannot load', error.message);
    return;
  }
  page.session = session;
  page.protocol = new Protocol(schema);
  if (!globalThis.crypto?.subtle) {
    worker.terminate();
    fail('Cannot run here', 'This page must be opened over https:// (or on this computer, as http://127.0.0.1): browsers allow the encryption it needs only there.');
    return;
  }
  page.token = (await joinToken(page.link.secret, schema.sealing)).token;
  showSession();
  if (session.program.hash !== page.link.programHash) {
    // The server already describes another program: do not even take a place.
    worker.terminate();
    tampered(page.sentences.say('tamper.server_program', {
      ours: fingerprintOf(session.program.hash), link: fingerprintOf(page.link.programHash),
    }));
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
  const { session } = page;
  const { program } = session;
  ui.title.textContent = program.title;
  ui.summary.textContent = program.builtin ? program.summary
    : 'A program written by the person who created this session. Read it below before you take part.';
  let text = program.builtin ? `${program.title} (built-in program "${program.name}")`
    : `${program.name}, an MPyC program uploaded by the session's creator`;
  if (program.args.length) text += `, with arguments ${program.args.join(' ')}`;
  ui.program.textContent = text;
  ui.fingerprint.textContent = fingerprintOf(page.link.programHash);
  ui.fingerprintCheck.textContent = '(from the link; checking the code…)';
  showCode(ui.programSource, program.source);
  ui.parties.textContent = String(session.parties);
  ui.invite.hidden = false;
  // The secret stays in the fragment, which browsers never send to the server.
  ui.inviteLink.value = `${session.join_url}${location.hash}`;
  ui.inviteQr.src = qrCode(ui.inviteLink.value);
  ui.yourName.value = localStorage.getItem(NAME_KEY) ?? '';
  buildInput(program.input);
  renderRoster();
}

/** The invite link as a QR code image (made here: the server never sees the secret). */
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

// -- choosing a named place ---------------------------------------------------------------

async function choosePlace() {
  page.phase = 'choosing';
  setStatus('Choose your place', 'ok');
  ui.places.hidden = false;
  while (page.phase === 'choosing') {
    const taken = new Set(page.session.members.map((m) => m.pid));
    const buttons = page.session.labels.map((label, pid) => {
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
    await new Promise((resolve) => setTimeout(resolve, 2000));
    if (page.phase !== 'choosing') break;
    try {
      page.session = await fetchJson(`/api/sessions/${encodeURIComponent(page.sessionId)}`);
    } catch (error) {
      if (error.code === 'unknown_session') fail('No such session', error.message);
    }
    if (page.session.started) fail('Session full', 'All parties joined this session before you, so you cannot join it any more. Ask the person who created it for a new link.');
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
    window.mpycTimings = { readyMs: ms };
    ui.progress.value = 100;
    ui.progressBox.hidden = true;
    checkFingerprint();
    if (!jspi && page.session.program.builtin) {
      fail('Cannot run here', 'This browser cannot run this session\'s program: it lacks JavaScript Promise Integration (JSPI), which the program needs. Please open the link in a recent Chrome or Edge, or take part with the mpyc-webrtc-peer command.');
      return;
    }
    checkInput();
    updateButtons();
  },
  fingerprint({ hash }) {
    // Python hashed the program this party is about to run; the link says what the
    // creator chose. Nothing connects before they agree.
    if (hash === page.link.programHash) {
      ui.fingerprintCheck.textContent = '✓ the code your browser will run matches the link';
      ui.fingerprintCheck.classList.remove('problem');
      page.programOk();
    } else {
      ui.fingerprintCheck.textContent = `✗ the code here has fingerprint ${fingerprintOf(hash)}`;
      ui.fingerprintCheck.classList.add('problem');
      tampered(page.sentences.say('tamper.server_program', {
        ours: fingerprintOf(hash), link: fingerprintOf(page.link.programHash),
      }));
    }
  },
  'input-checked'({ id, problem }) {
    if (id !== page.inputCheck) return; // an answer about older text
    page.inputProblem = problem;
    // An empty field is not an error yet: the help already says what to type.
    const shown = inputValue() ? problem : null;
    ui.partyInput.setAttribute('aria-invalid', shown ? 'true' : 'false');
    showInputHelp(shown);
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
      if (page.phase === 'connecting') {
        page.phase = 'computing';
        page.myState = 'computing';
        setStatus('Computing');
      }
      sendStatus('connected');
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
      sendStatus('failed', problem.slice(0, 500));
      fail('Failed', problem);
      closeEverything();
    } else if (page.phase !== 'failed') {
      page.phase = 'done';
      page.myState = 'done';
      setStatus('Done', 'ok');
      sendStatus('done');
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

/** Have Python fingerprint the program this party will run (the welcome's, once joined). */
function checkFingerprint() {
  if (!page.workerReady || !page.welcome) return;
  worker.postMessage({ type: 'fingerprint', program: page.welcome.program });
}

// -- the input ----------------------------------------------------------------------------

/** Build the input controls the program asks for (programs.InputSpec.to_json()). */
function buildInput(spec) {
  ui.inputLabel.textContent = spec.label;
  ui.partyInput.placeholder = spec.placeholder ? `e.g. ${spec.placeholder}` : '';
  ui.partyInput.inputMode = spec.kind === 'integer' ? 'numeric' : 'text';
  ui.partyInput.hidden = spec.kind === 'choice' || spec.kind === 'none';
  ui.inputLabel.hidden = spec.kind === 'none';
  ui.inputChoices.hidden = spec.kind !== 'choice';
  if (spec.kind === 'choice') {
    ui.inputChoices.setAttribute('aria-label', spec.label);
    ui.inputChoices.replaceChildren(...spec.choices.map(({ value, label }) => {
      const option = document.createElement('label');
      option.className = 'choice';
      const radio = document.createElement('input');
      radio.type = 'radio';
      radio.name = 'party-choice';
      radio.value = value;
      radio.dataset.testid = `choice-${value}`;
      radio.addEventListener('change', inputChanged);
      option.append(radio, document.createTextNode(label));
      return option;
    }));
  }
  showInputHelp(null);
}

function inputValue() {
  const { kind } = page.session.program.input;
  if (kind === 'none') return '';
  if (kind === 'choice') return ui.inputChoices.querySelector('input:checked')?.value ?? '';
  return ui.partyInput.value.trim();
}

/** What to type, or why what was typed cannot be used. */
function showInputHelp(problem) {
  ui.inputHelp.classList.toggle('problem', Boolean(problem));
  ui.inputHelp.textContent = problem || page.session.program.input.help;
}

function checkInput() {
  if (!page.workerReady) return;
  page.inputCheck += 1;
  worker.postMessage({
    type: 'check-input', id: page.inputCheck, program: page.session.program, text: inputValue(),
  });
}

function inputChanged() {
  page.inputProblem = 'not checked yet';
  updateButtons();
  checkInput();
}

function canConfirm() {
  return ['lobby', 'again'].includes(page.phase) && page.workerReady && !page.iAmReady;
}

function updateButtons() {
  const editable = canConfirm();
  ui.ready.disabled = !editable || page.inputProblem === 'not checked yet';
  ui.partyInput.disabled = !editable;
  for (const radio of ui.inputChoices.querySelectorAll('input')) radio.disabled = !editable;
  ui.yourName.disabled = !editable;
  if (!page.workerReady && ['lobby', 'joining'].includes(page.phase)) {
    ui.ready.textContent = 'Loading Python…';
    ui.partyInput.disabled = false; // typing may start while Python loads
  } else {
    ui.ready.textContent = page.phase === 'again' ? 'I\'m ready to run again' : 'I\'m ready';
  }
  ui.unready.hidden = !(page.iAmReady && page.phase === 'lobby');
  // While a round runs and after it, the result is what matters; "Run again" brings it back.
  ui.ready.hidden = ['connecting', 'computing', 'done'].includes(page.phase);
}

ui.partyInput.addEventListener('input', inputChanged);

ui.inputForm.addEventListener('submit', (event) => {
  event.preventDefault();
  if (ui.ready.disabled) return;
  if (page.inputProblem) {
    // The program's own sentence; nothing is sent.
    showInputHelp(page.inputProblem);
    ui.partyInput.setAttribute('aria-invalid', 'true');
    (ui.partyInput.hidden ? ui.inputChoices.querySelector('input') : ui.partyInput)?.focus();
    return;
  }
  const name = ui.yourName.value.trim();
  localStorage.setItem(NAME_KEY, name);
  if (!send('ready', name ? { ready: true, name } : { ready: true })) return;
  page.iAmReady = true;
  updateButtons();
  renderRoster();
});

ui.unready.addEventListener('click', () => {
  if (page.phase !== 'lobby' || !send('ready', { ready: false })) return;
  page.iAmReady = false;
  updateButtons();
  renderRoster();
});

ui.runAgain.addEventListener('click', () => {
  if (page.phase !== 'done') return;
  page.phase = 'again';
  page.iAmReady = false;
  ui.runAgain.hidden = true;
  ui.againHelp.hidden = false;
  ui.againHelp.textContent = 'Change your input if you like and press "I\'m ready to run again". It runs again, over the same connections, once every party agrees.';
  setStatus('Run again?', 'ok');
  updateButtons();
  ui.me.scrollIntoView({ behavior: 'smooth', block: 'center' });
});

// -- signaling ----------------------------------------------------------------------------

function send(type, fields) {
  let text;
  try {
    text = page.protocol.encode(type, fields);
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
    log(`could not send a '${type}' message: ${error.message}`);
    return false;
  }
  if (!page.ws || page.ws.readyState !== WebSocket.OPEN) return false;
  page.ws.send(text);
  return true;
}

function sendStatus(state, detail) {
  send('status', detail ? { state, detail } : { state });
}

function join(role) {
  page.phase = 'joining';
  setStatus('Joining the session…');
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${scheme}//${location.host}/ws`);
  page.ws = ws;
  ws.onopen = () => {
    const fields = { session: page.sessionId, token: page.token, ready: false };
    const name = ui.yourName.value.trim();
    if (name) fields.name = name;
    if (Number.isInteger(role)) fields.role = role;
    send('join', fields);
  };
  ws.onmessage = (event) => {
    let message;
    try {
      message = page.protocol.decode(event.data);
    } catch (error) {
      log(`ignoring a message from the server: ${error.message}`);
      return;
    }
    const handler = fromServer[message.type];
    if (handler) handler(message);
  };
  ws.onclose = () => {
    page.ws = null;
    if (page.phase === 'joining') {
      fail('Could not join', 'The connection to the session server closed before you could join. Reload the page to try again.');
    } else if (page.phase === 'lobby') {
      worker.postMessage({ type: 'signaling-ended', reason: 'The connection to the session server was lost.' });
      fail('Disconnected', 'The connection to the session server was lost before the computation started. Reload the page to join again.');
    } else if (running()) {
      log('the connection to the session server closed; the computation goes on directly between the parties');
    } else if (['done', 'again'].includes(page.phase)) {
      ui.runAgain.disabled = true;
      ui.ready.disabled = true;
      ui.againHelp.hidden = false;
      ui.againHelp.textContent = 'The connection to the session server closed, so this session cannot run again. Start a new session to compute again.';
    }
  };
  ws.onerror = () => log('the connection to the session server reported an error');
}

const fromServer = {
  welcome(message) {
    page.welcome = message;
    // The session in the sealed data is the one in this page's link, not the server's word.
    page.sealer = Sealer.create(page.link.secret, page.sessionId, message.pid,
      page.protocol.schema.sealing, page.sentences); // a promise: signals wait for it
    page.phase = 'lobby';
    ui.me.hidden = false;
    ui.pid.textContent = partyName(message.pid, { you: false });
    ui.relayNote.hidden = !message.relay_only;
    log(`joined as party ${message.pid} of ${message.parties}`);
    history.replaceState(null, '', `${location.pathname}?role=${message.pid}${location.hash}`);
    checkFingerprint();
    updateButtons();
    renderRoster();
  },
  roster(message) {
    page.roster = message;
    if (page.welcome) ui.pid.textContent = partyName(page.welcome.pid, { you: false });
    // So that an error about a party can say who that is.
    worker.postMessage({
      type: 'names',
      members: message.members.map(({ pid, name, label }) => ({ pid, name, label })),
    });
    if (running()) {
      for (const member of message.members) {
        if (member.state === 'left' && member.pid !== page.welcome?.pid) {
          worker.postMessage({ type: 'peer-left', peer: member.pid });
        }
      }
    }
    if (['done', 'again'].includes(page.phase)) {
      const gone = message.members.filter((m) => m.state === 'left').map((m) => m.pid);
      if (gone.length) {
        ui.runAgain.disabled = true;
        ui.ready.disabled = true;
        ui.againHelp.hidden = false;
        ui.againHelp.textContent = `${partyName(gone[0], { you: false })} has left, so this session cannot run again. Start a new session to compute again.`;
        for (const pid of gone) page.links.get(pid)?.close();
      }
    }
    refreshLobbyStatus();
    renderRoster();
  },
  start({ round }) {
    if (!page.welcome || !['lobby', 'again', 'done'].includes(page.phase)) return;
    beginRound(round);
  },
  signal({ from, seq, box }) {
    page.incoming = page.incoming.then(() => received(from, seq, box));
  },
  error(message) {
    log(`the server reports ${message.code}: ${message.message}`);
    if (!page.welcome) {
      if (message.code === 'role_taken') {
        showError(message.message);
        page.ws?.close();
        page.ws = null;
        page.session.members.push({ pid: page.wantedRole });
        choosePlace();
        return;
      }
      const status = message.code === 'session_full' ? 'Session full'
        : message.code === 'unknown_session' ? 'No such session' : 'Could not join';
      fail(status, message.message);
      page.ws?.close();
    } else if (message.code === 'session_expired') {
      worker.postMessage({ type: 'signaling-ended', reason: message.message });
      if (['lobby', 'joining'].includes(page.phase)) fail('Session closed', message.message);
    } else if (message.code === 'party_left') {
      page.iAmReady = false;
      ui.againHelp.hidden = false;
      ui.againHelp.textContent = message.message;
      ui.ready.disabled = true;
    } else if (!['done', 'failed'].includes(page.phase)) {
      showError(message.message);
    }
  },
};

/** Open a sealed signal and act on it; any failure is tampering, and stops this party. */
async function received(from, seq, box) {
  await page.programChecked; // act on nothing before this party's program is verified
  if (page.phase === 'failed' || !page.sealer) return;
  let payload;
  try {
    payload = await (await page.sealer).open(from, seq, box);
  } catch (error) {
    if (error instanceof TamperError) tampered(error.message);
    else fail('Failed', `A signaling message could not be read: ${error.message || error}.`);
    return;
  }
  if (payload.kind === 'offer' || payload.kind === 'answer') {
    if (payload.program !== page.link.programHash) {
      tampered(page.sentences.say('tamper.peer_program', {
        party: from, theirs: fingerprintOf(String(payload.program)), ours: fingerprintOf(page.link.programHash),
      }));
      return;
    }
    if (payload.kind === 'offer') linkTo(from)?.receiveOffer(payload.sdp);
    else page.links.get(from)?.receiveAnswer(payload.sdp);
  } else if (payload.kind === 'candidate') {
    linkTo(from)?.receiveCandidate(payload);
  }
}

/** Seal ``payload`` for ``peer`` and send it; in order, since receivers check the numbers. */
function signal(peer, payload) {
  const full = payload.kind === 'candidate' ? payload
    : { ...payload, program: page.link.programHash };
  page.outgoing = page.outgoing.then(async () => {
    send('signal', await (await page.sealer).seal(peer, full));
  }).catch((error) => log(`could not send a signaling message to party ${peer}: ${error.message || error}`));
}

/** Someone interfered: stop at once, connect to nobody, and say so. */
function tampered(message) {
  if (page.welcome) sendStatus('failed', message.slice(0, 500));
  worker.postMessage({ type: 'signaling-ended', reason: message });
  for (const pid of page.links.keys()) {
    worker.postMessage({ type: 'peer-failed', peer: pid, reason: message });
  }
  fail('Tampering detected', message);
  closeEverything();
}

function refreshLobbyStatus() {
  if (!page.roster || !['lobby', 'again', 'done'].includes(page.phase)) return;
  if (page.phase === 'done') return;
  const present = page.roster.members.filter((m) => m.state !== 'left');
  const missing = page.roster.parties - present.length;
  const waiting = present.filter((m) => !m.ready && m.pid !== page.welcome.pid).length;
  if (missing > 0 && page.phase === 'lobby') {
    setStatus(`Waiting for ${plural(missing, 'more party', 'more parties')} to join`);
  } else if (!page.iAmReady) {
    setStatus(page.phase === 'again' ? 'Run again?' : 'Everyone is here: enter your input and press "I\'m ready"', 'ok');
  } else if (waiting > 0) {
    setStatus(`Waiting for ${plural(waiting, 'party', 'parties')} to press "${page.phase === 'again' ? 'I\'m ready to run again' : 'I\'m ready'}"`);
  } else {
    setStatus('Everyone is ready: starting');
  }
}

// -- a round: connect (first round only) and run the program --------------------------------

function beginRound(round) {
  page.round = round;
  page.phase = 'connecting';
  page.myState = 'connecting';
  page.iAmReady = false;
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
  const input = inputValue() || null;
  if (round === 1) {
    worker.postMessage({
      type: 'run',
      config: {
        session: page.welcome.session,
        pid: page.welcome.pid,
        parties: page.welcome.parties,
        program: page.welcome.program,
        input,
      },
    });
    worker.postMessage({ type: 'start' });
    // Connect to nobody before this party's program is known to be the link's.
    page.programChecked.then(() => {
      for (let peer = 0; peer < page.welcome.parties; peer += 1) {
        if (peer !== page.welcome.pid) linkTo(peer);
      }
    });
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

function stopTimer(prefix) {
  clearInterval(page.timer);
  page.timer = null;
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
  if (!running()) return;
  const seconds = ((performance.now() - page.roundStarted) / 1000).toFixed(1);
  ui.activity.hidden = false;
  ui.activity.textContent = `${page.phase === 'computing' ? 'Computing' : 'Connecting'}: ${seconds} s${trafficText()}`;
}

// -- peer connections ---------------------------------------------------------------------

/** The connection to ``peer``, made on first need once everyone is ready. */
function linkTo(peer) {
  if (!page.welcome || page.round === 0 || page.phase === 'failed') return null;
  if (peer === page.welcome.pid || peer < 0 || peer >= page.welcome.parties) return null;
  let link = page.links.get(peer);
  if (!link) {
    link = new PeerLink(peer, page.welcome.pid, page.welcome.ice_servers, {
      signal,
      log,
      transfer: (pid, channel) => worker.postMessage({ type: 'channel', peer: pid, channel }, [channel]),
      failed: (pid, reason) => worker.postMessage({ type: 'peer-failed', peer: pid, reason }),
      changed: linkChanged,
    }, { relayOnly: Boolean(page.welcome.relay_only) });
    page.links.set(peer, link);
  }
  return link;
}

/** Tell the server (and so everyone) how this link is doing, once per change. */
function linkChanged(link) {
  const state = link.state();
  const key = `${state}/${link.path ?? ''}`;
  if (page.reportedLinks.get(link.peer) !== key) {
    page.reportedLinks.set(link.peer, key);
    send('link', link.path ? { peer: link.peer, state, path: link.path } : { peer: link.peer, state });
  }
  renderRoster();
}

/** Close the connections and the signaling socket: this party is finished for good. */
function closeEverything() {
  for (const link of page.links.values()) link.close();
  setTimeout(() => page.ws?.close(), 200); // let the last messages go out
}

// -- the roster ---------------------------------------------------------------------------

function memberState(pid) {
  const member = page.roster?.members.find((m) => m.pid === pid);
  if (pid === page.welcome?.pid) {
    if (['lobby', 'again'].includes(page.phase)) {
      return page.iAmReady ? (page.phase === 'again' ? 'again' : 'ready') : 'joined';
    }
    if (page.phase === 'done') return 'done';
    return page.myState;
  }
  if (!member) return 'waiting';
  if (member.state === 'left') return 'left';
  if (member.state === 'failed') return 'failed';
  if (!page.roster.started) return member.ready ? 'ready' : 'joined';
  if (member.state === 'done') return member.ready ? 'again' : 'done';
  if (member.state === 'connected') return 'computing';
  return 'connecting';
}

function renderRoster() {
  const parties = page.welcome?.parties ?? page.session?.parties;
  if (!parties) return;
  if (!page.roster) {
    const joined = page.session.joined;
    ui.rosterSummary.textContent = `${plural(joined, 'party has', 'parties have')} joined so far, out of ${parties}.`;
  } else {
    const present = page.roster.members.filter((m) => m.state !== 'left').length;
    const ready = page.roster.members.filter((m) => m.ready && m.state !== 'left').length;
    ui.rosterSummary.textContent = page.roster.started
      ? `Round ${page.roster.round}.`
      : `${present} of ${parties} here, ${ready} ready. The computation starts when everyone is here and ready.`;
  }
  const rows = [];
  for (let pid = 0; pid < parties; pid += 1) {
    const state = memberState(pid);
    const row = document.createElement('li');
    row.dataset.testid = `peer-${pid}`;
    row.dataset.state = state;
    const name = document.createElement('span');
    name.className = 'who';
    name.textContent = partyName(pid);
    const label = document.createElement('span');
    label.className = 'state';
    label.textContent = STATE_LABELS[state] ?? state;
    row.append(name, label);
    rows.push(row);
  }
  ui.roster.replaceChildren(...rows);
  const pairs = page.roster?.pairs ?? [];
  ui.pairsBox.hidden = !pairs.length;
  ui.pairs.replaceChildren(...pairs.map((pair) => {
    const item = document.createElement('li');
    item.dataset.testid = `pair-${pair.a}-${pair.b}`;
    item.dataset.state = pair.state;
    if (pair.path) item.dataset.path = pair.path;
    const who = document.createElement('span');
    who.textContent = `Party ${pair.a} ↔ party ${pair.b}`;
    const state = document.createElement('span');
    state.className = 'state';
    state.textContent = PAIR_LABELS[pair.state] + (pair.path ? `, ${pair.path}` : '');
    item.append(who, state);
    return item;
  }));
}

init().catch((error) => {
  console.error(error);
  fail('Failed', `The page could not start: ${error.message || error}. Reload the page to try again.`);
});
