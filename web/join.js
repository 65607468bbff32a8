// @ts-check
// The lobby and run page of one party: join a session, confirm an input, and compute.
//
// This main thread does what only it can: signaling over the WebSocket (signaling.js, with
// the rules of client.js) and one RTCPeerConnection per other party (links.js). Each
// connection's data channel goes to the worker (worker.js) the moment it is created; Python
// there (py_worker/) runs the program. Where the party stands is lobby.js's table; what all
// parts share is page.js; what the page shows: session-view.js, roster-view.js and
// input-view.js; what the worker says: worker-events.js. This module runs the page: it
// starts it, joins, acts on the signaling client's events and runs each round.

import {
  closedSettings, offerAgain, showCloses,
} from './again.js';
import { isolationWithheld } from './capabilities.js';
import { ChatView } from './chat-view.js';
import { lacksWords } from './client.js';
import { fetchJson } from './common.js';
import { joinStatement } from './identity.js';
import {
  ownIdentity, showMine, verifiedIdentity,
} from './identity-view.js';
import { PeerLink } from './links.js';
import {
  client, closeEverything, describe, fail, lobby, log, NAME_KEY, page, partyName,
  renderRoster, rosterFacts, setStatus, showError, startTimer, ui, updateButtons, worker,
} from './page.js';
import { Protocol } from './protocol.js';
import { ChannelRelay } from './relay.js';
import { RingWriter } from './ring.js';
import { renderResult } from './result.js';
import {
  keepPlace, keepResults, keptPlace, keptResume, lastResult, warnBeforeLeaving,
} from './resume.js';
import { RosterView } from './roster-view.js';
import {
  differingRules, joinToken, parseFragment, toBase64Url,
} from './sealing.js';
import {
  CANNOT_LOAD, fillPage, loadSentences, say, sayCount, Sentences, useSentences,
} from './sentences.js';
import { addExplainer } from './explainer.js';
import { choosePlace, showSession } from './session-view.js';
import { PageSignaling } from './signaling.js';
import { checkFingerprint, showRoundStart } from './worker-events.js';

/** @typedef {import('./client.js').ClientEvent} ClientEvent */

// -- start-up: what is this session, and load Python ------------------------------------

async function init() {
  const identityLoaded = ownIdentity(); // this browser's key, from IndexedDB (or made now)
  let sentences;
  try {
    sentences = page.sentences = await loadSentences(fetchJson);
    fillPage(document); // the static text, in the table's words
    addExplainer(document.querySelector('header'), sentences); // "How does this keep my input secret?"
  } catch (error) {
    // Without the table nothing can be said in its words: CANNOT_LOAD is the English
    // fallback for exactly this case (sentences.js).
    page.sentences = useSentences(new Sentences(CANNOT_LOAD));
    worker.terminate();
    fail('title.cannot_load', describe(error));
    return;
  }
  const match = location.pathname.match(/\/join\/([^/]+)\/?$/);
  if (!match) {
    worker.terminate();
    fail('title.no_session', say('join.no_session'));
    return;
  }
  const sessionId = page.sessionId = decodeURIComponent(match[1]);
  ui.sessionId.textContent = sessionId;
  if (page.lacks.length) cannotTakePart(); // said at once; the page still joins to tell the others
  // The secret is read once, then leaves the address bar and the history; this tab keeps it
  // for a reload (sessionStorage: this tab only, gone when it closes).
  const kept = `mpyc-webrtc-link:${sessionId}`;
  const fragment = location.hash || sessionStorage.getItem(kept) || '';
  let link;
  try {
    link = page.link = parseFragment(fragment, sentences);
  } catch (error) {
    worker.terminate();
    fail('title.incomplete_link', describe(error));
    return;
  }
  page.fragment = fragment.replace(/^#?/, '#');
  sessionStorage.setItem(kept, page.fragment);
  history.replaceState(null, '', `${location.pathname}${location.search}`);
  let session, assets, schema;
  try {
    [session, assets, schema] = await Promise.all([
      fetchJson(`/api/sessions/${encodeURIComponent(sessionId)}`),
      fetchJson('/api/assets'),
      fetchJson('/api/protocol'),
    ]);
  } catch (error) {
    worker.terminate();
    const { code } = /** @type {any} */ (error);
    fail(code === 'unknown_session' ? 'title.no_such_session' : code === 'session_expired' ? 'title.session_closed'
      : 'title.cannot_load', describe(error));
    if (code === 'session_expired') offerAgain(await closedSettings(sessionId), keptPlace(sessionId));
    return;
  }
  page.session = session;
  const differs = differingRules(schema.sealing); // the sealing's constants are this page's own
  if (differs) {
    worker.terminate();
    fail('title.tampering', sentences.say('tamper.protocol', { what: differs }));
    return;
  }
  if (!globalThis.crypto?.subtle) {
    worker.terminate();
    fail('title.cannot_run_here', say('join.needs_https'));
    return;
  }
  // Who this party is: every join, offer, answer and chat message is signed with this
  // browser's key. A browser without Ed25519 cannot sign, so it cannot take part (if it
  // lacks other things too, it still holds its place to tell the others why, unsigned).
  const identity = page.identity = await identityLoaded;
  if (identity) {
    showMine(identity, sentences);
  } else if (!page.lacks.length) {
    worker.terminate();
    fail('title.cannot_take_part', say('identity.no_ed25519'));
    return;
  }
  const { token } = await joinToken(link.secret);
  // Drawn once per tab (the join's proof signs it): a reload shows it again and gets this
  // party's own place back, also after the start (resume.js).
  const { resume, before: joinedBefore } = keptResume(sessionId);
  const proof = identity ? toBase64Url(await identity.sign(joinStatement(sessionId, resume))) : null;
  const signaling = page.signaling = new PageSignaling({
    session: sessionId, link, token, protocol: new Protocol(schema), sentences, handlers: fromClient, log,
    lacks: page.lacks, identity, resume, proof,
    chatSender: (peer, payload) => page.links.get(peer)?.sendChat(payload) ?? false,
  });
  page.rosterView = new RosterView(ui, sentences);
  page.chatView = new ChatView(ui, sentences, (text) => signaling.say(text));
  showSession();
  showCloses(session.closes);
  signaling.described(session.program.hash); // another program than the link's: stop here
  if (lobby.phase === 'failed') {
    worker.terminate();
    return;
  }
  if (assets.missing) {
    worker.terminate();
    fail('title.cannot_run_here', assets.missing);
    return;
  }
  // This tab held a place in this session (a reload): the server gives it back.
  if (joinedBefore && session.started) page.returned = true;
  if ((session.started || session.joined >= session.parties) && !joinedBefore) {
    worker.terminate();
    fail('title.session_full', say('join.full', { parties: session.parties }));
    return;
  }
  if (!page.lacks.length) { // a browser that lacks something runs nothing: no results to keep
    page.relay = new ChannelRelay(RingWriter.create());
    worker.postMessage({ type: 'load', assets, inbox: page.relay.ring.buffer });
    keepResults(worker, sessionId, () => client()?.round ?? 0);
  }
  warnBeforeLeaving(() => lobby.running);
  if (joinedBefore) page.wantedRole = keptPlace(sessionId) ?? page.wantedRole;
  const named = session.labels.some(Boolean);
  if (named && (page.wantedRole === null || !Number.isInteger(page.wantedRole))) {
    choosePlace(join);
  } else {
    join(page.wantedRole);
  }
}

/**
 * Say that this browser cannot take part, what it lacks and what would work, before
 * "I'm ready" (which stays disabled) and before any Python is loaded. The page still joins:
 * so it holds the person's place, and the others see why the session cannot start yet.
 */
function cannotTakePart() {
  const sentences = /** @type {Sentences} */ (page.sentences);
  setStatus(say('title.cannot_take_part'), 'error');
  showError(isolationWithheld(page.lacks) ? sentences.say('browser.not_isolated')
    : sentences.say('browser.unsupported', { lacks: lacksWords(page.lacks, sentences) }));
  ui.progressBox.hidden = true;
  log(`this browser lacks ${page.lacks.join(', ')}: it joins only to tell the others, and loads no Python`);
  updateButtons();
}

/** @param {number | null} role the place asked for, if any */
function join(role) {
  if (!lobby.go('join')) return;
  if (page.lacks.length) cannotTakePart(); // again, after choosing a place
  else setStatus(say('status.joining'));
  page.askedRole = Number.isInteger(role) ? role : null;
  page.signaling?.join(ui.yourName.value.trim(), page.askedRole);
}

// Message recovery (mpyc_webrtc/recovery.py) is on unless the page's address says
// ?recovery=0 or ?recovery=off: a switch for comparing (bench/), which every party of a
// session must set alike. The worker reads the other words (recovery.SETTINGS).
const recovery = new URLSearchParams(location.search).get('recovery');
const recovering = !['0', 'off'].includes((recovery ?? '').trim().toLowerCase());

// -- what the signaling client says (client.js events) ---------------------------------------

/** @type {Record<string, (event: ClientEvent) => void>} */
const fromClient = {
  welcome({ welcome }) {
    if (!lobby.go('welcome')) return;
    ui.me.hidden = false;
    ui.pid.textContent = partyName(welcome.pid, { you: false });
    ui.relayNote.hidden = !welcome.relay_only;
    log(`joined as party ${welcome.pid} of ${welcome.parties}`);
    history.replaceState(null, '', `${location.pathname}?role=${welcome.pid}`); // a reload: the same place
    if (page.sessionId && page.signaling) keepPlace(page.sessionId, welcome.pid, page.signaling.joining.resume);
    if (page.returned) showReturned();
    if (!page.lacks.length) page.chatView?.open();
    updateButtons();
    renderRoster();
  },
  join_failed({ code, message }) {
    log(`the server reports ${code}: ${message}`);
    if (lobby.phase === 'lobby') { // joining again after a lost connection: the place is gone
      page.reconnecting = false;
      page.relay?.tell({ type: 'signaling-ended', reason: message });
      fail('title.disconnected', message);
      page.signaling?.close();
      return;
    }
    if (code === 'role_taken' && lobby.go('placeTaken')) {
      showError(message);
      page.signaling?.close();
      page.session?.members.push({ pid: page.askedRole });
      choosePlace(join);
      return;
    }
    const status = code === 'session_full' ? 'title.session_full'
      : code === 'unknown_session' ? 'title.no_such_session'
        : code === 'bad_token' ? 'title.wrong_link'
        : code === 'session_expired' ? 'title.session_closed' : 'title.could_not_join';
    fail(status, message);
    page.signaling?.close();
    if (code === 'session_expired' && page.sessionId) {
      closedSettings(page.sessionId).then((settings) => offerAgain(settings, page.askedRole));
    }
  },
  reconnect({ attempt, delay }) {
    const sentences = /** @type {Sentences} */ (page.sentences);
    log(`lost the connection to the session server; reconnecting in ${delay} s (attempt ${attempt})`);
    // A round that runs goes on over the links, and says nothing of it; a page that
    // stopped says nothing more.
    if (!lobby.in('lobby', 'done', 'again')) return;
    page.reconnecting = true;
    // The status line is the live region: the person hears that the page is on it.
    setStatus(sentences.say('reconnect.lost', { attempt }));
    renderRoster();
  },
  reconnected({ pid, started }) {
    const sentences = /** @type {Sentences} */ (page.sentences);
    const back = sentences.say('reconnect.back', { who: sentences.place(pid, client()?.welcome?.labels?.[pid] ?? '') });
    log(back);
    page.reconnecting = false;
    if (started) {
      // The server holds this party not ready (client.js): it says so again, and the next
      // round makes all its links anew.
      lobby.ready = false;
      if (lobby.in('done', 'again')) {
        ui.againHelp.hidden = false;
        ui.againHelp.textContent = sentences.say('reconnect.again_help');
        setStatus(back, 'ok');
      }
    } else {
      setStatus(back, 'ok'); // the roster that follows says where the session stands
    }
    updateButtons();
    renderRoster();
  },
  check_program() {
    checkFingerprint();
  },
  program_ok() {
    ui.fingerprintCheck.textContent = say('session.fingerprint_matches');
    ui.fingerprintCheck.classList.remove('problem');
    if (lobby.running) runInWorker(); // the round started while the code was being checked
  },
  session_ok() {
    log('the session is as its creator chose it (the sealed description matches)');
    if (lobby.running) runInWorker();
  },
  roster({ roster }) {
    const me = client()?.welcome?.pid;
    if (me !== undefined) ui.pid.textContent = partyName(me, { you: false });
    // So that an error about a party can say who that is.
    page.relay?.tell({
      type: 'names',
      members: roster.members.map((/** @type {Record<string, any>} */ { pid, name, label }) => ({ pid, name, label })),
      labels: client()?.welcome?.labels ?? [], // as sealed by the creator, checked
    });
    if (lobby.in('done', 'again')) {
      const gone = roster.members.filter((/** @type {{state: string}} */ m) => m.state === 'left')
        .map((/** @type {{pid: number}} */ m) => m.pid);
      // Back in its place (a reload): its links went with its page (resume.js).
      const back = roster.members.filter((/** @type {{state: string, pid: number}} */ m) => !['left', 'reconnecting'].includes(m.state)
        && page.departed.has(m.pid)).map((/** @type {{pid: number}} */ m) => m.pid);
      for (const m of roster.members) {
        if (['left', 'reconnecting'].includes(m.state)) page.departed.add(m.pid);
      }
      if (gone.length) {
        cannotRunAgain(say('again.left', { who: partyName(gone[0], { you: false }) }));
        for (const pid of gone) page.links.get(pid)?.close();
      } else if (back.length) {
        for (const pid of back) page.departed.delete(pid);
        ui.againHelp.hidden = false;
        ui.againHelp.textContent = (/** @type {Sentences} */ (page.sentences)).say('reconnect.peer_back', { who: partyName(back[0], { you: false }) });
        ui.runAgain.disabled = false;
        updateButtons();
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
  identity(event) {
    verifiedIdentity(event).catch((error) => log(`could not show party ${event.peer}'s key: ${describe(error)}`));
  },
  chat(event) {
    page.chatView?.received(event);
  },
  chat_out({ payload }) {
    page.chatView?.sent(String(payload.text), page.identity?.fingerprint ?? '');
  },
  chat_refused({ message }) {
    page.chatView?.refused(message);
  },
  unexpected({ peer, kind, expected }) {
    log(`party ${peer} sent an ${kind} while ${expected ? `an ${expected}` : 'nothing more'} was due; ignored`);
  },
  peer_left({ peer }) {
    if (lobby.running) page.relay?.tell({ type: 'peer-left', peer });
  },
  peer_away({ peer }) {
    if (lobby.running) page.relay?.tell({ type: 'peer-away', peer });
  },
  server_error({ code, message }) {
    log(`the server reports ${code}: ${message}`);
    if (code === 'session_expired') {
      page.relay?.tell({ type: 'signaling-ended', reason: message });
      if (lobby.in('lobby', 'joining')) fail('title.session_closed', message);
      if (!lobby.running) offerAgain(page.session?.settings, client()?.welcome?.pid ?? null);
    } else if (code === 'server_shutting_down') {
      // The client core chose the words (client.js): the session is gone before the
      // start; after it, links already open carry the computation to its end.
      page.relay?.tell({ type: 'signaling-ended', reason: message });
      if (lobby.in('lobby', 'joining')) fail('title.server_shutting_down', message);
      else if (!lobby.in('failed')) cannotRunAgain(message);
    } else if (code === 'party_left') {
      lobby.ready = false;
      cannotRunAgain(message);
    } else if (!lobby.in('done', 'failed')) {
      showError(message);
    }
  },
  tampered({ message }) {
    // Someone interfered: stop at once, connect to nobody, and say so.
    page.relay?.tell({ type: 'signaling-ended', reason: message });
    for (const pid of page.links.keys()) {
      page.relay?.tell({ type: 'peer-failed', peer: pid, reason: message });
    }
    fail('title.tampering', message);
    page.chatView?.close(message);
    closeEverything();
  },
  unreadable({ message }) {
    fail('title.failed', say('join.unreadable', { message }));
  },
  closed({ message }) {
    page.reconnecting = false;
    if (message && lobby.phase === 'lobby') { // it gave up reconnecting
      page.relay?.tell({ type: 'signaling-ended', reason: message });
      fail('title.disconnected', message);
    } else if (lobby.phase === 'joining') {
      fail('title.could_not_join', say('join.closed_before_join'));
    } else if (lobby.phase === 'lobby' && page.lacks.length) {
      log('the connection to the session server closed; this page no longer holds a place');
    } else if (lobby.phase === 'lobby') {
      page.relay?.tell({ type: 'signaling-ended', reason: say('join.server_lost') });
      fail('title.disconnected', say('join.lost_before_start'));
    } else if (lobby.running) {
      log('the connection to the session server closed; the computation goes on directly between the parties');
    } else if (lobby.in('done', 'again')) {
      cannotRunAgain(message || say('again.server_closed'));
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
  if (lobby.phase === 'done') { // who wants to run again, else the result's status
    setStatus(RosterView.againWords(rosterFacts()) ?? (page.resultCard.doneText || say('status.done')), 'ok');
    return;
  }
  const roster = client()?.roster;
  if (!roster || !lobby.in('lobby', 'again') || page.lacks.length) return;
  if (page.returned && !lobby.ready) {
    setStatus(returnedStatus(/** @type {any} */ (roster)), 'ok');
    return;
  }
  const me = client()?.welcome?.pid;
  const present = roster.members.filter((/** @type {{state: string}} */ m) => m.state !== 'left');
  const missing = roster.parties - present.length;
  const waiting = present.filter((/** @type {{ready: boolean, pid: number}} */ m) => !m.ready && m.pid !== me).length;
  // A party whose browser cannot take part holds its place: no start until it is replaced.
  const stuck = present.find((/** @type {{state: string}} */ m) => m.state === 'unsupported');
  if (stuck && lobby.phase === 'lobby') {
    setStatus(say('status.waiting_unsupported', { who: partyName(stuck.pid, { you: false }) }));
  } else if (missing > 0 && lobby.phase === 'lobby') {
    setStatus(sayCount('status.waiting_join', missing));
  } else if (!lobby.ready) {
    setStatus(say(lobby.phase === 'again' ? 'status.run_again' : 'status.everyone_here'), 'ok');
  } else if (waiting > 0) {
    setStatus(sayCount('status.waiting_ready', waiting, {
      button: say(lobby.phase === 'again' || page.returned ? 'button.ready_again' : 'button.ready'),
    }));
  } else {
    setStatus(say('status.starting'));
  }
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
  page.confirmedInput = page.input?.value || null; // what the round runs with
  lobby.ready = true;
  updateButtons();
  renderRoster();
});

ui.acceptNoPrivacy.addEventListener('change', updateButtons);

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
  ui.againHelp.textContent = say('again.help');
  setStatus(say('status.run_again'), 'ok');
  updateButtons();
  ui.me.scrollIntoView({ behavior: 'smooth', block: 'center' });
});

// -- back after a reload (resume.js) ---------------------------------------------------------

/**
 * This party is back in its place after a reload after the start: the computation of that
 * page is gone with it. Show the last result the tab kept and who is still there; the
 * person may run again with the others (the next round makes new links: client.js relink).
 */
function showReturned() {
  const kept = page.sessionId ? lastResult(page.sessionId) : null;
  log(`back in this session after a reload${kept ? `; showing the result of round ${kept.round}` : ''}`);
  ui.resultCard.hidden = false;
  ui.runAgain.hidden = true;
  if (kept) {
    if (kept.result) {
      renderResult(ui.result, kept.result);
      ui.result.hidden = false;
    }
    ui.output.textContent = kept.output;
    ui.outputBox.open = !kept.result;
    const when = new Date(kept.at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    ui.elapsed.textContent = say('returned.result', { round: kept.round, time: when });
  } else {
    ui.result.hidden = true;
    ui.output.textContent = '';
    ui.elapsed.textContent = say('returned.no_result');
  }
  ui.againHelp.hidden = false;
  ui.againHelp.textContent = say('returned.help');
  updateButtons();
  refreshLobbyStatus();
}

/**
 * Who is still in the session, for a party back after a reload.
 * @param {{members: {pid: number, state: string}[], parties: number}} roster
 */
function returnedStatus(roster) {
  const me = client()?.welcome?.pid;
  const others = roster.members.filter((m) => m.pid !== me);
  const here = others.filter((m) => !['left', 'reconnecting'].includes(m.state));
  const names = here.map((m) => partyName(m.pid, { you: false }));
  const all = here.length === roster.parties - 1;
  const who = names.length === 0 ? say('returned.none_here')
    : all ? say('returned.all_here', { names: names.join(', ') })
      : say('returned.some_here', {
        here: sayCount('returned.still_here', names.length, { names: names.join(', ') }),
        left: sayCount('returned.others_left', roster.parties - 1 - here.length),
      });
  return say(all ? 'returned.status_all' : 'returned.status', { who });
}

// -- a round: connect (first round only) and run the program --------------------------------

/** @param {number} round */
function beginRound(round) {
  page.traffic = null;
  page.resultCard.begin(round); // the last round's result goes into the history
  updateButtons();
  ui.againHelp.hidden = true;
  ui.runAgain.hidden = true;
  ui.resultCard.hidden = false;
  ui.result.hidden = true;
  ui.output.textContent = '';
  ui.outputBox.open = true;
  showError('');
  setStatus(say(round === 1 || page.returned ? 'status.connecting' : 'status.running_again'));
  showRoundStart(); // on a phone, "I'm ready" was far below: the news is up here
  startTimer();
  page.returned = false;
  if (round === 1 || !page.running) { // also this page's first round after a reload
    // Nothing runs before the code is known to be the link's; the links come with the
    // client's `connect` events, which wait for that too.
    if (client()?.checked) runInWorker();
  } else {
    // After this start's other events: a link made anew to a party back after a reload
    // (client.js relink) must be in the worker's inbox before its round looks for channels.
    const input = page.confirmedInput;
    queueMicrotask(() => worker.postMessage({ type: 'again', input }));
  }
  renderRoster();
}

/** The first round: the worker sets up MPyC and runs the checked program. */
function runInWorker() {
  const welcome = client()?.welcome;
  if (page.running || !welcome || !client()?.checked) return;
  page.running = true;
  worker.postMessage({
    type: 'run',
    config: {
      session: welcome.session,
      pid: welcome.pid,
      parties: welcome.parties,
      program: welcome.program,
      input: page.confirmedInput,
      recovery,
    },
  });
  page.relay?.tell({ type: 'start' });
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
  if (!welcome || !signaling || lobby.phase === 'failed') return;
  // A link made before: the peer came back after a reload, and this round makes it anew.
  page.links.get(peer)?.close({ quiet: true });
  const link = new PeerLink(peer, offer, welcome.ice_servers, {
    description: (pid, kind, sdp) => signaling.localDescription(pid, kind, sdp),
    candidate: (pid, { candidate, sdpMid, sdpMLineIndex }) => signaling.localCandidate(pid, { candidate, sdpMid, sdpMLineIndex }),
    channel: (pid, channel, opened) => page.relay?.add(pid, channel, opened),
    chat: (pid, payload) => page.signaling?.chatReceived(pid, payload),
    failed: (pid, reason) => page.relay?.tell({ type: 'peer-failed', peer: pid, reason }),
    changed: linkChanged,
    log,
  }, { relayOnly: Boolean(welcome.relay_only), ordered: !recovering });
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

init().catch((error) => {
  console.error(error);
  fail('title.failed', say('join.could_not_start', { reason: describe(error) }));
});
