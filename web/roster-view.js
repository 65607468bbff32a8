// @ts-check
// The roster as the lobby shows it: each place, who holds it and how they are doing, and
// once the parties connect, each pair's connection. The words are the shared sentences
// (member.*, pair.*), as the native peer prints them.

import { memberState, stateWords } from './client.js';
import { plural } from './common.js';

/** @typedef {import('./sentences.js').Sentences} Sentences */
/** @typedef {import('./client.js').Member} Member */

/**
 * @typedef {object} RosterFacts
 * @property {number | null} me this party's pid, once welcomed
 * @property {string[]} labels the places' names ('' where none)
 * @property {{parties: number, started: boolean, round: number, members: Member[],
 *   pairs: {a: number, b: number, state: string, path?: string | null}[]} | null} roster
 *   the server's latest roster
 * @property {number} parties
 * @property {number} joinedSoFar from the session's description, before any roster
 * @property {string} myState this party's own state (``Lobby.myState``, or ``unsupported``)
 * @property {string[]} lacks what this party's browser lacks to take part (capabilities.js)
 */

export class RosterView {
  /**
   * @param {{roster: HTMLElement, rosterSummary: HTMLElement, pairsBox: HTMLElement,
   *   pairs: HTMLElement}} ui
   * @param {Sentences} sentences
   */
  constructor(ui, sentences) {
    this.ui = ui;
    this.sentences = sentences;
  }

  /**
   * ``Party 2 · Bob — you``, or ``hospital B (party 1)``: how a party is named on the page.
   * @param {RosterFacts} facts
   * @param {number} pid
   * @param {{you?: boolean}} [options]
   */
  static partyName(facts, pid, { you = true } = {}) {
    const label = facts.labels[pid] || '';
    const member = facts.roster?.members.find((m) => m.pid === pid);
    const name = member && member.name !== `party ${pid}` ? member.name : '';
    let text = label ? `${label} (party ${pid})` : `Party ${pid}`;
    if (name) text += ` · ${name}`;
    if (you && pid === facts.me) text += ' — you';
    return text;
  }

  /**
   * A place's state: this party's own as the page knows it, the others' from the roster.
   * @param {RosterFacts} facts
   * @param {number} pid
   */
  static stateOf(facts, pid) {
    if (pid === facts.me) return facts.myState;
    const member = facts.roster?.members.find((m) => m.pid === pid);
    if (!member || !facts.roster) return 'waiting';
    return memberState(member, facts.roster.started);
  }

  /** @param {RosterFacts} facts */
  render(facts) {
    const { ui } = this;
    const { parties, roster } = facts;
    if (!parties) return;
    if (!roster) {
      ui.rosterSummary.textContent = `${plural(facts.joinedSoFar, 'party has', 'parties have')} joined so far, out of ${parties}.`;
    } else {
      const present = roster.members.filter((m) => m.state !== 'left');
      const ready = present.filter((m) => m.ready).length;
      ui.rosterSummary.textContent = roster.started ? `Round ${roster.round}.`
        : `${present.length} of ${parties} here, ${ready} ready. The computation starts when everyone is here and ready.`;
    }
    const rows = [];
    for (let pid = 0; pid < parties; pid += 1) {
      const state = RosterView.stateOf(facts, pid);
      // What a party that cannot take part lacks: this party knows its own; the others'
      // come with the roster.
      const lacks = pid === facts.me ? facts.lacks
        : roster?.members.find((m) => m.pid === pid)?.lacks;
      const row = document.createElement('li');
      row.dataset.testid = `peer-${pid}`;
      row.dataset.state = state;
      row.append(span('who', RosterView.partyName(facts, pid)),
        span('state', stateWords(state, lacks, this.sentences)));
      rows.push(row);
    }
    ui.roster.replaceChildren(...rows);
    const pairs = roster?.pairs ?? [];
    ui.pairsBox.hidden = !pairs.length;
    ui.pairs.replaceChildren(...pairs.map((pair) => {
      const item = document.createElement('li');
      item.dataset.testid = `pair-${pair.a}-${pair.b}`;
      item.dataset.state = pair.state;
      if (pair.path) item.dataset.path = pair.path;
      const words = this.sentences.say(`pair.${pair.state}`) + (pair.path ? `, ${pair.path}` : '');
      item.append(span('', `Party ${pair.a} ↔ party ${pair.b}`), span('state', words));
      return item;
    }));
  }
}

/**
 * @param {string} className
 * @param {string} text
 */
function span(className, text) {
  const element = document.createElement('span');
  if (className) element.className = className;
  element.textContent = text;
  return element;
}
