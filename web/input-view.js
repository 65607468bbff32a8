// @ts-check
// The party's private input as the program asks for it (programs.InputSpec.to_json()): a
// text field (a number, numbers separated by commas, or free text), one radio button per
// choice, or nothing at all. Whether what was typed is usable is decided by Python in the
// worker, with the program's own rules; this only shows the controls and the help.

/**
 * @typedef {object} InputSpec
 * @property {'integer' | 'integers' | 'choice' | 'none' | 'text'} kind
 * @property {string} label
 * @property {string} help
 * @property {string | null} [placeholder]
 * @property {{value: string, label: string}[]} choices
 */

export class InputView {
  /**
   * @param {{inputLabel: HTMLElement, partyInput: HTMLInputElement,
   *   inputChoices: HTMLElement, inputHelp: HTMLElement}} ui
   * @param {InputSpec} spec
   * @param {() => void} onChange called whenever the input changes
   */
  constructor(ui, spec, onChange) {
    this.ui = ui;
    this.spec = spec;
    this.onChange = onChange;
    ui.partyInput.addEventListener('input', onChange);
    this.build();
  }

  build() {
    const { ui, spec } = this;
    ui.inputLabel.textContent = spec.label;
    ui.partyInput.placeholder = spec.placeholder ? `e.g. ${spec.placeholder}` : '';
    ui.partyInput.inputMode = spec.kind === 'integer' ? 'numeric' : 'text';
    ui.partyInput.hidden = spec.kind === 'choice' || spec.kind === 'none';
    ui.inputLabel.hidden = spec.kind === 'none';
    ui.inputChoices.hidden = spec.kind !== 'choice';
    if (spec.kind === 'choice') {
      ui.inputChoices.setAttribute('aria-label', spec.label);
      ui.inputChoices.replaceChildren(...spec.choices.map(({ value, label }) => {
        const option = document.createElement('label');
        option.className = 'choice';
        const radio = document.createElement('input');
        radio.type = 'radio';
        radio.name = 'party-choice';
        radio.value = value;
        radio.dataset.testid = `choice-${value}`;
        radio.addEventListener('change', this.onChange);
        option.append(radio, document.createTextNode(label));
        return option;
      }));
    }
    this.showHelp(null);
  }

  /** What the person entered ('' for nothing). */
  get value() {
    const { kind } = this.spec;
    if (kind === 'none') return '';
    if (kind === 'choice') {
      /** @type {HTMLInputElement | null} */
      const checked = this.ui.inputChoices.querySelector('input:checked');
      return checked?.value ?? '';
    }
    return this.ui.partyInput.value.trim();
  }

  /**
   * What to type, or why what was typed cannot be used, or how it was read.
   * @param {string | null} problem
   * @param {string | null} [reading] how a number with grouped digits was read
   */
  showHelp(problem, reading = null) {
    this.ui.inputHelp.classList.toggle('problem', Boolean(problem));
    this.ui.inputHelp.textContent = problem || reading || this.spec.help;
  }

  /**
   * After Python checked the input: an empty field is not an error yet (the help already
   * says what to type). A number typed with grouped digits (52,000 or 52.000) is shown as
   * it was read ("Read as 52 000."), so that nobody commits a number misread.
   * @param {string | null} problem
   * @param {string | null} [reading] Python's ``InputSpec.reading``
   */
  checked(problem, reading = null) {
    const shown = this.value ? problem : null;
    this.ui.partyInput.setAttribute('aria-invalid', shown ? 'true' : 'false');
    this.showHelp(shown, this.value ? reading : null);
  }

  /**
   * Show the program's sentence for an input that cannot be used, and go to the field.
   * @param {string} problem
   */
  refuse(problem) {
    this.showHelp(problem);
    this.ui.partyInput.setAttribute('aria-invalid', 'true');
    /** @type {HTMLElement | null} */
    const first = this.ui.partyInput.hidden ? this.ui.inputChoices.querySelector('input')
      : this.ui.partyInput;
    first?.focus();
  }

  /**
   * @param {boolean} editable
   * @param {{typingAllowed?: boolean}} [options] typing may start while Python loads
   */
  setEditable(editable, { typingAllowed = false } = {}) {
    this.ui.partyInput.disabled = !editable && !typingAllowed;
    for (const radio of this.ui.inputChoices.querySelectorAll('input')) radio.disabled = !editable;
  }
}
