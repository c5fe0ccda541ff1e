import assert from "node:assert/strict";
import {
  ContextDeflater,
  ContextInflater,
  inflateMessage,
  PROTOCOL_ERROR_CODE,
  ProtocolError,
} from "../../mod.ts";
import { assertBytes } from "../server/_helpers.ts";
import {
  ClientInflater,
  contextCompress,
  negotiated,
  randomBytes,
  repetitiveBytes,
  wordText,
} from "./_helpers.ts";

const utf8 = new TextEncoder();

/** Similar JSON messages, as a feed streams them: ~300 bytes each. */
function ticks(count: number, seed = 1): Uint8Array<ArrayBuffer>[] {
  return Array.from({ length: count }, (_, i) =>
    utf8.encode(JSON.stringify({
      type: "tick",
      seq: seed + i,
      symbol: ["ACME", "INIT", "GLOBX"][i % 3],
      price: 100 + ((i * 7) % 13) / 4,
      note: wordText(200, seed + i),
    })));
}

Deno.test("ContextInflater inflates a context-takeover stream message by message, byte-exact, in windows of 9 to 15 bits (RFC 7692 §7.2.2)", async () => {
  for (let bits = 9; bits <= 15; bits++) {
    // Similar messages, incompressible ones and long repetitive ones: well
    // past the window, so it slides.
    const messages = [
      ...ticks(40),
      randomBytes(3000, bits),
      repetitiveBytes(70_000, bits),
      new Uint8Array(0),
      ...ticks(40, 1000),
    ];
    const payloads = await contextCompress(messages, bits);
    const inflater = new ContextInflater(bits);
    const reference = new ClientInflater(true, bits);
    let needsWindow = 0;
    for (let i = 0; i < messages.length; i++) {
      const inflated = inflater.inflate(payloads[i], 1 << 20);
      assertBytes(inflated, messages[i]);
      assertBytes(reference.inflate(payloads[i]), messages[i]);
      // Messages that refer back cannot be inflated alone.
      try {
        assertBytes(inflateMessage(payloads[i], 1 << 20), messages[i]);
      } catch {
        needsWindow++;
      }
    }
    assert.ok(needsWindow > 40, `${bits} bits: ${needsWindow} referred back`);
  }
});

Deno.test("ContextInflater inflates what ContextDeflater compresses (server role, any agreed window)", async () => {
  for (const serverMaxWindowBits of [9, 12, 15]) {
    const deflater = new ContextDeflater(
      negotiated({ serverMaxWindowBits, serverNoContextTakeover: false }),
    );
    const inflater = new ContextInflater(serverMaxWindowBits);
    try {
      const messages = ticks(30);
      const payloads = await Promise.all(
        messages.map((m) => deflater.deflate(m)),
      );
      for (let i = 0; i < messages.length; i++) {
        assertBytes(inflater.inflate(payloads[i], 4096), messages[i]);
      }
      // In a window that holds a few ticks, the 10th costs much less than
      // the first.
      if (serverMaxWindowBits === 15) {
        assert.ok(
          payloads[9].length < payloads[0].length * 0.75,
          `${payloads[9].length} against ${payloads[0].length} bytes`,
        );
      }
    } finally {
      deflater.close();
    }
  }
});

Deno.test("ContextInflater keeps only the window: the last 2^windowBits bytes, 512 at least (zlib has no 8-bit window)", async () => {
  for (const [bits, kept] of [[15, 32768], [10, 1024], [9, 512], [8, 512]]) {
    const inflater = new ContextInflater(bits);
    assert.equal(inflater.windowLength, 0);
    const [first, second] = await contextCompress(
      [repetitiveBytes(300, 3), repetitiveBytes(40_000, 4)],
      Math.max(bits, 9),
    );
    inflater.inflate(first, 1024);
    assert.equal(inflater.windowLength, 300);
    inflater.inflate(second, 1 << 16);
    assert.equal(inflater.windowLength, kept, `${bits} bits`);
  }
});

Deno.test("ContextInflater fails data that refers back past its window with INVALID_COMPRESSED_DATA (1007)", async () => {
  // A 15-bit sender repeats a 1000-byte message; a 9-bit window has 512.
  const message = randomBytes(1000, 5);
  const [first, second] = await contextCompress([message, message], 15);
  const inflater = new ContextInflater(9);
  assertBytes(inflater.inflate(first, 4096), message);
  assert.throws(
    () => inflater.inflate(second, 4096),
    (error) =>
      error instanceof ProtocolError &&
      error.code === PROTOCOL_ERROR_CODE.InvalidCompressedData &&
      error.closeCode === 1007,
  );
});

Deno.test("ContextInflater bounds each message by maxLength alone, not counting the window (MESSAGE_TOO_BIG, 1009)", async () => {
  const message = repetitiveBytes(5000, 9);
  const payloads = await contextCompress(
    [randomBytes(40_000, 1), message, message],
    15,
  );
  const inflater = new ContextInflater(15);
  inflater.inflate(payloads[0], 40_000);
  assertBytes(inflater.inflate(payloads[1], 5000), message);
  assert.throws(
    () => inflater.inflate(payloads[2], 4999),
    (error) =>
      error instanceof ProtocolError &&
      error.code === PROTOCOL_ERROR_CODE.MessageTooBig &&
      error.closeCode === 1009 &&
      error.message === "Compressed message inflates past maxPayload (4999)",
  );
});

Deno.test("ContextInflater checks its window bits and maxLength", () => {
  for (const bits of [7, 16, 9.5, Number.NaN]) {
    assert.throws(
      () => new ContextInflater(bits),
      new RangeError(
        `Cannot inflate: "windowBits" must be an integer from 8 to 15, got ${bits}`,
      ),
    );
  }
  assert.throws(
    () => new ContextInflater(15).inflate(new Uint8Array([0x02, 0x00]), 0),
    new RangeError(
      'Cannot inflate: "maxLength" must be a positive integer, got 0',
    ),
  );
});

Deno.test("ContextInflater takes any safe integer as maxLength, window or not", async () => {
  // Found by tests/deflate/context_properties_test.ts: the window was added
  // to maxLength, and past Number.MAX_SAFE_INTEGER node:zlib refused the
  // sum, which came out as INVALID_COMPRESSED_DATA (1007) for a valid
  // message.
  const message = repetitiveBytes(300, 2);
  const payloads = await contextCompress([message, message], 15);
  const inflater = new ContextInflater(15);
  for (const payload of payloads) {
    assertBytes(inflater.inflate(payload, Number.MAX_SAFE_INTEGER), message);
  }
});
