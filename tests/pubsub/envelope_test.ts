import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  decodeEnvelope,
  encodeEnvelope,
  ENVELOPE_TAG,
} from "../../src/pubsub/_envelope.ts";
import { assertBytes } from "./_helpers.ts";

Deno.test("the pub/sub envelope keeps the message type and the origin", () => {
  const origin = crypto.getRandomValues(new Uint8Array(16));
  const text = encodeEnvelope(origin, "héllo ✓");
  assert.equal(text[0], ENVELOPE_TAG.Text);
  assert.deepEqual(decodeEnvelope(text), { origin, message: "héllo ✓" });
  const bytes = new TextEncoder().encode("looks like text");
  const binary = encodeEnvelope(origin, bytes);
  assert.equal(binary[0], ENVELOPE_TAG.Binary);
  const decoded = decodeEnvelope(Buffer.from(binary));
  assert.deepEqual(decoded.origin, origin);
  assertBytes(decoded.message, bytes);
  // A plain Uint8Array copy, not a Buffer view of the client's memory.
  assert.equal(Object.getPrototypeOf(decoded.message), Uint8Array.prototype);
  assert.deepEqual(decodeEnvelope(encodeEnvelope(origin, "")).message, "");
});

Deno.test("the pub/sub envelope rejects what it did not write", () => {
  assert.throws(
    () => decodeEnvelope(new Uint8Array(3)),
    {
      name: "TypeError",
      message:
        "Cannot decode a pub/sub message: it must be at least 17 bytes, got 3",
    },
  );
  const unknownTag = new Uint8Array(20);
  unknownTag[0] = 0x78;
  assert.throws(() => decodeEnvelope(unknownTag), {
    name: "TypeError",
    message:
      "Cannot decode a pub/sub message: its tag must be 0x74 (text) or 0x62 (binary), got 0x78",
  });
  const badText = new Uint8Array(18);
  badText[0] = ENVELOPE_TAG.Text;
  badText[17] = 0xff;
  assert.throws(() => decodeEnvelope(badText), {
    name: "TypeError",
    message: "Cannot decode a pub/sub message: its text is not valid UTF-8",
  });
});
