// Signaling messages, built and checked against the schema the server serves at
// GET /api/protocol (generated from mpyc_webrtc/wire.py): no field rule is written here.

/** The JSON type name the schema uses for a value. */
function jsonType(value) {
  if (value === null) return 'null';
  if (typeof value === 'string') return 'string';
  if (Number.isInteger(value)) return 'integer';
  return typeof value;
}

export class ProtocolError extends Error {}

export class Protocol {
  constructor(schema) {
    this.schema = schema;
    this.version = schema.version;
  }

  /** The JSON text of a client message, or a ProtocolError saying what is wrong. */
  encode(type, fields = {}) {
    const spec = this.schema.client_messages[type];
    if (!spec) throw new ProtocolError(`the server does not accept '${type}' messages`);
    for (const name of Object.keys(fields)) {
      if (!(name in spec)) throw new ProtocolError(`a '${type}' message has no field '${name}'`);
    }
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

  /** A server message parsed from JSON text, or a ProtocolError if it does not fit the schema. */
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
