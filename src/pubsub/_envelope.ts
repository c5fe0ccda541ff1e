/**
 * The wire format of messages that cross instances over a byte-oriented
 * broker (Redis): a 3-byte marker (NUL, "D", the format's version 1), so
 * that what something else publishes on a channel is told apart; one tag
 * byte for the message type; the 16-byte id of the publishing instance;
 * then the payload (UTF-8 for text).
 *
 * ```
 * +----------+-----+----------------+-------------------+
 * | 00 44 01 | tag | origin (16 B)  | payload           |
 * +----------+-----+----------------+-------------------+
 *              0x74 "t" = text, 0x62 "b" = binary
 * ```
 *
 * @module
 */

/** The marker every envelope starts with: NUL, "D", version 1. */
export const ENVELOPE_MARKER: readonly number[] = [0x00, 0x44, 0x01];

/** The type tags, the byte after the marker. */
export const ENVELOPE_TAG = { Text: 0x74, Binary: 0x62 } as const;

/** The length of an instance id, in bytes. */
export const ORIGIN_LENGTH = 16;

const TAG_OFFSET = ENVELOPE_MARKER.length;
const HEADER_LENGTH = TAG_OFFSET + 1 + ORIGIN_LENGTH;
const utf8Encoder = new TextEncoder();
// ignoreBOM: a message that begins with U+FEFF keeps it.
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** A decoded envelope. */
export interface Envelope {
  /** The id of the instance that published the message. */
  origin: Uint8Array;
  /** The message, with its type. */
  message: string | Uint8Array;
}

/**
 * Wraps a message for the wire.
 *
 * @param origin The publishing instance's id ({@linkcode ORIGIN_LENGTH} bytes).
 * @param message Text or binary data.
 * @returns The envelope bytes.
 */
export function encodeEnvelope(
  origin: Uint8Array,
  message: string | Uint8Array,
): Uint8Array {
  const text = typeof message === "string";
  const payload = text ? utf8Encoder.encode(message) : message;
  const bytes = new Uint8Array(HEADER_LENGTH + payload.length);
  bytes.set(ENVELOPE_MARKER);
  bytes[TAG_OFFSET] = text ? ENVELOPE_TAG.Text : ENVELOPE_TAG.Binary;
  bytes.set(origin.subarray(0, ORIGIN_LENGTH), TAG_OFFSET + 1);
  bytes.set(payload, HEADER_LENGTH);
  return bytes;
}

/**
 * Unwraps a message from the wire. Binary payloads are copied, so the
 * result does not pin the client's receive buffer.
 *
 * @param bytes The envelope bytes.
 * @returns The envelope.
 * @throws {TypeError} When the bytes are not an envelope (too short,
 * without the marker, an unknown tag, or text that is not UTF-8).
 */
export function decodeEnvelope(input: Uint8Array): Envelope {
  // A plain view, so that slices are plain copies even of a Node `Buffer`.
  const bytes = new Uint8Array(
    input.buffer,
    input.byteOffset,
    input.byteLength,
  );
  if (bytes.length < HEADER_LENGTH) {
    throw new TypeError(
      `Cannot decode a pub/sub message: it must be at least ${HEADER_LENGTH} bytes, got ${bytes.length}`,
    );
  }
  if (ENVELOPE_MARKER.some((byte, i) => bytes[i] !== byte)) {
    throw new TypeError(
      "Cannot decode a pub/sub message: it does not start with Duplex's envelope marker (00 44 01); was it published by something else, or by another version of Duplex?",
    );
  }
  const tag = bytes[TAG_OFFSET];
  const origin = bytes.slice(TAG_OFFSET + 1, HEADER_LENGTH);
  const payload = bytes.subarray(HEADER_LENGTH);
  if (tag === ENVELOPE_TAG.Binary) return { origin, message: payload.slice() };
  if (tag === ENVELOPE_TAG.Text) {
    try {
      return { origin, message: utf8Decoder.decode(payload) };
    } catch {
      throw new TypeError(
        "Cannot decode a pub/sub message: its text is not valid UTF-8",
      );
    }
  }
  throw new TypeError(
    `Cannot decode a pub/sub message: its tag must be 0x74 (text) or 0x62 (binary), got 0x${
      tag.toString(16).padStart(2, "0")
    }`,
  );
}

/**
 * Whether two instance ids are the same.
 *
 * @param a One id.
 * @param b The other.
 * @returns `true` when equal.
 */
export function sameOrigin(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
