import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  decodeEnvelope,
  encodeEnvelope,
  ENVELOPE_MARKER,
  ENVELOPE_TAG,
} from "../../src/pubsub/_envelope.ts";
import { assertBytes } from "./_helpers.ts";

const TAG_OFFSET = ENVELOPE_MARKER.length;

Deno.test("the pub/sub envelope keeps the message type and the origin", () => {
  const origin = crypto.getRandomValues(new Uint8Array(16));
  const text = encodeEnvelope(origin, "héllo ✓");
  assert.deepEqual([...text.subarray(0, TAG_OFFSET)], [0x00, 0x44, 0x01]);
  assert.equal(text[TAG_OFFSET], ENVELOPE_TAG.Text);
  assert.deepEqual(decodeEnvelope(text), { origin, message: "héllo ✓" });
  const bytes = new TextEncoder().encode("looks like text");
  const binary = encodeEnvelope(origin, bytes);
  assert.equal(binary[TAG_OFFSET], ENVELOPE_TAG.Binary);
  const decoded = decodeEnvelope(Buffer.from(binary));
  assert.deepEqual(decoded.origin, origin);
  assertBytes(decoded.message, bytes);
  // A plain Uint8Array copy, not a Buffer view of the client's memory.
  assert.equal(Object.getPrototypeOf(decoded.message), Uint8Array.prototype);
  assert.deepEqual(decodeEnvelope(encodeEnvelope(origin, "")).message, "");
  // A byte order mark is the text's first character, kept.
  assert.equal(
    decodeEnvelope(encodeEnvelope(origin, "\ufeffhello")).message,
    "\ufeffhello",
  );
});

/** An envelope's bytes with `tag` and the given payload. */
function envelope(tag: number, payload: number[] = []): Uint8Array {
  return new Uint8Array([
    ...ENVELOPE_MARKER,
    tag,
    ...new Uint8Array(16),
    ...payload,
  ]);
}

Deno.test("the pub/sub envelope rejects what it did not write", () => {
  assert.throws(
    () => decodeEnvelope(new Uint8Array(3)),
    {
      name: "TypeError",
      message:
        "Cannot decode a pub/sub message: it must be at least 20 bytes, got 3",
    },
  );
  // Text someone else published on the channel (redis-cli PUBLISH), which
  // happens to start with a tag's letter.
  assert.throws(
    () =>
      decodeEnvelope(
        new TextEncoder().encode("breaking news: the server is on fire"),
      ),
    {
      name: "TypeError",
      message: /does not start with Duplex's envelope marker/,
    },
  );
  assert.throws(() => decodeEnvelope(envelope(0x78)), {
    name: "TypeError",
    message:
      "Cannot decode a pub/sub message: its tag must be 0x74 (text) or 0x62 (binary), got 0x78",
  });
  assert.throws(() => decodeEnvelope(envelope(ENVELOPE_TAG.Text, [0xff])), {
    name: "TypeError",
    message: "Cannot decode a pub/sub message: its text is not valid UTF-8",
  });
});
