// @ts-check
// Signaling messages, built and checked against the schema the server serves at
// GET /api/protocol (generated from mpyc_webrtc/wire.py): no field rule is written here.

/**
 * @typedef {object} FieldRule what the schema says of one field of a client message
 * @property {string[]} types the JSON type names it may have
 * @property {boolean} [required]
 * @property {number} [max_length] in characters (code points)
 * @property {string[]} [choices] the values it may take
 */
/**
 * @typedef {object} Schema the signaling protocol, as the server serves it (GET /api/protocol)
 * @property {number} version
 * @property {number} max_message_bytes
 * @property {{min: number, max: number}} parties how many parties a session may have
 * @property {Record<string, Record<string, FieldRule>>} client_messages type -> field -> rule
 * @property {string[]} relayed the client messages the server passes on to other parties
 * @property {Record<string, string[]>} server_messages type -> the fields it must have
 * @property {string[]} error_codes
 * @property {import('./sealing.js').SealingRules} sealing
 * @property {string[]} link_states
 * @property {string[]} link_paths
 */
/** @typedef {{v: number, type: string, [field: string]: any}} Message */

/**
 * The JSON type name the schema uses for a value.
 * @param {unknown} value
 * @returns {string}
 */
function jsonType(value) {
  if (value === null) return 'null';
  if (typeof value === 'string') return 'string';
  if (Number.isInteger(value)) return 'integer';
  return typeof value;
}

export class ProtocolError extends Error {}

export class Protocol {
  /** @param {Schema} schema */
  constructor(schema) {
    this.schema = schema;
    this.version = schema.version;
  }

  /**
   * The JSON text of a client message, or a ProtocolError saying what is wrong.
   * @param {string} type
   * @param {Record<string, unknown>} [fields]
   * @returns {string}
   */
  encode(type, fields = {}) {
    const spec = this.schema.client_messages[type];
    if (!spec) throw new ProtocolError(`the server does not accept '${type}' messages`);
    for (const name of Object.keys(fields)) {
      if (!(name in spec)) throw new ProtocolError(`a '${type}' message has no field '${name}'`);
    }
    /** @type {Message} */
    const message = { v: this.version, type };
    for (const [name, rule] of Object.entries(spec)) {
      const value = fields[name];
      if (value === undefined) {
        if (rule.required) throw new ProtocolError(`a '${type}' message needs '${name}'`);
        continue;
      }
      if (!rule.types.includes(jsonType(value))) {
        throw new ProtocolError(`'${name}' of a '${type}' message must be ${rule.types.join(' or ')}`);
      }
      // The server counts characters (code points), as [...value] does.
      if (rule.max_length !== undefined && typeof value === 'string'
          && [...value].length > rule.max_length) {
        throw new ProtocolError(`'${name}' is longer than ${rule.max_length} characters`);
      }
      message[name] = value;
    }
    const text = JSON.stringify(message);
    const size = new TextEncoder().encode(text).length;
    if (size > this.schema.max_message_bytes) {
      throw new ProtocolError(`the '${type}' message is ${size} bytes; the server accepts at most ${this.schema.max_message_bytes}`);
    }
    return text;
  }

  /**
   * A server message parsed from JSON text, or a ProtocolError if it does not fit the schema.
   * @param {string} text
   * @returns {Message}
   */
  decode(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      throw new ProtocolError('the server sent something that is not JSON');
    }
    if (typeof message !== 'object' || message === null) {
      throw new ProtocolError('the server sent something that is not a message');
    }
    if (message.v !== this.version) {
      throw new ProtocolError(`the server speaks protocol version ${message.v}, this page ${this.version}`);
    }
    const fields = this.schema.server_messages[message.type];
    if (!fields) throw new ProtocolError(`the server sent an unknown '${message.type}' message`);
    for (const name of fields) {
      if (!(name in message)) throw new ProtocolError(`a '${message.type}' message lacks '${name}'`);
    }
    return message;
  }
}
