// @ts-check
// A program's Result (mpyc_webrtc/programs: Result.to_json) as a headline, facts and a table.

import { say } from './sentences.js';

/**
 * @typedef {object} Result a program's result, as Result.to_json gives it
 * @property {string} title
 * @property {string} headline the answer in one sentence
 * @property {[string, string][]} [rows] (label, value) facts
 * @property {{columns: string[], rows: string[][]} | null} [table]
 * @property {boolean} [private] whether each party got a different answer
 */

/**
 * @param {string} tag
 * @param {string} text
 */
function cell(tag, text) {
  const element = document.createElement(tag);
  element.textContent = text;
  return element;
}

/**
 * Replace ``box``'s content with ``result`` and show it.
 * @param {HTMLElement} box
 * @param {Result} result
 */
export function renderResult(box, result) {
  const parts = [];
  const headline = cell('p', result.headline);
  headline.className = 'headline';
  headline.dataset.testid = 'result-headline';
  parts.push(headline);
  if (result.private) {
    const note = cell('p', say('result.private'));
    note.className = 'help';
    parts.push(note);
  }
  if (result.rows?.length) {
    const facts = document.createElement('dl');
    facts.className = 'result-rows';
    facts.dataset.testid = 'result-rows';
    for (const [label, value] of result.rows) {
      const row = document.createElement('div');
      row.append(cell('dt', label), cell('dd', value));
      facts.append(row);
    }
    parts.push(facts);
  }
  if (result.table) {
    const table = document.createElement('table');
    table.dataset.testid = 'result-table';
    const head = document.createElement('tr');
    for (const column of result.table.columns) head.append(cell('th', column));
    table.createTHead().append(head);
    const body = table.createTBody();
    for (const values of result.table.rows) {
      const row = document.createElement('tr');
      for (const value of values) row.append(cell('td', value));
      body.append(row);
    }
    const scroller = document.createElement('div');
    scroller.className = 'table-box';
    scroller.tabIndex = 0; // it scrolls: keyboards reach it too
    scroller.append(table);
    parts.push(scroller);
  }
  box.replaceChildren(...parts);
  box.hidden = false;
}
