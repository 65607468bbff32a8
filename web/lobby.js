// @ts-check
// Where this page's party stands, as one transition table: the phases of the lobby and the
// run, and which event leads from which phase to which. join.js asks `go(event)` and does
// what the new phase shows; a move the table does not have is refused and changes nothing.

/**
 * @typedef {'opening' | 'choosing' | 'joining' | 'lobby' | 'connecting' | 'computing'
 *   | 'done' | 'again' | 'failed'} Phase
 * @typedef {'choose' | 'join' | 'welcome' | 'placeTaken' | 'start' | 'connected'
 *   | 'finished' | 'runAgain' | 'fail'} LobbyEvent
 */

/** @type {Record<Phase, Partial<Record<LobbyEvent, Phase>>>} */
export const TRANSITIONS = {
  // The page reads the link and the session; it asks for a place if they are named.
  opening: { choose: 'choosing', join: 'joining', fail: 'failed' },
  choosing: { join: 'joining', fail: 'failed' },
  // The WebSocket is open and `join` sent; a place someone took meanwhile: choose again.
  joining: { welcome: 'lobby', placeTaken: 'choosing', fail: 'failed' },
  // Entering an input, ready or not, until everyone is here and ready.
  lobby: { start: 'connecting', fail: 'failed' },
  connecting: { connected: 'computing', finished: 'done', fail: 'failed' },
  computing: { finished: 'done', fail: 'failed' },
  // After a round: the result shows; "Run again" lets the person vote for another.
  done: { runAgain: 'again', start: 'connecting', fail: 'failed' },
  again: { start: 'connecting', fail: 'failed' },
  failed: {},
};

export class Lobby {
  constructor() {
    /** @type {Phase} */
    this.phase = 'opening';
    /** whether this party confirmed its input (in the lobby, or to run again) */
    this.ready = false;
    this.round = 0;
  }

  /**
   * Move on by ``event`` if the table allows it from here.
   * @param {LobbyEvent} event
   * @returns {boolean} whether it did
   */
  go(event) {
    const next = TRANSITIONS[this.phase][event];
    if (next === undefined) return false;
    this.phase = next;
    if (event === 'start' || event === 'runAgain') this.ready = false;
    return true;
  }

  /** @param {...Phase} phases */
  in(...phases) {
    return phases.includes(this.phase);
  }

  /** A round is connecting or computing. */
  get running() {
    return this.in('connecting', 'computing');
  }

  /** The person may confirm (or change) an input now. */
  get editable() {
    return this.in('lobby', 'again') && !this.ready;
  }

  /** This party's own state in the roster (a ``member.*`` sentence key). */
  get myState() {
    if (this.in('lobby', 'again')) {
      if (!this.ready) return 'joined';
      return this.phase === 'again' ? 'again' : 'ready';
    }
    if (this.phase === 'computing') return 'computing';
    if (this.phase === 'connecting') return 'connecting';
    if (this.phase === 'done') return 'done';
    if (this.phase === 'failed') return 'failed';
    return 'joined';
  }
}
