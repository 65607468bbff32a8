// Small helpers shared by the pages (create.html and join.html).

/** The element with this data-testid (the pages' stable hooks, see web/README.md). */
export const byTestId = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);

export function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

/** JSON from the session server, or an Error whose message is for a person. */
export async function fetchJson(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: { Accept: 'application/json', ...options.headers } });
  } catch {
    throw new Error(`Could not reach the session server at ${location.host}. Check your network connection and try again.`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // an answer that is not JSON: described below
  }
  if (!response.ok) {
    const error = new Error(body?.message
      || `The session server answered ${response.status} ${response.statusText}; try again in a moment.`);
    error.code = body?.code;
    throw error;
  }
  return body;
}

/** Python source as highlighted HTML (Prism, served from /vendor/, loaded by the page). */
export function highlightPython(source) {
  const prism = globalThis.Prism;
  if (prism?.languages?.python) return prism.highlight(source, prism.languages.python, 'python');
  const escaped = document.createElement('span');
  escaped.textContent = source;
  return escaped.innerHTML;
}

/** Show ``source`` read-only, highlighted, in a <pre><code> element. */
export function showCode(codeElement, source) {
  codeElement.innerHTML = highlightPython(source);
}

/** Copy text to the clipboard; falls back to selecting it in ``input`` for Ctrl+C. */
export async function copyText(text, input) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    input?.select();
    return false;
  }
}
