// The join page: one person's party in a session, running in this browser.
//
// This main thread does what only it can: signaling over the WebSocket and one
// RTCPeerConnection per other party. Each connection's data channel goes to the worker
// (worker.js) the moment it is created; Python there (py_worker/) runs the MPyC program.

import { Protocol, ProtocolError } from './protocol.js';

const el = (id) => document.querySelector(`[data-testid="${id}"]`);
const ui = {
  status: el('status'),
  error: el('error'),
  sessionId: el('session-id'),
  program: el('program'),
  parties: el('parties'),
  pid: el('pid'),
  roster: el('roster'),
  rosterSummary: el('roster-summary'),
  progressBox: el('progress-box'),
  progress: el('progress'),
  progressText: el('progress-text'),
  form: el('input-form'),
  inputLabel: el('input-label'),
  input: el('party-input'),
  inputHelp: el('input-help'),
  run: el('run'),
  output: el('output'),
  log: el('log'),
};

/** How each roster state reads to a person (data-state carries the key). */
const STATE_LABELS = {
  waiting: 'not joined yet',
  joined: 'joined, waiting for the others',
  signaling: 'exchanging connection details',
  connecting: 'connecting',
  connected: 'connected',
  done: 'finished',
  failed: 'could not connect',
  left: 'left the session',
};

const page = {
  openedAt: performance.now(),
  sessionId: null,
  session: null, // GET /api/sessions/ID
  protocol: null,
  builtins: {}, // name -> what it computes (from Python, once the worker is ready)
  workerReady: false,
  inputProblem: 'not checked yet',
  inputCheck: 0,
  phase: 'loading', // loading | ready | joining | waiting | connecting | computing | done | failed
  ws: null,
  welcome: null,
  roster: null,
  links: new Map(), // peer pid -> PeerLink
  finished: new Set(), // pids the server reported 'done' (they show 'left' once they go)
  myState: 'joined',
};

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
  ui.error.hidden = false;
}

/** Stop for good with a message; the page can only be reloaded after this. */
function fail(status, message) {
  if (page.phase === 'failed') return;
  page.phase = 'failed';
  setStatus(status, 'error');
  showError(message);
  log(`stopped: ${message}`);
  ui.input.disabled = true;
  ui.run.disabled = true;
  ui.progressBox.hidden = true;
  if (!page.welcome) {
    // Never joined: nothing to type and no result to wait for.
    ui.form.hidden = true;
    ui.output.closest('section').hidden = true;
  }
  page.myState = 'failed';
  renderRoster();
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

// -- start-up: what is this session, and load Python ------------------------------------

async function fetchJson(path) {
  let response;
  try {
    response = await fetch(path, { headers: { Accept: 'application/json' } });
  } catch {
    throw new Error(`Could not reach the session server at ${location.host}. Check your network connection and reload the page.`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // an answer that is not JSON: described below
  }
  if (!response.ok) {
    const error = new Error(body?.message
      || `The session server answered ${response.status} ${response.statusText}; reload the page to try again.`);
    error.code = body?.code;
    throw error;
  }
  return body;
}

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
    [session, assets, schema] = await Promise.all([
      fetchJson(`/api/sessions/${encodeURIComponent(page.sessionId)}`),
      fetchJson('/api/assets'),
      fetchJson('/api/protocol'),
    ]);
  } catch (error) {
    worker.terminate();
    ui.program.textContent = ui.parties.textContent = '–';
    fail(error.code === 'unknown_session' ? 'No such session' : 'Cannot load', error.message);
    return;
  }
  page.session = session;
  page.protocol = new Protocol(schema);
  showSession();
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
  pollLobby();
}

function showSession() {
  const { session } = page;
  const program = session.program;
  const description = page.builtins[program.name];
  let text = program.name;
  if (program.builtin && description) text += ` — ${description}`;
  if (!program.builtin) text += ' (an uploaded MPyC script)';
  if (program.args.length) text += `, with arguments ${program.args.join(' ')}`;
  ui.program.textContent = text;
  ui.parties.textContent = String(session.parties);
  ui.inputLabel.textContent = program.builtin ? 'Your private number'
    : 'Your private input (optional)';
  showInputHelp(null);
  renderRoster();
}

/** What to type, or why what was typed cannot be used. */
function showInputHelp(problem) {
  ui.inputHelp.classList.toggle('problem', Boolean(problem));
  if (problem) {
    ui.inputHelp.textContent = problem;
  } else if (page.session.program.builtin) {
    ui.inputHelp.textContent = 'An integer like 42, or several separated by commas like 3,1,2. '
      + 'The others learn only the result, not your numbers.';
  } else {
    ui.inputHelp.textContent = 'If the script reads one, e.g. 42 or 3,1,2; it gets it as '
      + '--input=VALUE. Leave it empty otherwise.';
  }
}

/** Before joining, show how many have joined so far (refreshed every few seconds). */
async function pollLobby() {
  while (['loading', 'ready'].includes(page.phase)) {
    try {
      page.session = await fetchJson(`/api/sessions/${encodeURIComponent(page.sessionId)}`);
      renderRoster();
      if (page.session.started && ['loading', 'ready'].includes(page.phase)) {
        worker.terminate();
        fail('Session full', `All ${page.session.parties} parties joined this session before you, so you cannot join it any more. Ask the person who created it for a new link.`);
      }
    } catch (error) {
      if (error.code === 'unknown_session' && ['loading', 'ready'].includes(page.phase)) {
        worker.terminate();
        fail('No such session', error.message);
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 3000));
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
    if (page.phase !== 'loading') return;
    ui.progress.value = percent;
    ui.progressText.textContent = `${text}…`;
    setStatus(`Loading Python… ${percent}%`);
  },
  ready({ builtins, jspi, seconds }) {
    page.workerReady = true;
    page.builtins = builtins;
    const ms = performance.now() - page.openedAt;
    log(`Python and MPyC ready ${(ms / 1000).toFixed(2)} s after the page opened (worker: ${seconds.toFixed(2)} s)`);
    window.mpycTimings = { readyMs: ms };
    ui.progress.value = 100;
    ui.progressText.textContent = 'Python is ready';
    ui.progressBox.hidden = true;
    showSession();
    if (!jspi && page.session.program.builtin) {
      // The built-in programs are MPyC scripts that call mpc.run(...).
      fail('Cannot run here', 'This browser cannot run this session\'s program: it lacks JavaScript Promise Integration (JSPI), which the program needs. Please open the link in a recent Chrome or Edge, or take part with the mpyc-webrtc-peer command.');
      return;
    }
    if (page.phase === 'loading') {
      page.phase = 'ready';
      setStatus('Ready', 'ok');
      checkInput();
    }
  },
  'input-checked'({ id, problem }) {
    if (id !== page.inputCheck) return; // an answer about older text
    page.inputProblem = problem;
    // An empty field is not an error yet: the help already says what to type.
    const shown = ui.input.value.trim() ? problem : null;
    ui.input.setAttribute('aria-invalid', shown ? 'true' : 'false');
    showInputHelp(shown);
    updateRunButton();
  },
  stdout({ text }) {
    ui.output.textContent += `${text}\n`;
  },
  log({ text }) {
    appendLog(text);
  },
  report({ kind, detail }) {
    if (kind === 'connected') {
      log(`data channels to all parties are open (${detail} s after everyone joined)`);
      page.myState = 'connected';
      if (page.phase === 'connecting') {
        page.phase = 'computing';
        setStatus('Computing');
      }
      sendStatus('connected');
      renderRoster();
    }
  },
  exit({ problem }) {
    if (problem) {
      sendStatus('failed', problem.slice(0, 500));
      fail('Failed', problem);
    } else if (page.phase !== 'failed') {
      page.phase = 'done';
      page.myState = 'done';
      setStatus('Done', 'ok');
      sendStatus('done');
      renderRoster();
    }
    finish();
  },
  failed({ during, message }) {
    if (during === 'check-input') {
      log(message);
      return;
    }
    fail(during === 'load' ? 'Cannot load Python' : 'Failed', message);
    finish();
  },
};

// -- the input ----------------------------------------------------------------------------

function checkInput() {
  if (!page.workerReady) return;
  page.inputCheck += 1;
  worker.postMessage({
    type: 'check-input', id: page.inputCheck, program: page.session.program, text: ui.input.value,
  });
}

function updateRunButton() {
  ui.run.disabled = !(page.phase === 'ready' && page.workerReady && !page.inputProblem);
}

ui.input.addEventListener('input', () => {
  page.inputProblem = 'not checked yet';
  updateRunButton();
  checkInput();
});

ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (!ui.run.disabled) join();
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

function join() {
  page.phase = 'joining';
  ui.input.disabled = true;
  ui.run.disabled = true;
  ui.run.textContent = 'Joined';
  setStatus('Joining the session…');
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${scheme}//${location.host}/ws`);
  page.ws = ws;
  ws.onopen = () => send('join', { session: page.sessionId });
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
    } else if (page.phase === 'waiting') {
      const reason = 'The connection to the session server was lost before everyone joined.';
      worker.postMessage({ type: 'signaling-ended', reason });
      fail('Disconnected', `${reason} Reload the page to join again.`);
    } else if (['connecting', 'computing'].includes(page.phase)) {
      log('the connection to the session server closed; the computation goes on directly between the parties');
    }
  };
  ws.onerror = () => log('the connection to the session server reported an error');
}

const fromServer = {
  welcome(message) {
    page.welcome = message;
    page.phase = 'waiting';
    ui.pid.textContent = `Party ${message.pid}`;
    log(`joined as party ${message.pid} of ${message.parties}`);
    worker.postMessage({
      type: 'run',
      config: {
        session: message.session,
        pid: message.pid,
        parties: message.parties,
        program: message.program,
        input: ui.input.value.trim() || null,
      },
    });
    renderRoster();
  },
  roster(message) {
    page.roster = message;
    for (const member of message.members) {
      if (member.state === 'done') page.finished.add(member.pid);
    }
    if (page.phase === 'waiting' && !message.started) {
      const present = message.members.filter((m) => m.state !== 'left').length;
      const missing = message.parties - present;
      setStatus(missing > 0 ? `Waiting for ${plural(missing, 'more party', 'more parties')}`
        : 'Everyone is here');
    }
    if (message.started) {
      for (const member of message.members) {
        if (member.state === 'left' && member.pid !== page.welcome?.pid) {
          worker.postMessage({ type: 'peer-left', peer: member.pid });
        }
      }
    }
    renderRoster();
  },
  start() {
    if (!page.welcome || page.phase !== 'waiting') return;
    page.phase = 'connecting';
    page.myState = 'connecting';
    setStatus('Connecting to the other parties');
    worker.postMessage({ type: 'start' });
    for (let peer = 0; peer < page.welcome.parties; peer += 1) {
      if (peer !== page.welcome.pid) linkTo(peer);
    }
    renderRoster();
  },
  offer(message) {
    linkTo(message.from)?.receiveOffer(message.sdp);
  },
  answer(message) {
    page.links.get(message.from)?.receiveAnswer(message.sdp);
  },
  candidate(message) {
    linkTo(message.from)?.receiveCandidate(message);
  },
  error(message) {
    log(`the server reports ${message.code}: ${message.message}`);
    if (!page.welcome) {
      const status = message.code === 'session_full' ? 'Session full'
        : message.code === 'unknown_session' ? 'No such session' : 'Could not join';
      fail(status, message.message);
      page.ws?.close();
    } else if (message.code === 'session_expired') {
      worker.postMessage({ type: 'signaling-ended', reason: message.message });
      if (['waiting', 'joining'].includes(page.phase)) fail('Session closed', message.message);
    } else if (!['done', 'failed'].includes(page.phase)) {
      showError(message.message);
    }
  },
};

// -- peer connections ---------------------------------------------------------------------

/** The connection to ``peer``, made on first need once everyone has joined. */
function linkTo(peer) {
  if (!page.welcome || !['connecting', 'computing'].includes(page.phase)) return null;
  if (peer === page.welcome.pid || peer < 0 || peer >= page.welcome.parties) return null;
  let link = page.links.get(peer);
  if (!link) {
    link = new PeerLink(peer);
    page.links.set(peer, link);
  }
  return link;
}

class PeerLink {
  constructor(peer) {
    this.peer = peer;
    this.pc = new RTCPeerConnection({ iceServers: page.welcome.ice_servers });
    // Negotiated on both sides, so it exists before any SDP; transferred in this same
    // task, before it can open, as a transferable channel must be.
    const channel = this.pc.createDataChannel('mpyc', { negotiated: true, id: 0 });
    worker.postMessage({ type: 'channel', peer, channel }, [channel]);
    this.remoteSet = false;
    this.pendingCandidates = [];
    this.steps = Promise.resolve(); // signaling steps of this link, one after another
    this.failed = false;
    this.pc.onicecandidate = ({ candidate }) => {
      if (candidate && candidate.candidate) {
        send('candidate', {
          to: peer,
          candidate: candidate.candidate,
          sdpMid: candidate.sdpMid,
          sdpMLineIndex: candidate.sdpMLineIndex,
        });
      }
    };
    this.pc.onconnectionstatechange = () => {
      log(`connection to party ${peer}: ${this.pc.connectionState}`);
      if (this.pc.connectionState === 'failed') this.giveUp('the connection failed.');
      renderRoster();
    };
    this.pc.onsignalingstatechange = () => renderRoster();
    if (page.welcome.pid < peer) this.step(() => this.offer()); // the lower pid offers
  }

  step(action) {
    this.steps = this.steps.then(action).catch((error) => {
      this.giveUp(`the connection could not be set up (${error.message || error}).`);
    });
  }

  async offer() {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    send('offer', { to: this.peer, sdp: this.pc.localDescription.sdp });
  }

  receiveOffer(sdp) {
    this.step(async () => {
      await this.setRemote({ type: 'offer', sdp });
      await this.pc.setLocalDescription(await this.pc.createAnswer());
      send('answer', { to: this.peer, sdp: this.pc.localDescription.sdp });
    });
  }

  receiveAnswer(sdp) {
    this.step(() => this.setRemote({ type: 'answer', sdp }));
  }

  receiveCandidate({ candidate, sdpMid, sdpMLineIndex }) {
    if (!candidate) return; // end of candidates
    const init = { candidate, sdpMid: sdpMid ?? null, sdpMLineIndex: sdpMLineIndex ?? null };
    if (init.sdpMid === null && init.sdpMLineIndex === null) init.sdpMLineIndex = 0;
    if (!this.remoteSet) {
      this.pendingCandidates.push(init);
      return;
    }
    this.addCandidate(init);
  }

  async setRemote(description) {
    await this.pc.setRemoteDescription(description);
    this.remoteSet = true;
    const pending = this.pendingCandidates.splice(0);
    for (const init of pending) await this.addCandidate(init);
  }

  async addCandidate(init) {
    try {
      await this.pc.addIceCandidate(init);
    } catch (error) {
      log(`ignoring an unusable connection candidate from party ${this.peer}: ${error.message}`);
    }
  }

  giveUp(reason) {
    if (this.failed) return;
    this.failed = true;
    log(`connection to party ${this.peer}: ${reason}`);
    worker.postMessage({ type: 'peer-failed', peer: this.peer, reason });
    renderRoster();
  }

  /** Roster state of this peer as seen from here. */
  state() {
    const { pc } = this;
    if (this.failed || pc.connectionState === 'failed') return 'failed';
    if (pc.connectionState === 'connected') return 'connected';
    if (pc.connectionState === 'closed') return this.wasConnected ? 'connected' : 'failed';
    if (!this.remoteSet || pc.signalingState !== 'stable') return 'signaling';
    return 'connecting';
  }

  close() {
    this.wasConnected = this.pc.connectionState === 'connected' || this.wasConnected;
    this.pc.close();
  }
}

/** Close the connections and the signaling socket once the program has ended. */
function finish() {
  for (const link of page.links.values()) link.close();
  renderRoster();
  setTimeout(() => page.ws?.close(), 200); // let the last status message go out
}

// -- the roster ---------------------------------------------------------------------------

function peerState(pid) {
  const me = page.welcome?.pid;
  const member = page.roster?.members.find((m) => m.pid === pid);
  if (pid === me) return page.myState;
  if (!member) return 'waiting';
  const link = page.links.get(pid);
  const local = link ? link.state() : null;
  // Our own run ending well means everyone reached MPyC's final barrier.
  if (page.finished.has(pid) || (page.myState === 'done' && local === 'connected')) {
    return 'done';
  }
  if (member.state === 'left') return 'left';
  if (member.state === 'failed') return 'failed';
  if (local) return local;
  return page.roster.started ? 'signaling' : 'joined';
}

function renderRoster() {
  const parties = page.welcome?.parties ?? page.session?.parties;
  if (!parties) return;
  if (!page.welcome) {
    const joined = page.session.joined;
    ui.rosterSummary.textContent = `${plural(joined, 'party has', 'parties have')} joined so far, out of ${parties}. `
      + 'Party numbers are given out in the order people join.';
    ui.roster.replaceChildren();
    return;
  }
  ui.rosterSummary.textContent = '';
  const rows = [];
  for (let pid = 0; pid < parties; pid += 1) {
    const state = peerState(pid);
    const member = page.roster?.members.find((m) => m.pid === pid);
    const row = document.createElement('li');
    row.dataset.testid = `peer-${pid}`;
    row.dataset.state = state;
    const name = document.createElement('span');
    name.className = 'who';
    name.textContent = pid === page.welcome.pid ? `Party ${pid} (you)`
      : `Party ${pid}${member && member.name && member.name !== `party ${pid}` ? ` · ${member.name}` : ''}`;
    const label = document.createElement('span');
    label.className = 'state';
    label.textContent = STATE_LABELS[state] ?? state;
    row.append(name, label);
    rows.push(row);
  }
  ui.roster.replaceChildren(...rows);
}

init().catch((error) => {
  console.error(error);
  fail('Failed', `The page could not start: ${error.message || error}. Reload the page to try again.`);
});
