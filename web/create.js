// @ts-check
// The create page: choose a program (or write one), the parties and their labels, the keys
// places are kept for (pins), create the session with POST /api/sessions, and go to its
// lobby (join.html) as the chosen party.

import { CodeJar } from '/vendor/codejar/dist/codejar.js';
import { takeKeptSettings } from './again.js';
import { byTestId as el, fetchJson, highlightPython, showCode } from './common.js';
import { addExplainer } from './explainer.js';
import { loadOrCreate, publicKey } from './identity.js';
import {
  CANNOT_LOAD, fillPage, loadSentences, say, Sentences, sentences, useSentences,
} from './sentences.js';
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
 * @property {string[]} [pins] per place, the did:key it is kept for, or ''
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
  pins: el('pins'),
  pinsBox: /** @type {HTMLDetailsElement} */ (el('pins-box')),
  myIdentity: el('my-identity'),
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
  /** @type {string | null} this browser's did:key, to keep a place for oneself */
  did: null,
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
  groups.set(say('create.group_own'), [{
    name: OWN, title: say('create.own_title'), summary: say('create.own_summary'),
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
        // The program's label speaks to the person entering (the server's words, "Your
        // salary"); here it is said of each party, as the table's create.asks_their says.
        asks.textContent = program.input.kind === 'none' ? say('create.asks_nothing')
          : say('create.asks', { what: program.input.label.replace(/^Your /, say('create.asks_their')) });
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

/**
 * Tab indents in the editor (as in any code editor), so a keyboard alone could not leave it:
 * after Escape, the next Tab (or Shift+Tab) moves the focus on instead. The listener is on
 * the editor's box, in the capture phase, so it comes before the editor's own.
 * @param {HTMLElement} box
 * @param {HTMLElement} editor
 */
function leaveWithEscapeTab(box, editor) {
  let leaving = false;
  box.addEventListener('keydown', (event) => {
    if (event.target !== editor) return;
    if (['Shift', 'Control', 'Alt', 'Meta'].includes(event.key)) return; // Shift+Tab, say
    if (event.key === 'Tab' && leaving) event.stopPropagation();
    leaving = event.key === 'Escape';
  }, true);
  editor.addEventListener('blur', () => { leaving = false; });
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
      leaveWithEscapeTab(ui.editorBox, ui.editor);
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
    ui.countHelp.textContent = say('create.count_wrong', { min: state.min, max: state.max });
    ui.countHelp.classList.add('problem');
    ui.count.setAttribute('aria-invalid', 'true');
    return null;
  }
  ui.countHelp.textContent = say('create.count_help', { min: state.min, max: state.max });
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
    input.placeholder = say('place.default', { number: pid + 1 }); // people count parties from 1
    input.setAttribute('aria-label', say('create.label_for', { number: pid + 1 }));
    input.value = old[pid] ?? '';
    input.setAttribute('aria-describedby', `label-help-${pid}`);
    input.addEventListener('input', () => {
      renderRoles();
      pinLabels();
      update();
    });
    // Said at the field as it is typed: the server refuses two places with one name.
    const help = document.createElement('p');
    help.className = 'help problem';
    help.id = `label-help-${pid}`;
    help.dataset.testid = `label-help-${pid}`;
    help.hidden = true;
    row.append(input, help);
    rows.push(row);
  }
  ui.labels.replaceChildren(...rows);
  renderPins(n);
  renderRoles();
  checkLabels();
}

/**
 * Say at each field whose name an earlier place already has that each place needs its
 * own (spaces count as the server counts them: runs of them are one).
 * @returns {boolean} whether every name is free of another place's
 */
function checkLabels() {
  /** @type {Map<string, number>} */
  const seen = new Map();
  let fine = true;
  ui.labels.querySelectorAll('li').forEach((/** @type {HTMLElement} */ row, /** @type {number} */ pid) => {
    const input = /** @type {HTMLInputElement} */ (row.querySelector('input'));
    const help = /** @type {HTMLElement} */ (row.querySelector('.help'));
    const name = input.value.trim().split(/\s+/).join(' ');
    const first = name ? seen.get(name) : undefined;
    if (name && first === undefined) seen.set(name, pid);
    const problem = first === undefined ? ''
      : say('create.label_twice', { name });
    help.textContent = problem;
    help.hidden = !problem;
    input.setAttribute('aria-invalid', problem ? 'true' : 'false');
    if (problem) fine = false;
  });
  return fine;
}

/**
 * One field per place for the key it is kept for, checked as typed.
 * @param {number} n
 */
function renderPins(n) {
  const old = [...ui.pins.querySelectorAll('input')].map((input) => input.value);
  const rows = [];
  for (let pid = 0; pid < n; pid += 1) {
    const row = document.createElement('li');
    const label = document.createElement('label');
    label.htmlFor = `pin-${pid}`;
    label.dataset.testid = `pin-label-${pid}`;
    const line = document.createElement('div');
    line.className = 'input-row';
    const input = document.createElement('input');
    input.type = 'text';
    input.id = `pin-${pid}`;
    input.maxLength = 100;
    input.spellcheck = false;
    input.autocomplete = 'off';
    input.dataset.testid = `pin-${pid}`;
    input.placeholder = 'did:key:z6Mk…';
    input.value = old[pid] ?? '';
    const help = document.createElement('p');
    help.className = 'help';
    help.id = `pin-help-${pid}`;
    help.dataset.testid = `pin-help-${pid}`;
    help.setAttribute('aria-live', 'polite');
    input.setAttribute('aria-describedby', help.id);
    input.addEventListener('input', () => {
      checkPins();
      update();
    });
    const mine = document.createElement('button');
    mine.type = 'button';
    mine.className = 'secondary';
    mine.textContent = say('create.me');
    mine.title = say('create.me_title');
    mine.dataset.testid = `pin-mine-${pid}`;
    mine.hidden = !state.did;
    mine.addEventListener('click', () => {
      input.value = state.did ?? '';
      checkPins();
      update();
    });
    line.append(input, mine);
    row.append(label, line, help);
    rows.push(row);
  }
  ui.pins.replaceChildren(...rows);
  pinLabels();
  checkPins();
}

/** Each key field is named after its place, as the labels say it now. */
function pinLabels() {
  const names = labels();
  ui.pins.querySelectorAll('label').forEach((label, pid) => {
    label.textContent = say('create.pin_label', {
      place: say(names[pid] ? 'roster.party_labelled' : 'place.plain', { label: names[pid], number: pid + 1 }),
    });
  });
}

/**
 * Check every key typed: '' or a did:key, no key for two places. Says what is wrong
 * under the field.
 * @returns {boolean} whether all are fine
 */
function checkPins() {
  let fine = true;
  /** @type {Map<string, number>} */
  const seen = new Map();
  ui.pins.querySelectorAll('li').forEach((row, pid) => {
    const input = /** @type {HTMLInputElement} */ (row.querySelector('input'));
    const help = /** @type {HTMLElement} */ (row.querySelector('.help'));
    const did = input.value.trim();
    let problem = '';
    if (did) {
      try {
        publicKey(did);
      } catch (error) {
        problem = say('create.pin_not_key', { reason: /** @type {Error} */ (error).message });
      }
      if (!problem && seen.has(did)) problem = say('create.pin_twice', { number: Number(seen.get(did)) + 1 });
      // The creator goes to the place chosen under "You take part as": kept for another
      // key, it would refuse them.
      if (!problem && state.did && did !== state.did && String(pid) === ui.role.value) {
        problem = say('create.pin_not_mine');
      }
      seen.set(did, pid);
    }
    help.textContent = problem || (did ? say(did === state.did ? 'create.pin_mine' : 'create.pin_only') : '');
    help.classList.toggle('problem', Boolean(problem));
    input.setAttribute('aria-invalid', problem ? 'true' : 'false');
    if (problem) fine = false;
  });
  return fine;
}

/** @returns {string[]} per place, the key it is kept for or '' */
function pins() {
  return [...ui.pins.querySelectorAll('input')].map((input) => input.value.trim());
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
    option.textContent = say(label ? 'roster.party_labelled' : 'roster.party', { label, number: pid + 1 });
    return option;
  });
  ui.role.replaceChildren(...options);
  ui.role.value = String(Math.min(current, options.length - 1));
}

function update() {
  const namesFine = checkLabels();
  ui.create.disabled = !(chosen() && partyCount() !== null && checkPins() && namesFine);
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
  const kept = pins();
  if (kept.some(Boolean)) body.pins = kept;
  return body;
}

ui.role.addEventListener('change', update);

ui.count.addEventListener('input', () => {
  renderPlaces();
  update();
});

ui.form.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (ui.create.disabled) return;
  showError('');
  ui.create.disabled = true;
  ui.create.textContent = say('create.creating');
  try {
    if (!globalThis.crypto?.subtle) {
      throw new Error(say('join.needs_https')); // shown under the button
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
      // Always one per place ('' for a place kept for nobody), as every party compares it
      // with the server's word.
      pins: Array.from({ length: body.parties ?? 0 }, (_, pid) => body.pins?.[pid] ?? ''),
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
    ui.create.textContent = say('create.create');
    update();
  }
});

async function init() {
  try {
    await loadSentences(fetchJson);
    fillPage(document); // the static text, in the table's words
  } catch (error) {
    useSentences(new Sentences(CANNOT_LOAD)); // nothing else can be said in its words
    ui.list.replaceChildren();
    showError(say('create.load_failed', { reason: /** @type {Error} */ (error).message }));
    return;
  }
  try {
    const [library, protocol, config] = await Promise.all([
      fetchJson('/api/programs'), fetchJson('/api/protocol'), fetchJson('/api/config'),
    ]);
    ui.relayOnly.disabled = !config.relay;
    ui.relayHelp.textContent = say(config.relay ? 'create.relay_help' : 'create.no_relay_help');
    state.library = library;
    state.min = protocol.parties.min;
    state.max = protocol.parties.max;
    ui.count.min = String(state.min);
    ui.count.max = String(state.max);
  } catch (error) {
    ui.list.replaceChildren();
    showError(say('create.load_failed', { reason: /** @type {Error} */ (error).message }));
    return;
  }
  renderLibrary();
  renderPlaces();
  // "Create it again with the same settings" on a closed session's page (again.js).
  const kept = new URLSearchParams(location.search).has('again') ? takeKeptSettings() : null;
  if (kept) fillIn(kept.settings, kept.role);
  update();
  showIdentity();
}

/**
 * Fill the form with the settings of a session that closed, to create it again.
 * @param {import('./again.js').Settings} settings
 * @param {number | null} role the place the person had
 */
function fillIn(settings, role) {
  const own = typeof settings.source === 'string';
  const radio = /** @type {HTMLInputElement | null} */ (ui.list.querySelector(
    `input[name="program"][value="${CSS.escape(own ? OWN : settings.program)}"]`));
  if (!radio) return; // a program this server does not have: the form stays as it is
  radio.checked = true;
  programChanged();
  if (own) state.jar?.updateCode(/** @type {string} */ (settings.source));
  ui.count.value = String(settings.parties);
  renderPlaces();
  ui.labels.querySelectorAll('input').forEach((input, pid) => {
    input.value = settings.labels?.[pid] ?? '';
  });
  ui.pins.querySelectorAll('input').forEach((input, pid) => {
    input.value = settings.pins?.[pid] ?? '';
  });
  if ((settings.pins ?? []).some(Boolean)) ui.pinsBox.open = true;
  renderRoles();
  pinLabels();
  if (role !== null && role >= 0 && role < settings.parties) ui.role.value = String(role);
  checkPins();
  ui.args.value = (settings.args ?? []).join(' ');
  ui.relayOnly.checked = Boolean(settings.relay_only) && !ui.relayOnly.disabled;
  ui.noPrivacy.checked = Boolean(settings.no_privacy);
  const advanced = /** @type {HTMLDetailsElement | null} */ (ui.form.querySelector('details.advanced'));
  if (advanced && (ui.args.value || ui.noPrivacy.checked || ui.relayOnly.checked)) advanced.open = true;
  const note = document.createElement('p');
  note.className = 'help';
  note.dataset.testid = 'again-note';
  note.setAttribute('role', 'status');
  note.textContent = say('create.filled_in');
  ui.form.prepend(note);
}

/** "You are ...", and a "Me" button by each key field: this browser's own key. */
async function showIdentity() {
  try {
    const { identity } = await loadOrCreate();
    state.did = identity.did;
    ui.myIdentity.textContent = say('identity.yours', { identity: identity.did, fingerprint: identity.fingerprint });
    ui.myIdentity.hidden = false;
    ui.pins.querySelectorAll('button').forEach((button) => { button.hidden = false; });
    checkPins();
  } catch {
    // No Ed25519 or no IndexedDB here: places can still be kept for others' keys.
  }
}

// "How does this keep my input secret?", as the lobby explains it (without it the page works).
init().then(() => addExplainer(document.querySelector('header'), sentences())).catch(() => {});
