// @ts-check
// The create page: choose a program (or write one), the parties and their labels, create
// the session with POST /api/sessions, and go to its lobby (join.html) as the chosen party.

import { CodeJar } from '/vendor/codejar/dist/codejar.js';
import { byTestId as el, fetchJson, highlightPython, showCode } from './common.js';
import {
  joinToken, newSecret, programHash, sealDescriptor, toFragment,
} from './sealing.js';

/**
 * @typedef {object} Choice one entry of the program library as the page lists it
 * @property {string} name
 * @property {string} title
 * @property {string} summary
 * @property {{kind: string, label: string}} [input] what each party enters (more fields:
 * InputSpec.to_json in mpyc_webrtc/programs)
 */
/** @typedef {Choice & {group: string, source: string}} Program a built-in program (GET /api/programs) */
/**
 * @typedef {object} SessionRequest the body of POST /api/sessions, without the token's hash
 * @property {number | null} parties
 * @property {string[]} args
 * @property {string | null} [program] a built-in program's name, or "program.py" with ``source``
 * @property {string} [source]
 * @property {string[]} [labels]
 * @property {boolean} [relay_only]
 * @property {boolean} [no_privacy] the creator allows less than full privacy
 */

const ui = {
  form: el('create-form'),
  list: el('program-list'),
  preview: el('program-preview'),
  previewBox: el('program-preview-box'),
  editorBox: el('editor-box'),
  editor: el('source-editor'),
  count: /** @type {HTMLInputElement} */ (el('parties-count')),
  countHelp: el('parties-help'),
  labels: el('labels'),
  role: /** @type {HTMLSelectElement} */ (el('my-role')),
  args: /** @type {HTMLInputElement} */ (el('program-args')),
  relayOnly: /** @type {HTMLInputElement} */ (el('relay-only')),
  noPrivacy: /** @type {HTMLInputElement} */ (el('no-privacy')),
  relayHelp: el('relay-only-help'),
  create: /** @type {HTMLButtonElement} */ (el('create')),
  error: el('create-error'),
};

const OWN = '(own)';
const STARTER = `"""Every party enters a whole number; everyone learns only the sum."""
import sys

from mpyc.runtime import mpc

# Each party's private input arrives as --input=VALUE (none given: 0).
value = next((int(a.split('=', 1)[1]) for a in sys.argv if a.startswith('--input=')), 0)

secint = mpc.SecInt(32)
mpc.run(mpc.start())
inputs = mpc.input(secint(value))  # a list: one secret-shared number per party
total = mpc.run(mpc.output(mpc.sum(inputs)))
print('The sum of all inputs is', total)
mpc.run(mpc.shutdown())
`;

const state = {
  /** @type {Program[]} */
  library: [],
  min: 2,
  max: 32,
  /** @type {ReturnType<typeof CodeJar> | null} */
  jar: null,
};

/** @returns {string | null} */
function chosen() {
  return /** @type {HTMLInputElement | null} */ (
    ui.list.querySelector('input[name="program"]:checked'))?.value ?? null;
}

/** @param {string} text */
function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = !text;
}

function renderLibrary() {
  /** @type {Map<string, Choice[]>} */
  const groups = new Map();
  for (const program of state.library) {
    if (!groups.has(program.group)) groups.set(program.group, []);
    /** @type {Choice[]} */ (groups.get(program.group)).push(program);
  }
  groups.set('Your own', [{
    name: OWN, title: 'Your own MPyC program', summary: 'Write or paste MPyC code; every party runs exactly this code.',
  }]);
  const parts = [];
  for (const [group, programs] of groups) {
    const box = document.createElement('fieldset');
    box.className = 'program-group';
    const legend = document.createElement('legend');
    legend.textContent = group;
    box.append(legend);
    for (const program of programs) {
      const label = document.createElement('label');
      label.className = 'program-choice';
      const radio = document.createElement('input');
      radio.type = 'radio';
      radio.name = 'program';
      radio.value = program.name;
      radio.dataset.testid = `program-choice-${program.name === OWN ? 'own' : program.name}`;
      const text = document.createElement('span');
      const title = document.createElement('strong');
      title.textContent = program.title;
      const summary = document.createElement('span');
      summary.className = 'summary';
      summary.textContent = program.summary;
      text.append(title, summary);
      if (program.input) {
        const asks = document.createElement('span');
        asks.className = 'asks';
        asks.textContent = program.input.kind === 'none' ? 'Nobody enters anything.'
          : `Each party enters: ${program.input.label.replace(/^Your /, 'their ')}.`;
        text.append(asks);
      }
      label.append(radio, text);
      box.append(label);
    }
    parts.push(box);
  }
  ui.list.replaceChildren(...parts);
  ui.list.querySelector('input[value="average"]')?.setAttribute('checked', '');
  ui.list.addEventListener('change', programChanged);
  programChanged();
}

function programChanged() {
  const name = chosen();
  const own = name === OWN;
  ui.editorBox.hidden = !own;
  ui.previewBox.hidden = own;
  if (own) {
    if (!state.jar) {
      state.jar = CodeJar(ui.editor, (editor) => {
        editor.innerHTML = highlightPython(editor.textContent);
      }, { tab: '    ' });
      state.jar.updateCode(STARTER);
    }
  } else {
    const program = state.library.find((p) => p.name === name);
    if (program) showCode(ui.preview, program.source);
  }
  update();
}

/**
 * Number of parties typed, or null with the reason shown.
 * @returns {number | null}
 */
function partyCount() {
  const text = ui.count.value.trim();
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < state.min || n > state.max) {
    ui.countHelp.textContent = `The number of parties must be a whole number from ${state.min} to ${state.max}.`;
    ui.countHelp.classList.add('problem');
    ui.count.setAttribute('aria-invalid', 'true');
    return null;
  }
  ui.countHelp.textContent = `${state.min} to ${state.max} people or organisations, counting you.`;
  ui.countHelp.classList.remove('problem');
  ui.count.setAttribute('aria-invalid', 'false');
  return n;
}

function renderPlaces() {
  const n = partyCount();
  if (n === null) return;
  const old = [...ui.labels.querySelectorAll('input')].map((input) => input.value);
  const rows = [];
  for (let pid = 0; pid < n; pid += 1) {
    const row = document.createElement('li');
    const input = document.createElement('input');
    input.type = 'text';
    input.maxLength = 40;
    input.dataset.testid = `label-${pid}`;
    input.placeholder = `Party ${pid}`;
    input.setAttribute('aria-label', `Name for party ${pid}`);
    input.value = old[pid] ?? '';
    input.addEventListener('input', renderRoles);
    row.append(input);
    rows.push(row);
  }
  ui.labels.replaceChildren(...rows);
  renderRoles();
}

/** @returns {string[]} */
function labels() {
  return [...ui.labels.querySelectorAll('input')].map((input) => input.value.trim());
}

function renderRoles() {
  const current = Number(ui.role.value || 0);
  const options = labels().map((label, pid) => {
    const option = document.createElement('option');
    option.value = String(pid);
    option.textContent = label ? `${label} (party ${pid})` : `Party ${pid}`;
    return option;
  });
  ui.role.replaceChildren(...options);
  ui.role.value = String(Math.min(current, options.length - 1));
}

function update() {
  ui.create.disabled = !(chosen() && partyCount() !== null);
}

/** @returns {SessionRequest} */
function request() {
  const name = chosen();
  /** @type {SessionRequest} */
  const body = { parties: partyCount(), args: ui.args.value.trim().split(/\s+/).filter(Boolean) };
  if (name === OWN) {
    body.source = state.jar ? state.jar.toString() : '';
    body.program = 'program.py';
  } else {
    body.program = name;
  }
  const named = labels();
  if (named.some(Boolean)) body.labels = named;
  if (ui.relayOnly.checked) body.relay_only = true;
  if (ui.noPrivacy.checked) body.no_privacy = true;
  return body;
}

ui.count.addEventListener('input', () => {
  renderPlaces();
  update();
});

ui.form.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (ui.create.disabled) return;
  showError('');
  ui.create.disabled = true;
  ui.create.textContent = 'Creating…';
  try {
    if (!globalThis.crypto?.subtle) {
      throw new Error('This page must be opened over https:// (or on this computer, as http://127.0.0.1): browsers allow the encryption it needs only there.');
    }
    // The secret is drawn here and only travels in the link's fragment (after #), which
    // browsers never send to the server; the server gets the hash of a token made from it.
    const body = request();
    const secret = newSecret();
    const { tokenHash } = await joinToken(secret);
    const source = body.source
      ?? /** @type {Program} */ (state.library.find((p) => p.name === body.program)).source;
    const hash = await programHash(source, body.args);
    // What is chosen here, sealed: every party checks the server's word against it.
    const descriptor = await sealDescriptor(secret, {
      parties: body.parties, relay_only: Boolean(body.relay_only), labels: body.labels ?? [],
      program: hash, args: body.args,
    });
    const session = await fetchJson('/api/sessions', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ ...body, token_hash: tokenHash, descriptor }),
    });
    const role = ui.role.value || '0';
    location.assign(`/join/${encodeURIComponent(session.session)}?role=${role}#${toFragment(secret, hash)}`);
  } catch (error) {
    showError(/** @type {Error} */ (error).message);
    ui.create.textContent = 'Create the session';
    update();
  }
});

async function init() {
  try {
    const [library, protocol, config] = await Promise.all([
      fetchJson('/api/programs'), fetchJson('/api/protocol'), fetchJson('/api/config'),
    ]);
    ui.relayOnly.disabled = !config.relay;
    ui.relayHelp.textContent = config.relay
      ? 'All traffic then goes through the server\'s relay: slower, but no party learns where the others are. Your inputs stay secret either way.'
      : 'This server has no relay, so your computers connect directly and can see each other\'s network addresses. Your inputs stay secret either way.';
    state.library = library;
    state.min = protocol.parties.min;
    state.max = protocol.parties.max;
    ui.count.min = String(state.min);
    ui.count.max = String(state.max);
  } catch (error) {
    ui.list.replaceChildren();
    showError(`${/** @type {Error} */ (error).message} Reload the page to try again.`);
    return;
  }
  renderLibrary();
  renderPlaces();
  update();
}

init();
