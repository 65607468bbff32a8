// @ts-check
// What a party tells its person: the table of mpyc_webrtc/sentences.py, which the server
// serves at GET /api/sentences. Nothing is worded here; this only fills in the fields, as
// sentences.say does in Python. Every sentence the pages show comes from that table: the
// modules call say('key', fields) once the page has loaded it (loadSentences), and the
// pages' static text is marked data-say="key" and filled in by fillPage. A translation is
// another table (see ?lang= in loadSentences and web/README.md): no code changes.

/** @typedef {Record<string, string>} SentenceTable */

export class Sentences {
  /** @param {SentenceTable} table the server's /api/sentences */
  constructor(table) {
    this.table = table;
  }

  /**
   * The sentence ``key`` with its ``{name}`` fields filled in.
   * @param {string} key
   * @param {Record<string, string | number>} [fields]
   * @returns {string}
   */
  say(key, fields = {}) {
    const template = this.table[key];
    if (template === undefined) throw new Error(`no sentence '${key}'`);
    return template.replace(/\{(\w+)\}/g, (_, name) => {
      if (!(name in fields)) throw new Error(`the sentence '${key}' needs '${name}'`);
      return String(fields[name]);
    });
  }

  /**
   * ``key.one`` for a count of 1, else ``key.other``, with ``{count}`` filled in too.
   * @param {string} key
   * @param {number} count
   * @param {Record<string, string | number>} [fields]
   * @returns {string}
   */
  count(key, count, fields = {}) {
    return this.say(`${key}.${count === 1 ? 'one' : 'other'}`, { ...fields, count });
  }

  /**
   * Place ``pid`` as a person reads it: ``'Bob' (party 2)`` or ``party 2`` (people count
   * parties from 1), as sentences.place does in Python.
   * @param {number | null | undefined} pid
   * @param {string} [label]
   * @returns {string}
   */
  place(pid, label = '') {
    const clean = String(label ?? '').split(/\s+/).filter(Boolean).join(' ');
    const number = typeof pid === 'number' ? pid + 1 : String(pid);
    return clean ? this.say('place.labelled', { label: clean, number })
      : this.say('place.plain', { number });
  }
}

/**
 * The few sentences a page says when the table itself (GET /api/sentences) could not be
 * loaded, or before it is (the worker may fail to start first): then nothing can be said
 * in its words, so these are kept here in English, the same words as the table's
 * (tests/test_sentence_catalogue.py holds them to it).
 * @type {SentenceTable}
 */
export const CANNOT_LOAD = {
  'title.cannot_load': 'Cannot load',
  'ended.retry': 'Or reload this page to try this link again.',
  'create.load_failed': '{reason} Reload the page to try again.',
  'server.unreachable': 'Could not reach the session server at {host}. Check your network connection and try again.',
  'server.answered': 'The session server answered {status} {text}; try again in a moment.',
  // the worker failing to start before the table is there (worker-events.js)
  'title.failed': 'Failed',
  'worker.stopped': 'The Python worker stopped: {reason}.',
  'worker.not_started': 'it could not be started in this browser',
};

/** @type {Sentences | null} the page's table, once loaded */
let current = null;

/** Where a language chosen with ``?lang=`` is kept, for the next pages (localStorage). */
export const LANGUAGE_KEY = 'mpyc-webrtc-lang';

/**
 * The language the page asks for: ``?lang=xx`` in its address (kept for the next pages;
 * ``?lang=`` forgets it), else the one kept, else the browser's own. The server answers
 * with that translation where it has one, English otherwise.
 * @returns {string}
 */
export function wantedLanguage() {
  const asked = new URLSearchParams(location.search).get('lang');
  try {
    if (asked) localStorage.setItem(LANGUAGE_KEY, asked);
    else if (asked === '') localStorage.removeItem(LANGUAGE_KEY);
    return (asked || localStorage.getItem(LANGUAGE_KEY) || navigator.language || 'en').trim();
  } catch { // no storage here (a sandboxed frame, say)
    return (asked || navigator.language || 'en').trim();
  }
}

/**
 * Load the page's table (GET /api/sentences?lang=...) and make it the one say() uses.
 * @param {(url: string) => Promise<any>} fetchJson
 * @returns {Promise<Sentences>}
 */
export async function loadSentences(fetchJson) {
  const table = await fetchJson(`/api/sentences?lang=${encodeURIComponent(wantedLanguage())}`);
  return useSentences(new Sentences(table));
}

/**
 * Make ``sentences`` the table say() uses (the page's, or a test's).
 * @param {Sentences} sentences
 * @returns {Sentences}
 */
export function useSentences(sentences) {
  current = sentences;
  if (typeof document !== 'undefined' && sentences.table['page.lang']) {
    document.documentElement.lang = sentences.table['page.lang'];
  }
  return sentences;
}

/** The page's table (loadSentences first). @returns {Sentences} */
export function sentences() {
  if (!current) throw new Error('the sentences are not loaded yet');
  return current;
}

/**
 * The page's sentence ``key`` with its fields filled in.
 * @param {string} key
 * @param {Record<string, string | number>} [fields]
 * @returns {string}
 */
export function say(key, fields) {
  return sentences().say(key, fields);
}

/**
 * The page's sentence ``key``, or CANNOT_LOAD's while the table is not loaded (what goes
 * wrong fetching the table itself is said with this).
 * @param {string} key
 * @param {Record<string, string | number>} [fields]
 * @returns {string}
 */
export function sayAnyway(key, fields) {
  return sentencesAnyway().say(key, fields);
}

/** The page's table, or CANNOT_LOAD's while it is not loaded. @returns {Sentences} */
export function sentencesAnyway() {
  return current ?? new Sentences(CANNOT_LOAD);
}

/**
 * The page's ``key.one`` or ``key.other`` for ``count``.
 * @param {string} key
 * @param {number} count
 * @param {Record<string, string | number>} [fields]
 * @returns {string}
 */
export function sayCount(key, count, fields) {
  return sentences().count(key, count, fields);
}

/** The attributes a ``data-say-ATTRIBUTE="key"`` may fill. */
const SAID_ATTRIBUTES = ['placeholder', 'aria-label', 'title', 'alt', 'content', 'value'];

/**
 * Fill the static text under ``root`` from the table: an element marked
 * ``data-say="key"`` gets the sentence as its text, ``data-say-placeholder="key"`` (and
 * aria-label, title, alt, content, value) as that attribute. A ``{name}`` in the sentence
 * is the element's child marked ``data-say-field="name"`` (a <code>, a checkbox, a <span>
 * the page fills in later), kept where the sentence puts it. The HTML keeps the English
 * text as well, so nothing flashes empty before this runs; the table's text replaces it.
 * @param {ParentNode} root
 * @param {Sentences} [table] the page's by default
 */
export function fillPage(root, table = sentences()) {
  for (const element of root.querySelectorAll('[data-say]')) {
    const key = element.getAttribute('data-say') ?? '';
    const template = table.table[key];
    if (template === undefined) throw new Error(`no sentence '${key}'`);
    const parts = template.split(/\{(\w+)\}/); // text, field, text, ...
    element.replaceChildren(...parts.map((part, i) => {
      if (i % 2 === 0) return document.createTextNode(part);
      const child = element.querySelector(`[data-say-field="${part}"]`);
      if (!child) throw new Error(`the sentence '${key}' needs '${part}'`);
      return child;
    }));
  }
  for (const name of SAID_ATTRIBUTES) {
    for (const element of root.querySelectorAll(`[data-say-${name}]`)) {
      element.setAttribute(name, table.say(element.getAttribute(`data-say-${name}`) ?? ''));
    }
  }
}
