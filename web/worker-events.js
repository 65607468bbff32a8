// @ts-check
// What the worker (worker.js, Python in Pyodide) tells the page: loading progress, Python
// ready, the program's fingerprint, the input checked, the program's output, progress and
// result, and how the run ended.

import { renderResult } from './result.js';
import { bringIntoView } from './round-view.js';
import {
  appendLog, client, closeEverything, fail, lobby, log, page, renderRoster, setStatus,
  showActivity, stopTimer, ui, updateButtons, worker,
} from './page.js';
import { fingerprintOf } from './sealing.js';
import { say, sayAnyway } from './sentences.js';

worker.onmessage = (event) => {
  const message = event.data;
  const handler = fromWorker[message.type];
  if (handler) handler(message);
  else log(`unexpected message from the worker: ${message.type}`);
};

worker.onerror = (event) => {
  event.preventDefault();
  // This may come before the page has its sentences (the worker is made as the page loads).
  fail('title.failed', sayAnyway('worker.stopped', { reason: event.message || sayAnyway('worker.not_started') }));
};

/** @type {Record<string, (message: any) => void>} */
const fromWorker = {
  progress({ percent, step }) {
    if (page.workerReady) return;
    ui.progress.value = percent;
    ui.progressText.textContent = say('worker.loading', { step: say(`worker.step.${step}`), percent });
  },
  ready({ seconds }) {
    page.workerReady = true;
    const ms = performance.now() - page.openedAt;
    log(`Python and MPyC ready ${(ms / 1000).toFixed(2)} s after the page opened (worker: ${seconds.toFixed(2)} s)`);
    /** @type {any} */ (window).mpycTimings = { readyMs: ms };
    ui.progress.value = 100;
    ui.progressBox.hidden = true;
    checkFingerprint();
    checkInput();
    updateButtons();
  },
  fingerprint({ hash, privacy }) {
    // How private this session is, before anyone commits an input (Python computes it
    // from the verified number of parties and the program's arguments).
    page.privacy = privacy;
    ui.privacy.textContent = privacy.sentence;
    ui.privacy.hidden = false;
    ui.privacy.classList.toggle('problem', !privacy.full);
    ui.noPrivacyBox.hidden = privacy.full;
    updateButtons();
    // Python hashed the program this party is about to run; the link says what the
    // creator chose. Nothing connects before they agree (the client sees to that).
    if (hash !== page.link?.programHash) {
      ui.fingerprintCheck.textContent = say('session.fingerprint_differs', { fingerprint: fingerprintOf(hash) });
      ui.fingerprintCheck.classList.add('problem');
    }
    page.signaling?.programChecked(hash);
  },
  // What Python sends on a data channel; the page holds the channels (relay.js).
  send({ channel, data }) {
    page.relay?.send(channel, data);
  },
  'close-channel'({ channel }) {
    page.relay?.close(channel);
  },
  'low-water'({ channel, amount }) {
    page.relay?.lowWater(channel, amount);
  },
  'keep-alive'({ channel, every, text, highWater }) {
    page.relay?.keepAlive(channel, every, text, highWater);
  },
  'ring-space'() {
    page.relay?.ring.flush();
  },
  'input-checked'({ id, problem, reading }) {
    if (id !== page.inputCheck) return; // an answer about older text
    page.inputProblem = problem;
    page.input?.checked(problem, reading);
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
      if (lobby.go('connected')) setStatus(say('status.computing'));
      page.signaling?.status('connected');
      renderRoster();
    } else if (kind === 'traffic') {
      page.traffic = JSON.parse(detail);
      showActivity();
    } else if (kind === 'result') {
      const result = JSON.parse(detail);
      renderResult(ui.result, result);
      page.resultCard.published(result);
      ui.outputBox.open = false; // the same, as plain text
    }
  },
  exit({ problem }) {
    if (problem) {
      page.signaling?.status('failed', problem);
      fail('title.failed', problem);
      closeEverything();
    } else if (lobby.go('finished')) {
      page.signaling?.status('done');
      stopTimer('round.finished_in');
      page.progress.finished(page.traffic);
      ui.runAgain.hidden = false;
      ui.runAgain.disabled = false;
      updateButtons();
      renderRoster();
      // Where the person looks: the result, in view and focused (once the card has all it
      // shows); the headline in the status, which screen readers announce.
      setStatus(page.resultCard.finished(statusCard()), 'ok');
    }
  },
  failed({ during, reason }) {
    const message = say(['load', 'run', 'again'].includes(during) ? `worker.failed.${during}`
      : 'worker.failed.other', { reason });
    if (during === 'check-input' || during === 'fingerprint') {
      log(message);
      return;
    }
    fail(during === 'load' ? 'title.cannot_load_python' : 'title.failed', message);
    closeEverything();
  },
};

/** Have Python fingerprint the program this party will run (the welcome's). */
export function checkFingerprint() {
  const welcome = client()?.welcome;
  if (!page.workerReady || !welcome) return;
  worker.postMessage({ type: 'fingerprint', program: welcome.program, parties: welcome.parties });
}

function checkInput() {
  if (!page.workerReady || !page.input) return;
  page.inputCheck += 1;
  worker.postMessage({
    type: 'check-input', id: page.inputCheck, program: page.session?.program, text: page.input.value,
  });
}

export function inputChanged() {
  page.inputProblem = 'not checked yet';
  updateButtons();
  checkInput();
}

/** The card around the status line: brought into view when a round starts and ends. */
export function statusCard() {
  return /** @type {HTMLElement} */ (ui.status.closest('section') ?? ui.status);
}

/** A round starts: the status comes into view and takes the focus (it says what happens). */
export function showRoundStart() {
  bringIntoView(statusCard(), ui.status);
}
