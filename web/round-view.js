// @ts-check
// What the lobby shows of a round as it runs and once it ends: where the person looks (the
// status and the result are brought into view and focused when a round starts and ends, on
// a phone too), how far the round has got, the result with a Copy button, and a short
// history of the earlier rounds' results. It takes the elements it draws in and knows
// nothing of the session: page.js, join.js and worker-events.js call it.

import { copyText } from './common.js';
import { say, sayCount } from './sentences.js';

/** How many earlier rounds' results the history keeps. */
export const HISTORY_LENGTH = 5;
/** How long "Copied." stays, in milliseconds. */
export const COPIED_MS = 2500;

/**
 * A size as people read it: ``512 bytes``, ``3.8 KiB``, ``12.5 MiB``, ``1.2 GiB`` (the
 * number and its unit joined by a no-break space: a line never parts them).
 * @param {number} bytes
 */
export function sizeText(bytes) {
  if (bytes < 1024) return sayCount('size.bytes', bytes);
  const units = ['size.kib', 'size.mib', 'size.gib', 'size.tib'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return say(units[unit], { value: value.toFixed(value < 10 ? 1 : 0) });
}

/**
 * The status once a round is done, with the result's headline in it (the status is the
 * live region screen readers announce): ``Done: the average salary is 53,333.33.``
 * A headline that starts with a name keeps its capital.
 * @param {string | null | undefined} headline
 */
export function doneStatus(headline) {
  const text = (headline ?? '').trim();
  if (!text) return say('status.done');
  const common = /^(The|Everyone|Everybody|Nobody|No|Not|You|Your|All|Each|Every|Some|Most|There|It|A|An|At)\b/;
  return say('status.done_headline', { headline: common.test(text) ? text[0].toLowerCase() + text.slice(1) : text });
}

/**
 * Bring ``where`` into view and move the keyboard's focus to ``focus`` (made focusable
 * from scripts only), so that a person on a phone, or using the keyboard, is where the
 * news is. Nothing is animated for people who asked for less motion.
 * @param {HTMLElement} where the top of what must be seen
 * @param {HTMLElement} focus
 */
export function bringIntoView(where, focus) {
  if (!focus.hasAttribute('tabindex')) focus.tabIndex = -1;
  where.scrollIntoView({ block: 'start', behavior: 'instant' });
  focus.focus({ preventScroll: true });
  // What was brought in must be seen whole: the focused part too, if it is below.
  focus.scrollIntoView({ block: 'nearest', behavior: 'instant' });
}

/**
 * A result as plain text, for the clipboard: the headline, then ``label: value`` facts.
 * @param {import('./result.js').Result} result
 */
export function resultText(result) {
  const lines = [result.headline];
  for (const [label, value] of result.rows ?? []) lines.push(`${label}: ${value}`);
  if (result.table) {
    lines.push(result.table.columns.join('\t'));
    for (const row of result.table.rows) lines.push(row.join('\t'));
  }
  return lines.join('\n');
}

/**
 * The Copy button of the result card: copies what the round gave (the result, or what the
 * program printed) and says "Copied." for a moment.
 * @param {HTMLButtonElement} button
 * @param {HTMLElement} said where "Copied." appears (a live region)
 * @param {() => string} text what to copy
 */
export function copyButton(button, said, text) {
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let clear;
  button.addEventListener('click', async () => {
    const copied = await copyText(text());
    clearTimeout(clear);
    said.textContent = say(copied ? 'result.copied' : 'result.not_copied');
    clear = setTimeout(() => { said.textContent = ''; }, copied ? COPIED_MS : 4 * COPIED_MS);
  });
}

/**
 * The earlier rounds' results, newest first, at most HISTORY_LENGTH.
 * @param {HTMLElement} box shown once there is a round to show
 * @param {HTMLElement} list
 * @param {number} round the round that ended
 * @param {string} text its result in one line
 */
export function remember(box, list, round, text) {
  if (!text.trim()) return;
  const item = document.createElement('li');
  item.dataset.testid = `history-${round}`;
  const label = document.createElement('span');
  label.className = 'round';
  label.textContent = say('result.history_round', { round });
  item.append(label, document.createTextNode(text.trim()));
  list.prepend(item);
  while (list.children.length > HISTORY_LENGTH) list.lastElementChild?.remove();
  box.hidden = false;
}

/**
 * How far a running round has got. Nobody knows how many messages a program will need
 * before it ran, so the first round shows the messages as they go (and how many in the
 * last seconds: the round is alive); a later round of the same program is measured
 * against the one before it.
 */
export class RoundProgress {
  constructor() {
    /** @type {{at: number, messages: number}[]} the last few seconds' counts */
    this.samples = [];
    /** @type {number | null} how many messages the last round that finished took */
    this.previous = null;
  }

  /** A round starts: forget the last one's samples (its total stays, to measure by). */
  start() {
    this.samples = [];
  }

  /** @param {{messages: number} | null} traffic the round's final count, if it finished */
  finished(traffic) {
    if (traffic && traffic.messages > 0) this.previous = traffic.messages;
    this.samples = [];
  }

  /**
   * Show where the round stands.
   * @param {{bar: HTMLProgressElement, text: HTMLElement}} ui
   * @param {{computing: boolean, seconds: number, traffic: {messages: number, bytes: number} | null,
   *   now: number}} facts
   */
  show(ui, { computing, seconds, traffic, now }) {
    const head = say(computing ? 'round.computing' : 'round.connecting', { seconds: seconds.toFixed(1) });
    if (!traffic) {
      ui.bar.removeAttribute('value'); // a bar that moves without a measure: still at it
      ui.text.textContent = head;
      return;
    }
    this.samples.push({ at: now, messages: traffic.messages });
    while (this.samples.length > 1 && now - this.samples[0].at > 3000) this.samples.shift();
    const first = this.samples[0];
    const span = (now - first.at) / 1000;
    const rate = span >= 0.9 ? Math.round((traffic.messages - first.messages) / span) : null;
    let text = head + say('round.traffic', { messages: traffic.messages.toLocaleString('en'), size: sizeText(traffic.bytes) });
    if (rate !== null) text += say('round.rate', { rate: rate.toLocaleString('en') });
    if (this.previous) {
      const percent = Math.min(99, Math.floor((100 * traffic.messages) / this.previous));
      ui.bar.max = 100;
      ui.bar.value = percent;
      text += say('round.percent', { percent, messages: this.previous.toLocaleString('en') });
    } else {
      ui.bar.removeAttribute('value');
    }
    ui.text.textContent = say('round.progress', { text });
  }
}

/**
 * The result card's own parts beyond the result itself: the Copy button, the round's
 * result kept as text for the history, and bringing the card into view when the round ends.
 */
export class ResultCard {
  constructor() {
    const at = (/** @type {string} */ id) => /** @type {HTMLElement} */ (
      document.querySelector(`[data-testid="${id}"]`));
    this.card = at('result-card');
    this.output = at('output');
    this.copy = /** @type {HTMLButtonElement} */ (at('result-copy'));
    this.copied = at('result-copied');
    this.historyBox = at('history-box');
    this.history = at('history');
    /** @type {import('./result.js').Result | null} the result of the round shown */
    this.result = null;
    /** the round shown (0 before the first) */
    this.round = 0;
    /** the status the last round ended with ("Done: ..."), to go back to (set when one ends) */
    this.doneText = '';
    copyButton(this.copy, this.copied, () => this.text());
  }

  /** What the round gave, as text: its result, else what the program printed. */
  text() {
    return this.result ? resultText(this.result) : this.output.textContent?.trim() ?? '';
  }

  /**
   * A round starts: the one before goes into the history.
   * @param {number} round
   */
  begin(round) {
    if (this.round && this.round !== round) {
      remember(this.historyBox, this.history, this.round,
        this.result ? this.result.headline : this.text().split('\n').slice(-1)[0] ?? '');
    }
    this.round = round;
    this.result = null;
    this.copy.hidden = true;
    this.copied.textContent = '';
  }

  /** @param {import('./result.js').Result} result the program published its result */
  published(result) {
    this.result = result;
  }

  /**
   * The round finished: its status (with the headline) and the card, in view and focused.
   * @param {HTMLElement} statusCard
   * @returns {string} the status to show
   */
  finished(statusCard) {
    this.doneText = doneStatus(this.result?.headline);
    this.copy.hidden = !this.text();
    bringIntoView(statusCard, this.card);
    return this.doneText;
  }
}
