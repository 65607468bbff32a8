// @ts-check
// The roster as the lobby shows it: each place, who holds it and how they are doing, whose
// key is in it (verified once its peer connection is: identity.*, with what this browser
// remembers of the key: known.*), and once the parties connect, each pair's connection.
// The words are the shared sentences (member.*, pair.*, identity.*, known.*), as the native
// peer prints them.

import { memberState, stateWords } from './client.js';
import { say, sayCount } from './sentences.js';

/** @typedef {import('./sentences.js').Sentences} Sentences */
/** @typedef {import('./client.js').Member & {identity?: string | null}} Member */

/**
 * A party's key, verified: it signed its offer or answer over its own DTLS certificate
 * (the client's ``identity`` event), with what this browser remembers of it.
 * @typedef {object} VerifiedIdentity
 * @property {string} did
 * @property {string} name the name the party signed (may be '')
 * @property {string} who its place as a person reads it (``place.labelled``/``place.plain``)
 * @property {string} fingerprint
 * @property {import('./identity.js').KnownVerdict | null} known null until looked up
 */

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
 * @property {Map<number, VerifiedIdentity>} identities the other parties' verified keys
 * @property {(did: string) => string | null} fingerprintOf a did's fingerprint, if
 *   computed yet (the roster's keys, not verified yet)
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
    /**
     * Told, as the roster is drawn, whether every place is taken (the invite card folds).
     * @type {((full: boolean) => void) | null}
     */
    this.onFull = null;
  }

  /**
   * ``Party 3 · Bob — you``, or ``hospital B (party 2)`` for pid 1: how a party is named on
   * the page (people count parties from 1).
   * @param {RosterFacts} facts
   * @param {number} pid
   * @param {{you?: boolean}} [options]
   */
  static partyName(facts, pid, { you = true } = {}) {
    const label = facts.labels[pid] || '';
    const member = facts.roster?.members.find((m) => m.pid === pid);
    const name = member && member.name !== `party ${pid}` ? member.name : '';
    let text = say(label ? 'roster.party_labelled' : 'roster.party', { label, number: pid + 1 });
    if (name) text = say('roster.party_named', { party: text, name });
    if (you && pid === facts.me) text = say('roster.party_you', { party: text });
    return text;
  }

  /**
   * A party as a sentence names it: the name it gave, else its place's name, else as
   * ``partyName`` says it.
   * @param {RosterFacts} facts
   * @param {number} pid
   */
  static shortName(facts, pid) {
    const member = facts.roster?.members.find((m) => m.pid === pid);
    const name = member && member.name !== `party ${pid}` ? member.name : '';
    return name || facts.labels[pid] || RosterView.partyName(facts, pid, { you: false });
  }

  /**
   * After a round, who of the others asked to run again, as the status says it
   * (``Alice wants to run again: press Run again to join``); null if nobody.
   * @param {RosterFacts} facts
   * @returns {string | null}
   */
  static againWords(facts) {
    // Nobody can run again once a party left: the others are told that instead.
    if (!facts.roster || facts.roster.members.some((m) => m.state === 'left')) return null;
    const wanting = facts.roster.members
      .filter((m) => m.pid !== facts.me && RosterView.stateOf(facts, m.pid) === 'again')
      .map((m) => RosterView.shortName(facts, m.pid));
    if (!wanting.length) return null;
    const who = wanting.length === 1 ? wanting[0]
      : say('list.and', { first: wanting.slice(0, -1).join(', '), last: wanting[wanting.length - 1] });
    return sayCount('again.wish', wanting.length, { who });
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

  /**
   * The key in place ``pid``, as this party knows it: verified (its peer connection was
   * signed with it), or only what the server's roster says the party joined with; null if
   * neither. The name is the party's own claim, and the block says so.
   * @param {RosterFacts} facts
   * @param {number} pid
   * @param {Member | undefined} member
   * @returns {HTMLElement | null}
   */
  identity(facts, pid, member) {
    const { sentences } = this;
    const verified = facts.identities.get(pid);
    const box = document.createElement('div');
    box.className = 'identity';
    box.dataset.testid = `identity-${pid}`;
    const who = verified?.who ?? placeWords(sentences, pid, facts.labels[pid] ?? '');
    if (verified) {
      box.dataset.verified = 'true';
      const words = verified.name
        ? sentences.say('identity.verified', { who, name: verified.name, identity: verified.did })
        : sentences.say('identity.verified_unnamed', { who, identity: verified.did });
      const line = span('did', words);
      if (verified.name) line.title = say('identity.name_claimed', { who });
      box.append(line);
      const note = say(verified.name ? 'identity.fingerprint_named' : 'identity.fingerprint',
        { fingerprint: verified.fingerprint, who });
      box.append(span('help', note));
      if (verified.known) {
        const known = span(`known known-${verified.known.kind}`, knownWords(sentences, verified.known));
        known.dataset.known = verified.known.kind;
        box.append(known);
      }
      return box;
    }
    const did = member?.identity;
    if (typeof did !== 'string' || !did || member?.state === 'left') return null;
    box.dataset.verified = 'false';
    const print = facts.fingerprintOf(did);
    box.append(span('did', say('identity.claimed', { who, identity: did })),
      span('help', print ? say('identity.server_says_print', { fingerprint: print }) : say('identity.server_says')));
    return box;
  }

  /** @param {RosterFacts} facts */
  render(facts) {
    const { ui } = this;
    const { parties, roster } = facts;
    if (!parties) return;
    if (!roster) {
      ui.rosterSummary.textContent = sayCount('roster.joined_so_far', facts.joinedSoFar, { parties });
    } else {
      const present = roster.members.filter((m) => m.state !== 'left');
      const ready = present.filter((m) => m.ready).length;
      ui.rosterSummary.textContent = roster.started ? say('roster.round', { round: roster.round })
        : say('roster.summary', { present: present.length, parties, ready });
    }
    this.onFull?.(roster ? roster.started || roster.members.filter((m) => m.state !== 'left').length >= parties
      : facts.joinedSoFar >= parties);
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
      if (pid !== facts.me) {
        const member = roster?.members.find((m) => m.pid === pid);
        const shown = this.identity(facts, pid, member);
        if (shown) row.append(shown);
      }
      rows.push(row);
    }
    ui.roster.replaceChildren(...rows);
    const pairs = roster?.pairs ?? [];
    ui.pairsBox.hidden = !pairs.length;
    const left = new Set((roster?.members ?? []).filter((m) => m.state === 'left').map((m) => m.pid));
    ui.pairs.replaceChildren(...pairs.map((pair) => {
      const item = document.createElement('li');
      item.dataset.testid = `pair-${pair.a}-${pair.b}`;
      // A party that left closed its connections, whatever it last reported of them.
      const gone = left.has(pair.a) || left.has(pair.b);
      const state = gone ? 'closed' : pair.state;
      item.dataset.state = state;
      if (pair.path) item.dataset.path = pair.path; // how it went, while it was open
      const words = this.sentences.say(`pair.${state}`);
      item.append(span('', say('pair.between', { a: pair.a + 1, b: pair.b + 1 })),
        span('state', pair.path ? say('pair.with_path', { state: words, path: pair.path }) : words));
      return item;
    }));
  }
}

/**
 * How a place is called in the identity sentences: ``'hospital A' (party 2)``, ``party 2`` (pid 1).
 * @param {Sentences} sentences
 * @param {number} pid
 * @param {string} label
 */
export function placeWords(sentences, pid, label) {
  return sentences.place(pid, label);
}

/**
 * A known-identity verdict as a sentence (known.*).
 * @param {Sentences} sentences
 * @param {import('./identity.js').KnownVerdict} verdict
 */
export function knownWords(sentences, verdict) {
  return sentences.say(`known.${verdict.kind}`, verdict.fields);
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
