// @ts-check
// What a party tells its person: the table of mpyc_webrtc/sentences.py, which the server
// serves at GET /api/sentences. Nothing is worded here; this only fills in the fields, as
// sentences.say does in Python.

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
