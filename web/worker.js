// @ts-check
// The browser party's Python: Pyodide, MPyC and py_worker in a module worker.
//
// The page (join.js) talks to this worker with messages; see web/README.md for the list.
// While a program runs, Python blocks in Atomics.wait on the inbox the page writes
// (py_worker/ring.py), so what the page tells a run goes there, not here; what Python
// sends goes to the page from here with postMessage. Everything Python does is in
// py_worker/ (served in the server's Python archive); this file only loads it and passes
// messages through.

/**
 * @typedef {any} PyProxy a Python object seen from JavaScript (Pyodide's PyProxy): what its
 * attributes are and what calling them takes is Python's business, unchecked here
 */
/**
 * @typedef {object} Pyodide the part of Pyodide's API this worker uses (from the served
 * pyodide.mjs; all of it is typed in node_modules/pyodide/pyodide.d.ts)
 * @property {(options: {batched: (text: string) => void}) => void} setStdout
 * @property {(options: {batched: (text: string) => void}) => void} setStderr
 * @property {(code: string) => any} runPython
 * @property {(code: string, options?: {globals?: PyProxy}) => Promise<any>} runPythonAsync
 * @property {(buffer: ArrayBuffer, format: string, options?: {extractDir?: string}) => void} unpackArchive
 * @property {(name: string) => PyProxy} pyimport
 * @property {PyProxy} globals
 */
/** @typedef {{loadPyodide: (options: {indexURL: string}) => Promise<Pyodide>}} PyodideModule */
/** @typedef {{type: string, [field: string]: any}} Message between the page and this worker (web/README.md lists them) */
/** @typedef {{pyodide: string, python: string}} Assets the URLs of GET /api/assets */

/** The big files Pyodide fetches while it boots; their bytes make the download progress. */
const COUNTED_FILES = ['pyodide.asm.wasm', 'python_stdlib.zip'];

/** @type {Pyodide | null} */
let pyodide = null;
/** @type {PyProxy} */
let partyModule = null; // py_worker.party
/** @type {PyProxy} */
let party = null; // py_worker.party.Party of the current run

/**
 * @param {Message} message to the page
 * @param {Transferable[]} [transfer]
 */
const post = (message, transfer) => self.postMessage(message, transfer || []);

let stageStarted = performance.now();
let lastPercent = -1;

/**
 * Tell the page how far loading got, and log how long the previous stage took.
 * @param {number} percent
 * @param {string} step the stage now (the page says it: worker.step.STEP of the sentences)
 * @param {string} [previous] the stage that just ended (for the log)
 */
function progress(percent, step, previous) {
  const now = performance.now();
  if (previous) {
    post({ type: 'log', text: `worker: ${previous} took ${((now - stageStarted) / 1000).toFixed(2)} s` });
    stageStarted = now;
  }
  if (Math.round(percent) === lastPercent && !previous) return;
  lastPercent = Math.round(percent);
  post({ type: 'progress', percent: lastPercent, step });
}

/**
 * A plain-words sentence for an error thrown while loading or by Pyodide.
 * @param {any} error whatever was thrown
 * @returns {string}
 */
function describe(error) {
  const text = String((error && error.message) || error);
  // A Python exception reaching JS carries the whole traceback: keep its last line.
  const lines = text.trim().split('\n');
  return lines[lines.length - 1];
}

/**
 * Make fetch() report the bytes received of COUNTED_FILES to onProgress(fraction), by
 * passing their bodies through a counter: Pyodide downloads them once, as usual.
 * @param {string} base the URL of Pyodide's folder
 * @param {(fraction: number) => void} onProgress
 * @returns {() => void} puts the original fetch() back
 */
function countDownloads(base, onProgress) {
  const fetchFromNetwork = self.fetch.bind(self);
  /** @type {Map<string, number>} */
  const totals = new Map(); // url -> Content-Length
  /** @type {Map<string, number>} */
  const received = new Map(); // url -> bytes so far
  const report = () => {
    const total = [...totals.values()].reduce((a, b) => a + b, 0);
    const got = [...received.values()].reduce((a, b) => a + b, 0);
    // Until every counted file has answered, its size is unknown: stay below the end.
    const share = totals.size / COUNTED_FILES.length;
    onProgress(total ? Math.min(1, got / total) * share : 0);
  };
  self.fetch = async (input, init) => {
    const response = await fetchFromNetwork(input, init);
    const url = String(input instanceof Request ? input.url : input);
    const counted = COUNTED_FILES.some((name) => url === base + name);
    const size = Number(response.headers.get('Content-Length'));
    if (!counted || !response.ok || !response.body || !size) return response;
    totals.set(url, size);
    received.set(url, 0);
    const counter = new TransformStream({
      transform(chunk, controller) {
        received.set(url, /** @type {number} */ (received.get(url)) + chunk.byteLength);
        report();
        controller.enqueue(chunk);
      },
    });
    return new Response(response.body.pipeThrough(counter), {
      status: response.status, statusText: response.statusText, headers: response.headers,
    });
  };
  return () => { self.fetch = fetchFromNetwork; };
}

/** What Python asks the page to do with a data channel (py_worker/channel.py Outbox). */
const outbox = {
  /**
   * @param {number} channel
   * @param {Uint8Array | string} data a view into Python's memory, copied before it goes
   */
  send(channel, data) {
    if (typeof data === 'string') {
      post({ type: 'send', channel, data });
    } else {
      const copy = new Uint8Array(data);
      post({ type: 'send', channel, data: copy }, [copy.buffer]);
    }
  },
  /** @param {number} channel */
  close(channel) { post({ type: 'close-channel', channel }); },
  /** @param {number} channel @param {number} amount */
  low_water(channel, amount) { post({ type: 'low-water', channel, amount }); },
  /** @param {number} channel @param {number} every @param {string} text @param {number} highWater */
  keep_alive(channel, every, text, highWater) {
    post({ type: 'keep-alive', channel, every, text, highWater });
  },
};

/** @param {{assets: Assets, inbox: SharedArrayBuffer}} message */
async function load({ assets, inbox }) {
  const started = performance.now();
  stageStarted = started;
  const base = new URL(assets.pyodide, self.location.origin).href;
  progress(0, 'downloading');
  const { loadPyodide } = /** @type {PyodideModule} */ (await import(base + 'pyodide.mjs'));
  let downloaded = false;
  const downloadDone = () => {
    if (!downloaded) progress(70, 'starting', 'downloading Pyodide');
    downloaded = true;
  };
  const stopCounting = countDownloads(base, (fraction) => {
    if (fraction < 1) progress(fraction * 70, 'downloading');
    else downloadDone();
  });
  try {
    pyodide = await loadPyodide({ indexURL: base });
  } finally {
    stopCounting();
  }
  downloadDone(); // in case the sizes were unknown (no Content-Length)
  pyodide.setStdout({ batched: (text) => post({ type: 'stdout', text }) });
  pyodide.setStderr({
    batched: (text) => {
      console.log(text);
      post({ type: 'log', text });
    },
  });
  progress(85, 'loading', 'starting Pyodide');
  const archive = await fetch(new URL(assets.python, self.location.origin));
  if (!archive.ok) throw new Error(`the Python archive answered ${archive.status}`);
  const sitePackages = pyodide.runPython('import site; site.getsitepackages()[0]');
  pyodide.unpackArchive(await archive.arrayBuffer(), 'zip', { extractDir: sitePackages });
  progress(90, 'preparing', 'loading the Python archive');
  partyModule = pyodide.pyimport('py_worker.party');
  partyModule.prepare();
  partyModule.open_inbox(inbox, outbox, () => post({ type: 'ring-space' }));
  // Not needed (py_worker/loop.py); said for whoever compares browsers.
  post({ type: 'log', text: `worker: JSPI ${'Suspending' in WebAssembly ? 'present' : 'absent'} (not needed); cross-origin isolated: ${self.crossOriginIsolated}` });
  progress(100, 'ready', 'compiling MPyC');
  post({ type: 'ready', seconds: (performance.now() - started) / 1000 });
}

/** @param {{program: object, parties: number}} message the program and the number of parties as the welcome says them */
function fingerprint({ program, parties }) {
  const json = JSON.stringify(program);
  post({
    type: 'fingerprint',
    hash: partyModule.program_hash(json),
    privacy: JSON.parse(partyModule.privacy(json, parties)),
  });
}

/** @param {{id: number, program: object, text: string}} message */
function checkInput({ id, program, text }) {
  const json = JSON.stringify(program);
  const problem = partyModule.input_problem(json, text);
  const reading = problem ? null : partyModule.input_reading(json, text); // "Read as 52 000."
  post({ type: 'input-checked', id, problem: problem ?? null, reading: reading ?? null });
}

/**
 * @param {{config: {session: string, pid: number, parties: number, program: object,
 *   input: string | null, recovery: string | null}}} message
 */
function run({ config }) {
  const report = (/** @type {string} */ kind, /** @type {unknown} */ detail) => (
    post({ type: 'report', kind, detail }));
  party = partyModule.Party(JSON.stringify(config), report);
  runParty();
}

/**
 * The next round over the same channels, once every party agreed to run again.
 * @param {{input: string | null}} message
 */
function again({ input }) {
  party.again(input);
  runParty();
}

/** Run the program to its end: Python blocks this worker meanwhile (it waits on the inbox). */
function runParty() {
  const problem = party.run();
  post({ type: 'exit', problem: problem === undefined ? null : problem });
}

/** @type {Record<string, (message: any) => unknown>} */
const tasks = { load, run, again, fingerprint, 'check-input': checkInput };

self.onmessage = (event) => {
  /** @type {Message} */
  const message = event.data;
  try {
    const task = tasks[message.type];
    if (!task) throw new Error(`unknown request ${message.type}`);
    Promise.resolve(task(message)).catch((error) => fail(message.type, error));
  } catch (error) {
    fail(message.type, error);
  }
};

/**
 * @param {string} during the request that failed
 * @param {unknown} error
 */
function fail(during, error) {
  console.error(error);
  // The page says it in its words (worker.failed.* of the sentences): here only why.
  post({ type: 'failed', during, reason: describe(error) });
}
