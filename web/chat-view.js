// @ts-check
// The chat, as the lobby shows it from joining on (in the lobby, while computing and after):
// the messages, each with its sender's place, the name it signed and its key's fingerprint,
// and a field to write one. Every message is signed with its sender's key and travels over
// the peer connections' chat channel once they are open, sealed through the server before
// (signaling.js); what it says is shown as text, never as HTML.

import { fingerprint, publicKey } from './identity.js';
import { placeWords } from './roster-view.js';
import { say } from './sentences.js';

/** @typedef {import('./sentences.js').Sentences} Sentences */
/** @typedef {import('./client.js').ClientEvent} ClientEvent */

/** How many messages the log keeps (the oldest go first). */
const KEEP = 500;

export class ChatView {
  /**
   * @param {{chat: HTMLElement, chatLog: HTMLElement, chatForm: HTMLFormElement,
   *   chatInput: HTMLInputElement, chatSend: HTMLButtonElement, chatRefused: HTMLElement}} ui
   * @param {Sentences} sentences
   * @param {(text: string) => void} say the person wrote ``text`` and pressed Send (or Enter)
   */
  constructor(ui, sentences, say) {
    this.ui = ui;
    this.sentences = sentences;
    ui.chatForm.addEventListener('submit', (event) => {
      event.preventDefault();
      if (ui.chatInput.disabled) return;
      say(ui.chatInput.value);
    });
    ui.chatInput.addEventListener('input', () => this.refused(''));
  }

  /** Show the chat (once joined). */
  open() {
    this.ui.chat.hidden = false;
  }

  /**
   * No more chat in this page (it stopped for good).
   * @param {string} why
   */
  close(why) {
    this.ui.chatInput.disabled = true;
    this.ui.chatSend.disabled = true;
    this.ui.chatInput.title = why;
  }

  /**
   * A message from another party (the client's ``chat`` event): its place, the name it
   * signed, its key's fingerprint, and ``bound`` whether that key is the one verified on
   * the party's peer connection.
   * @param {ClientEvent} event peer, text, identity, name, label, who, bound
   */
  received({ peer, text, identity, name, label, who: place, bound }) {
    const where = place ? String(place) : placeWords(this.sentences, peer, label ?? '');
    let who = where;
    if (name) who = say('roster.party_named', { party: who, name });
    const key = document.createElement('span');
    key.className = 'key';
    key.title = say(bound ? 'chat.key_verified' : 'chat.key_signed', { who: where });
    const item = this.add(who, key, String(text));
    item.dataset.from = String(peer);
    item.dataset.bound = bound ? 'true' : 'false';
    fingerprint(publicKey(identity)).then((print) => {
      key.textContent = bound ? say('chat.fingerprint_verified', { fingerprint: print }) : print;
    }).catch(() => { key.textContent = say('chat.no_key'); });
  }

  /**
   * This party's own message, sent (the client's ``chat_out``).
   * @param {string} text
   * @param {string} fingerprintText this party's key's fingerprint
   */
  sent(text, fingerprintText) {
    const key = document.createElement('span');
    key.className = 'key';
    key.textContent = fingerprintText;
    const item = this.add(say('chat.you'), key, text);
    item.dataset.from = 'you';
    this.ui.chatInput.value = '';
    this.refused('');
  }

  /**
   * Why a message was not sent (``chat_refused``), shown by the field; '' hides it.
   * @param {string} message
   */
  refused(message) {
    this.ui.chatRefused.textContent = message;
    this.ui.chatRefused.hidden = !message;
  }

  /**
   * @param {string} who
   * @param {HTMLElement} key
   * @param {string} text
   */
  add(who, key, text) {
    const item = document.createElement('li');
    item.dataset.testid = 'chat-message';
    const head = document.createElement('span');
    head.className = 'who';
    head.textContent = who;
    const body = document.createElement('span');
    body.className = 'text';
    body.textContent = text; // text only: a message is never markup
    item.append(head, ' ', key, document.createElement('br'), body);
    const { chatLog } = this.ui;
    const atEnd = chatLog.scrollTop + chatLog.clientHeight >= chatLog.scrollHeight - 4;
    chatLog.append(item);
    while (chatLog.childElementCount > KEEP) chatLog.firstElementChild?.remove();
    if (atEnd) chatLog.scrollTop = chatLog.scrollHeight;
    return item;
  }
}
