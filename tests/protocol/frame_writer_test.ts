import assert from "node:assert/strict";
import { COPY_LIMIT, FrameWriter, OPCODE } from "./_core.ts";
import {
  assertBytes,
  concat,
  fixedMaskKey,
  frame,
  header,
  pattern,
  recordFrees,
  serverFrame,
  utf8,
} from "./_helpers.ts";

const { Continuation, Text, Binary, Close, Ping, Pong } = OPCODE;

/** Whether a chunk's memory was released (its buffer detached). */
function freed(chunk: Uint8Array): boolean {
  return (chunk.buffer as ArrayBuffer).detached;
}

function taken(writer: FrameWriter): Uint8Array {
  return concat(...writer.take());
}

// ---------------------------------------------------------------------------
// RFC 6455 §5.7: examples, encoded byte-exactly
// ---------------------------------------------------------------------------

Deno.test("FrameWriter encodes the unmasked §5.7 examples byte-exactly (RFC 6455 §5.7)", () => {
  const writer = new FrameWriter();
  writer.writeFrame(Text, utf8("Hello"));
  writer.writeText(Text, "Hel", false);
  writer.writeText(Continuation, "lo");
  writer.writeFrame(Ping, utf8("Hello"));
  writer.writeFrame(Binary, pattern(256));
  writer.writeFrame(Binary, pattern(65536));
  assert.deepEqual(
    taken(writer),
    concat(
      [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
      [0x01, 0x03, 0x48, 0x65, 0x6c],
      [0x80, 0x02, 0x6c, 0x6f],
      [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
      [0x82, 0x7e, 0x01, 0x00],
      pattern(256),
      [0x82, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00],
      pattern(65536),
    ),
  );
});

Deno.test("FrameWriter encodes the masked §5.7 examples byte-exactly with the injected key (RFC 6455 §5.7)", () => {
  const writer = new FrameWriter({ mask: true, generateMaskKey: fixedMaskKey });
  writer.writeText(Text, "Hello");
  writer.writeFrame(Pong, utf8("Hello"));
  const masked = [0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
  assert.deepEqual(
    taken(writer),
    concat([0x81, 0x85], masked, [0x8a, 0x85], masked),
  );
});

// ---------------------------------------------------------------------------
// RFC 6455 §5.2: minimal length encoding
// ---------------------------------------------------------------------------

const LENGTHS = [
  0,
  1,
  125,
  126,
  127,
  16 * 1024,
  16 * 1024 + 1,
  65535,
  65536,
  COPY_LIMIT,
  COPY_LIMIT + 1,
];

Deno.test("FrameWriter uses minimal length encoding at 125/126/65535/65536 (RFC 6455 §5.2)", () => {
  for (const mask of [false, true]) {
    for (const length of LENGTHS) {
      const writer = new FrameWriter({ mask, generateMaskKey: fixedMaskKey });
      writer.writeFrame(Binary, pattern(length));
      const out = taken(writer);
      const expectedHeader = header(Binary, length, { mask });
      const headerLength = length < 126 ? 2 : length < 65536 ? 4 : 10;
      assert.equal(expectedHeader.length, headerLength + (mask ? 4 : 0));
      assertBytes(out, frame(Binary, pattern(length), { mask }));
    }
  }
});

Deno.test("FrameWriter.writeText uses minimal length encoding for the encoded size (RFC 6455 §5.2)", () => {
  const texts = [
    "",
    "a".repeat(41), // worst case 123 bytes: 2-byte header either way
    "a".repeat(42), // worst case 126 bytes: reserves 4, needs 2
    "a".repeat(125),
    "a".repeat(126),
    "é".repeat(63), // 126 bytes
    "€".repeat(42), // 126 bytes
    "a".repeat(5461), // worst case 16383: still in the arena
    "a".repeat(5462), // worst case over 16 KiB
    "a".repeat(65535),
    "a".repeat(65536),
    "😀".repeat(20000),
  ];
  for (const mask of [false, true]) {
    for (const text of texts) {
      const writer = new FrameWriter({ mask, generateMaskKey: fixedMaskKey });
      writer.writeText(Text, text);
      assert.equal(writer.size, frame(Text, text, { mask }).length);
      assert.deepEqual(taken(writer), frame(Text, text, { mask }));
    }
  }
});

Deno.test("FrameWriter.writeText encodes short text byte-exactly, ASCII or not, wherever the first other character is (RFC 6455 §5.6)", () => {
  const texts = [
    "a".repeat(63) + "\x7f",
    "a".repeat(64),
    "a".repeat(65),
    "a".repeat(63) + "é",
    "é" + "a".repeat(40),
    "abc\x80",
    "😀",
    "a".repeat(30) + "€" + "b".repeat(30),
  ];
  for (const mask of [false, true]) {
    for (const text of texts) {
      const writer = new FrameWriter({ mask, generateMaskKey: fixedMaskKey });
      writer.writeText(Text, text);
      assert.deepEqual(taken(writer), frame(Text, text, { mask }), text);
    }
  }
});

Deno.test("FrameWriter.writeText encodes lone surrogates as U+FFFD (RFC 6455 §5.6)", () => {
  const writer = new FrameWriter();
  writer.writeText(Text, "a\ud800b");
  assert.deepEqual(
    taken(writer),
    serverFrame(Text, Uint8Array.of(0x61, 0xef, 0xbf, 0xbd, 0x62)),
  );
});

Deno.test("FrameWriter encodes FIN, RSV bits and every opcode into the first byte (RFC 6455 §5.2)", () => {
  const writer = new FrameWriter();
  writer.writeFrame(Binary, pattern(1), false);
  writer.writeFrame(Continuation, pattern(1), true, 0x40);
  writer.writeText(Text, "x", false, 0x40);
  writer.writeFrame(Close, new Uint8Array(0));
  const out = taken(writer);
  assert.deepEqual(
    out,
    concat([0x02, 1, 0], [0xc0, 1, 0], [0x41, 1, 0x78], [0x88, 0]),
  );
});

// ---------------------------------------------------------------------------
// RFC 6455 §5.3: client masking
// ---------------------------------------------------------------------------

Deno.test("FrameWriter in the client role masks every frame with a fresh injected key (RFC 6455 §5.3)", () => {
  const keys = [
    Uint8Array.of(1, 2, 3, 4),
    Uint8Array.of(0xff, 0xfe, 0xfd, 0xfc),
    Uint8Array.of(0, 0, 0, 0),
    Uint8Array.of(0xaa, 0x55, 0xaa, 0x55),
  ];
  let next = 0;
  const writer = new FrameWriter({
    mask: true,
    generateMaskKey: (key) => key.set(keys[next++]),
  });
  writer.writeFrame(Binary, pattern(10));
  writer.writeText(Text, "héllo");
  writer.writeFrame(Binary, pattern(20_000));
  writer.writeFrame(Binary, pattern(COPY_LIMIT + 3));
  assert.equal(next, 4);
  assert.deepEqual(
    taken(writer),
    concat(
      frame(Binary, pattern(10), { key: keys[0] }),
      frame(Text, "héllo", { key: keys[1] }),
      frame(Binary, pattern(20_000), { key: keys[2] }),
      frame(Binary, pattern(COPY_LIMIT + 3), { key: keys[3] }),
    ),
  );
});

Deno.test("FrameWriter never modifies the caller's payload, masked or not (RFC 6455 §5.3)", () => {
  for (const mask of [false, true]) {
    for (const length of LENGTHS) {
      const payload = pattern(length, 9);
      const writer = new FrameWriter({ mask, generateMaskKey: fixedMaskKey });
      writer.writeFrame(Binary, payload);
      const out = taken(writer);
      assertBytes(payload, pattern(length, 9));
      assertBytes(out, frame(Binary, payload, { mask }));
    }
  }
});

Deno.test("FrameWriter uses crypto.getRandomValues for keys by default (RFC 6455 §5.3)", () => {
  const keys = new Set<string>();
  for (let i = 0; i < 20; i++) {
    const writer = new FrameWriter({ mask: true });
    writer.writeFrame(Binary, new Uint8Array(8));
    const out = taken(writer);
    assert.equal(out[1], 0x88);
    // Zero payload XOR key = the key, repeated.
    assert.deepEqual(out.subarray(6, 10), out.subarray(2, 6));
    assert.deepEqual(out.subarray(10, 14), out.subarray(2, 6));
    keys.add(out.subarray(2, 6).join());
  }
  assert.ok(keys.size > 1, "keys vary");
});

// ---------------------------------------------------------------------------
// Ownership of the output
// ---------------------------------------------------------------------------

Deno.test("FrameWriter.take() chunks stay intact after more frames are written (shared arena)", () => {
  const a = new FrameWriter();
  const b = new FrameWriter({ mask: true, generateMaskKey: fixedMaskKey });
  a.writeText(Text, "first");
  b.writeFrame(Binary, pattern(100));
  a.writeFrame(Binary, pattern(1000));
  const takenA = a.take();
  const takenB = b.take();
  const snapshotA = concat(...takenA);
  const snapshotB = concat(...takenB);
  assert.deepEqual(
    snapshotA,
    concat(serverFrame(Text, "first"), serverFrame(Binary, pattern(1000))),
  );
  assert.deepEqual(snapshotB, frame(Binary, pattern(100)));
  // Fill and rotate the arena many times, from both writers.
  for (let i = 0; i < 3000; i++) {
    a.writeText(Text, "x".repeat(i % 200));
    b.writeFrame(Binary, pattern(i % 300, i));
    if (i % 7 === 0) a.take();
    if (i % 11 === 0) b.take();
  }
  a.take();
  b.take();
  assert.deepEqual(concat(...takenA), snapshotA);
  assert.deepEqual(concat(...takenB), snapshotB);
});

Deno.test("FrameWriter keeps each writer's frames in order when writers interleave", () => {
  const writers = [new FrameWriter(), new FrameWriter(), new FrameWriter()];
  const expected: Uint8Array[][] = [[], [], []];
  for (let i = 0; i < 500; i++) {
    const w = (i * 7) % 3;
    const payload = pattern((i * 37) % 400, i);
    writers[w].writeFrame(Binary, payload);
    expected[w].push(serverFrame(Binary, payload));
    writers[(w + 1) % 3].writeText(Text, `msg ${i}`);
    expected[(w + 1) % 3].push(serverFrame(Text, `msg ${i}`));
  }
  for (let w = 0; w < 3; w++) {
    const size = writers[w].size;
    const out = taken(writers[w]);
    assert.equal(out.length, size);
    assert.deepEqual(out, concat(...expected[w]));
  }
});

Deno.test("FrameWriter coalesces consecutive small frames into one chunk", () => {
  const writer = new FrameWriter();
  for (let i = 0; i < 10; i++) writer.writeText(Text, `m${i}`);
  const chunks = writer.take();
  assert.equal(chunks.length, 1);
  assert.deepEqual(writer.take(), []);
  assert.equal(writer.size, 0);
});

Deno.test("FrameWriter.writeEncoded references a shared frame (and says whether it did), and take() joins a run of them into one chunk, up to 4 KiB of them", () => {
  // Frames encoded once for many writers (a broadcast), as PreparedMessage
  // holds them.
  const encode = (text: string) => {
    const encoder = new FrameWriter();
    encoder.writeText(Text, text);
    return concat(...encoder.take());
  };
  const first = encode("first");
  const second = encode("second");
  const large = serverFrame(Binary, pattern(20_000, 5));
  // Alone, a shared frame is written as it is: no copy.
  const single = new FrameWriter();
  assert.equal(single.writeEncoded(first), true, "referenced");
  const [only, ...none] = single.take();
  assert.equal(only, first);
  assert.deepEqual(none, []);
  // Right after the writer's own small frame, a small one is copied next to
  // it, and writeEncoded says so.
  const copying = new FrameWriter();
  copying.writeText(Text, "own");
  assert.equal(copying.writeEncoded(first), false, "copied");
  const [joined, ...nothing] = copying.take();
  assertBytes(joined, concat(serverFrame(Text, "own"), first));
  assert.deepEqual(nothing, []);
  // Several, between other writers' frames: one chunk per run of small
  // frames, large ones left as they are, bytes in order.
  const writer = new FrameWriter();
  const interleaved = new FrameWriter();
  writer.writeEncoded(first);
  interleaved.writeText(Text, "another connection's frame");
  writer.writeEncoded(second);
  writer.writeText(Text, "own");
  writer.writeEncoded(large);
  writer.writeEncoded(second);
  writer.writeEncoded(first);
  const size = writer.size;
  const chunks = writer.take();
  assert.equal(chunks.length, 3);
  assert.equal(chunks[1], large);
  assertBytes(
    concat(...chunks),
    concat(first, second, serverFrame(Text, "own"), large, second, first),
  );
  assert.equal(concat(...chunks).length, size);
  // The shared frames themselves are untouched.
  assert.deepEqual(first, encode("first"));
  assert.deepEqual(second, encode("second"));
  // A run copies 4 KiB of shared frames at most (a published message is
  // queued on thousands of sockets): the frames past that go as they are.
  const medium = [1, 2, 3].map((n) => serverFrame(Binary, pattern(1800, n)));
  const capped = new FrameWriter();
  for (const frame of medium) capped.writeEncoded(frame);
  const runs = capped.take();
  assert.equal(runs.length, 2);
  assertBytes(runs[0], concat(medium[0], medium[1]));
  assert.equal(runs[1], medium[2], "referenced, not copied");
});

Deno.test("FrameWriter references an unmasked payload over COPY_LIMIT and copies the rest", () => {
  const big = pattern(COPY_LIMIT + 1);
  const server = new FrameWriter();
  assert.equal(server.writeFrame(Binary, big), true);
  const chunks = server.take();
  assert.ok(chunks.includes(big), "the big payload is referenced");
  assert.equal(server.writeFrame(Binary, pattern(COPY_LIMIT)), false);
  assert.equal(server.writeFrame(Binary, pattern(10)), false);
  const client = new FrameWriter({ mask: true, generateMaskKey: fixedMaskKey });
  assert.equal(client.writeFrame(Binary, big), false);
  assert.ok(!client.take().includes(big));
});

Deno.test("FrameWriter.release(chunks, false) frees the frame buffers it allocated, and nothing else", () => {
  const other = new FrameWriter();
  other.writeFrame(Binary, pattern(30_000, 3));
  const [shared] = other.take(); // as a PreparedMessage keeps its frame
  const big = pattern(COPY_LIMIT + 1);
  const writer = new FrameWriter();
  writer.writeFrame(Binary, pattern(20_000, 1)); // copied into its own buffer
  writer.writeFrame(Binary, pattern(100, 2)); // the shared small-frame arena
  writer.writeFrame(Binary, big); // referenced
  writer.writeEncoded(shared); // another writer's frame, referenced
  const chunks = writer.take();
  assert.equal(chunks.length, 4);
  const [own, small, referenced, encoded] = chunks;
  const bytesBefore = concat(small, referenced, encoded);
  writer.release(chunks, false);
  assert.ok(freed(own), "the copied frame is freed");
  for (const chunk of [small, referenced, encoded]) {
    assert.ok(!freed(chunk));
  }
  assert.deepEqual(concat(small, referenced, encoded), bytesBefore);
  assert.equal(referenced, big);
  // Releasing twice is harmless.
  writer.release(chunks, false);
  assert.ok(!freed(encoded));
  // A client copies big payloads while masking; those copies are its own.
  const client = new FrameWriter({ mask: true, generateMaskKey: fixedMaskKey });
  client.writeFrame(Binary, big);
  const masked = client.take();
  client.release(masked, false);
  assert.ok(freed(masked[0]));
  assert.ok(!freed(big), "the caller's payload is kept");
});

Deno.test("FrameWriter.writeText frees its UTF-8 encoding: at once when copied, on release() when referenced", () => {
  using frees = recordFrees();
  const writer = new FrameWriter();
  const copied = "é".repeat(10_000); // 20000 bytes, copied next to its header
  writer.writeText(Text, copied);
  assert.deepEqual(frees.freed, [20_000]);
  const referenced = "a".repeat(COPY_LIMIT + 1);
  writer.writeText(Text, referenced);
  const chunks = writer.take();
  assert.ok(new TextDecoder().decode(concat(...chunks)).endsWith(referenced));
  assert.deepEqual(frees.freed, [20_000]);
  writer.release(chunks, false);
  assert.deepEqual(frees.freed, [20_000, 20_004, COPY_LIMIT + 1]);
});

Deno.test("FrameWriter.release keeps the last frame buffer for the writer's next large frame, never another writer's", () => {
  const writer = new FrameWriter();
  writer.writeFrame(Binary, pattern(70_000, 1));
  const [first] = writer.take();
  writer.release([first]);
  assert.ok(!freed(first), "kept, not freed");
  // Another writer allocates its own.
  const other = new FrameWriter();
  other.writeFrame(Binary, pattern(70_000, 2));
  const [others] = other.take();
  assert.notEqual(others.buffer, first.buffer);
  // The same writer fills the kept buffer with the new frame, exactly.
  writer.writeFrame(Binary, pattern(60_000, 3));
  const [second] = writer.take();
  assert.equal(second.buffer, first.buffer);
  assertBytes(second, serverFrame(Binary, pattern(60_000, 3)));
  // Until it is released again, the next frame needs a buffer of its own.
  writer.writeFrame(Binary, pattern(60_000, 4));
  const [third] = writer.take();
  assert.notEqual(third.buffer, second.buffer);
  assertBytes(second, serverFrame(Binary, pattern(60_000, 3)));
  // A kept buffer more than twice the frame's size is not used for it.
  writer.release([third]);
  writer.writeFrame(Binary, pattern(20_000, 5));
  const [small] = writer.take();
  assert.notEqual(small.buffer, third.buffer);
  assert.ok(!freed(third));
  // Releasing with keepSpare false frees the kept buffer too.
  writer.release([small], false);
  assert.ok(freed(small) && freed(third));
});

Deno.test("FrameWriter.release keeps up to four frame buffers for the writer's next large frames (a pipelined echo has several in flight), the newest ones", () => {
  const writer = new FrameWriter();
  for (let i = 0; i < 5; i++) writer.writeFrame(Binary, pattern(70_000, i));
  const written = writer.take();
  assert.equal(written.length, 5);
  writer.release(written);
  assert.ok(freed(written[0]), "the oldest goes");
  assert.ok(written.slice(1).every((chunk) => !freed(chunk)), "four kept");
  for (let i = 0; i < 4; i++) writer.writeFrame(Binary, pattern(70_000, 9));
  const again = writer.take();
  assert.deepEqual(
    new Set(again.map((chunk) => chunk.buffer)),
    new Set(written.slice(1).map((chunk) => chunk.buffer)),
  );
  for (const chunk of again) {
    assertBytes(chunk, serverFrame(Binary, pattern(70_000, 9)));
  }
  writer.writeFrame(Binary, pattern(70_000, 10));
  const [fifth] = writer.take();
  assert.ok(!again.some((chunk) => chunk.buffer === fifth.buffer));
  writer.release([...again, fifth], false);
  assert.ok([...again, fifth].every(freed));
});

Deno.test("FrameWriter keeps at most 8 MiB of released frame buffers across all writers", () => {
  const writers = Array.from({ length: 40 }, () => new FrameWriter());
  const released = writers.map((writer) => {
    writer.writeFrame(Binary, pattern(COPY_LIMIT, 1));
    const chunks = writer.take();
    writer.release(chunks);
    return chunks[0];
  });
  try {
    const kept = released.filter((chunk) => !freed(chunk)).length;
    // Another test's writers may hold part of the budget; none may exceed it.
    assert.ok(kept * (COPY_LIMIT + 4) <= 8 * 1024 * 1024, `${kept} kept`);
    assert.ok(kept < writers.length);
  } finally {
    for (const writer of writers) writer.release([], false);
  }
  // Freed spares give their budget back: a new writer can keep one again.
  const writer = new FrameWriter();
  writer.writeFrame(Binary, pattern(COPY_LIMIT, 1));
  const chunks = writer.take();
  writer.release(chunks);
  assert.ok(!freed(chunks[0]));
  writer.release([], false);
});

Deno.test("FrameWriter.size counts every queued byte", () => {
  for (const mask of [false, true]) {
    const writer = new FrameWriter({ mask, generateMaskKey: fixedMaskKey });
    let expected = 0;
    for (const length of LENGTHS) {
      writer.writeFrame(Binary, pattern(length));
      expected += header(Binary, length, { mask }).length + length;
      writer.writeText(Text, "é".repeat(length % 300));
      expected += frame(Text, "é".repeat(length % 300), { mask }).length;
      assert.equal(writer.size, expected);
    }
    assert.equal(taken(writer).length, expected);
    assert.equal(writer.size, 0);
  }
});

Deno.test("FrameWriter refuses frames RFC 6455 does not allow, and payloads of the wrong kind, writing nothing", () => {
  const writer = new FrameWriter();
  const bytes = (n: number) => new Uint8Array(n);
  const refusals: [() => unknown, ErrorConstructor, RegExp][] = [
    [
      () => writer.writeFrame(3, bytes(1)),
      RangeError,
      /opcode must be 0-2 or 8-10 .*got 3$/,
    ],
    [() => writer.writeFrame(99, bytes(1)), RangeError, /got 99$/],
    [() => writer.writeText(11, "x"), RangeError, /got 11$/],
    [
      () => writer.writeFrame(OPCODE.Binary, bytes(1), true, 0x80),
      RangeError,
      /rsv must be a mask of RSV1-RSV3 .*got 128$/,
    ],
    [
      () => writer.writeFrame(OPCODE.Ping, bytes(126)),
      RangeError,
      /control frame must be whole \(fin\) and at most 125 bytes .*got 126 bytes$/,
    ],
    [
      () => writer.writeText(OPCODE.Close, "é".repeat(63)),
      RangeError,
      /got 126 bytes$/,
    ],
    [
      () => writer.writeFrame(OPCODE.Pong, bytes(1), false),
      RangeError,
      /got fin false$/,
    ],
    [
      () => writer.writeFrame(OPCODE.Text, "hi" as never),
      TypeError,
      /payload must be a Uint8Array \(writeText\(\) takes strings\), got string "hi"$/,
    ],
    [
      () => writer.writeText(OPCODE.Text, bytes(2) as never),
      TypeError,
      /text must be a string \(writeFrame\(\) takes bytes\), got Uint8Array$/,
    ],
  ];
  for (const [write, ErrorClass, message] of refusals) {
    assert.throws(
      write,
      (error) =>
        error instanceof ErrorClass && message.test((error as Error).message),
    );
  }
  assert.equal(writer.size, 0);
  // The limits themselves are allowed.
  writer.writeFrame(OPCODE.Ping, bytes(125));
  writer.writeText(OPCODE.Continuation, "x", false, 0x40);
  assert.equal(writer.size, 2 + 125 + 2 + 1);
});
