// @ts-check
// Small helpers shared by the pages (create.html and join.html).

import { sayAnyway } from './sentences.js';

/** @typedef {Error & {code?: string}} ServerError an Error from the session server, with its
 * machine-readable ``code`` if it gave one */

/**
 * The element with this data-testid (the pages' stable hooks, see web/README.md). The pages
 * look up only hooks their HTML has, so it is typed as found; a caller that needs a particular
 * kind of element says so with a JSDoc type cast.
 * @param {string} id
 * @param {ParentNode} [root]
 * @returns {HTMLElement}
 */
export const byTestId = (id, root = document) => /** @type {HTMLElement} */ (
  root.querySelector(`[data-testid="${id}"]`));

/**
 * @param {number} n
 * @param {string} one
 * @param {string} many
 */
export function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * JSON from the session server, or a ServerError whose message is for a person.
 * @param {string} path
 * @param {RequestInit & {headers?: Record<string, string>}} [options]
 * @returns {Promise<any>}
 */
export async function fetchJson(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: { Accept: 'application/json', ...options.headers } });
  } catch {
    throw new Error(sayAnyway('server.unreachable', { host: location.host })); // for a person
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // an answer that is not JSON: described below
  }
  if (!response.ok) {
    const error = /** @type {ServerError} */ (new Error(body?.message
      || sayAnyway('server.answered', { status: response.status, text: response.statusText })));
    error.code = body?.code;
    throw error;
  }
  return body;
}

/**
 * @typedef {object} Prism the part of Prism used here (the page loads it from /vendor/prismjs/
 * as a global)
 * @property {Record<string, object | undefined>} languages
 * @property {(text: string, grammar: object, language: string) => string} highlight
 */

/**
 * Python source as highlighted HTML (Prism, served from /vendor/, loaded by the page).
 * @param {string} source
 * @returns {string}
 */
export function highlightPython(source) {
  /** @type {Prism | undefined} */
  const prism = /** @type {any} */ (globalThis).Prism;
  if (prism?.languages?.python) return prism.highlight(source, prism.languages.python, 'python');
  const escaped = document.createElement('span');
  escaped.textContent = source;
  return escaped.innerHTML;
}

/**
 * Show ``source`` read-only, highlighted, in a <pre><code> element.
 * @param {Element} codeElement
 * @param {string} source
 */
export function showCode(codeElement, source) {
  codeElement.innerHTML = highlightPython(source);
}

/**
 * Copy text to the clipboard; falls back to selecting it in ``input`` for Ctrl+C.
 * @param {string} text
 * @param {HTMLInputElement | HTMLTextAreaElement | null} [input]
 * @returns {Promise<boolean>}
 */
export async function copyText(text, input) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    input?.select();
    return false;
  }
}
