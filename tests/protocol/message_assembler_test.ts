import assert from "node:assert/strict";
import {
  type Message,
  MessageAssembler,
  OPCODE,
  PROTOCOL_ERROR_CODE,
  ProtocolError,
} from "./_core.ts";
import {
  concat,
  feedAllWays,
  header,
  pattern,
  recordFrees,
  utf8,
} from "./_helpers.ts";

const { Continuation, Text, Binary } = OPCODE;
const E = PROTOCOL_ERROR_CODE;

function assembler(maxPayload = 1024, maxFragments = 16): MessageAssembler {
  return new MessageAssembler({ maxPayload, maxFragments });
}

/** Runs one frame through `a`: start, the payload in `pieces`, end. */
function frameThrough(
  a: MessageAssembler,
  opcode: number,
  fin: boolean,
  ...pieces: Uint8Array[]
): Message | undefined {
  const length = pieces.reduce((sum, piece) => sum + piece.length, 0);
  a.startFrame(opcode, fin, length);
  for (const piece of pieces) a.append(piece);
  return a.endFrame();
}

function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (error) => {
    assert.ok(error instanceof ProtocolError);
    assert.equal(error.code, code);
    return true;
  });
}

// ---------------------------------------------------------------------------
// RFC 6455 §5.4: fragmentation
// ---------------------------------------------------------------------------

Deno.test("MessageAssembler joins fragments into one message (RFC 6455 §5.4)", () => {
  const a = assembler(1 << 20);
  assert.equal(a.inMessage, false);
  assert.equal(frameThrough(a, Text, false, utf8("Hel")), undefined);
  assert.equal(a.inMessage, true);
  assert.equal(frameThrough(a, Continuation, false), undefined);
  assert.equal(
    frameThrough(a, Continuation, true, utf8("l"), utf8("o")),
    "Hello",
  );
  assert.equal(a.inMessage, false);
  assert.deepEqual(
    frameThrough(a, Binary, false, pattern(3000)),
    undefined,
  );
  assert.deepEqual(
    frameThrough(
      a,
      Continuation,
      true,
      pattern(3000, 3000 % 256),
      pattern(10, 6000 % 256),
    ),
    pattern(6010),
  );
});

Deno.test("MessageAssembler rejects a continuation without a message (RFC 6455 §5.4)", () => {
  throwsCode(
    () => assembler().startFrame(Continuation, true, 0),
    E.UnexpectedContinuation,
  );
  const a = assembler();
  frameThrough(a, Binary, true, pattern(3));
  throwsCode(
    () => a.startFrame(Continuation, false, 1),
    E.UnexpectedContinuation,
  );
});

Deno.test("MessageAssembler rejects a new message inside a fragmented one (RFC 6455 §5.4)", () => {
  for (const opcode of [Text, Binary]) {
    const a = assembler();
    frameThrough(a, Text, false, utf8("a"));
    throwsCode(() => a.startFrame(opcode, true, 1), E.ExpectedContinuation);
  }
});

Deno.test("MessageAssembler returns empty messages for empty frames (RFC 6455 §5.4)", () => {
  const a = assembler();
  assert.equal(frameThrough(a, Text, true), "");
  assert.deepEqual(frameThrough(a, Binary, true), new Uint8Array(0));
  frameThrough(a, Binary, false);
  assert.deepEqual(frameThrough(a, Continuation, true), new Uint8Array(0));
});

// ---------------------------------------------------------------------------
// RFC 6455 §10.4: limits, checked when a frame starts
// ---------------------------------------------------------------------------

Deno.test("MessageAssembler rejects a frame over maxPayload at startFrame (RFC 6455 §10.4)", () => {
  const a = assembler(10);
  throwsCode(() => a.startFrame(Binary, true, 11), E.MessageTooBig);
  const b = assembler(10);
  b.startFrame(Binary, true, 10);
  b.append(pattern(10));
  assert.deepEqual(b.endFrame(), pattern(10));
});

Deno.test("MessageAssembler counts the sum of fragments against maxPayload (RFC 6455 §10.4)", () => {
  const a = assembler(10);
  frameThrough(a, Text, false, utf8("123456"));
  frameThrough(a, Continuation, false, utf8("7890"));
  throwsCode(() => a.startFrame(Continuation, true, 1), E.MessageTooBig);
  const b = assembler(10);
  frameThrough(b, Text, false, utf8("123456"));
  assert.equal(frameThrough(b, Continuation, true, utf8("7890")), "1234567890");
  // The next message starts from zero.
  assert.equal(frameThrough(b, Text, true, utf8("abcdefghij")), "abcdefghij");
});

Deno.test("MessageAssembler rejects more than maxFragments frames per message (RFC 6455 §10.4)", () => {
  const a = assembler(1024, 3);
  frameThrough(a, Binary, false);
  frameThrough(a, Continuation, false);
  frameThrough(a, Continuation, false);
  throwsCode(() => a.startFrame(Continuation, true, 0), E.TooManyFragments);
  const b = assembler(1024, 3);
  for (let i = 0; i < 5; i++) {
    frameThrough(b, Binary, false);
    frameThrough(b, Continuation, false);
    assert.deepEqual(frameThrough(b, Continuation, true), new Uint8Array(0));
  }
});

Deno.test("Connection buffers what arrived, not what was declared, under a huge maxPayload (RFC 6455 §10.4)", () => {
  // Allocating the declared 2^40 bytes would throw a RangeError.
  const fixture = concat(header(Binary, 2 ** 40), pattern(5000));
  const outcome = feedAllWays(fixture, { maxPayload: Number.MAX_SAFE_INTEGER });
  assert.deepEqual(outcome.events, []);
  assert.equal(outcome.state, "open");
  const fragmented = concat(
    header(Binary, 2 ** 40, { fin: false }),
    pattern(5000),
  );
  const second = feedAllWays(fragmented, {
    maxPayload: Number.MAX_SAFE_INTEGER,
  });
  assert.deepEqual(second.events, []);
});

// ---------------------------------------------------------------------------
// RFC 6455 §5.6, §8.1: UTF-8
// ---------------------------------------------------------------------------

Deno.test("MessageAssembler rejects invalid UTF-8 in the append that carries it (RFC 6455 §8.1)", () => {
  const a = assembler();
  a.startFrame(Text, false, 6);
  a.append(utf8("ab"));
  throwsCode(() => a.append(Uint8Array.of(0xc3, 0x28)), E.InvalidUtf8);
  const b = assembler();
  frameThrough(b, Text, false, utf8("ok"));
  b.startFrame(Continuation, true, 100);
  throwsCode(() => b.append(Uint8Array.of(0xff)), E.InvalidUtf8);
  const c = assembler();
  c.startFrame(Text, true, 3);
  throwsCode(() => c.append(Uint8Array.of(0x61, 0x80, 0x62)), E.InvalidUtf8);
});

Deno.test("MessageAssembler decodes short text exactly and rejects any byte that is not UTF-8 in it, at every length (RFC 6455 §8.1)", () => {
  for (let length = 1; length <= 80; length++) {
    const ascii = pattern(length).map((byte) => 0x20 + (byte % 0x60));
    assert.equal(
      frameThrough(assembler(), Text, true, ascii),
      String.fromCharCode(...ascii),
    );
    for (const bad of [0x80, 0xc0, 0xff]) {
      for (const at of [0, length - 1]) {
        const text = ascii.slice();
        text[at] = bad;
        throwsCode(
          () => frameThrough(assembler(), Text, true, text),
          E.InvalidUtf8,
        );
      }
    }
  }
  assert.equal(frameThrough(assembler(), Text, true, utf8("é")), "é");
});

Deno.test("MessageAssembler rejects text that ends inside a sequence at endFrame (RFC 6455 §8.1)", () => {
  const a = assembler();
  frameThrough(a, Text, false, Uint8Array.of(0xe2, 0x82));
  a.startFrame(Continuation, true, 0);
  throwsCode(() => a.endFrame(), E.InvalidUtf8);
  const b = assembler();
  b.startFrame(Text, true, 2);
  b.append(Uint8Array.of(0x61));
  b.append(Uint8Array.of(0xe2));
  throwsCode(() => b.endFrame(), E.InvalidUtf8);
});

Deno.test("MessageAssembler decodes sequences split across appends and fragments (RFC 6455 §5.6)", () => {
  const bytes = utf8("€😀");
  for (let at = 0; at <= bytes.length; at++) {
    const a = assembler();
    assert.equal(
      frameThrough(a, Text, true, bytes.subarray(0, at), bytes.subarray(at)),
      "€😀",
    );
    frameThrough(a, Text, false, bytes.subarray(0, at));
    assert.equal(
      frameThrough(a, Continuation, true, bytes.subarray(at)),
      "€😀",
    );
  }
});

Deno.test("MessageAssembler keeps a byte order mark in text (RFC 6455 §5.6)", () => {
  const bom = Uint8Array.of(0xef, 0xbb, 0xbf);
  const a = assembler();
  assert.equal(frameThrough(a, Text, true, concat(bom, utf8("x"))), "\uFEFFx");
  assert.equal(frameThrough(a, Text, true, bom, utf8("x")), "\uFEFFx");
  frameThrough(a, Text, false, bom);
  assert.equal(frameThrough(a, Continuation, true, utf8("x")), "\uFEFFx");
  // A second message starts with a fresh decoder: its BOM is kept too.
  frameThrough(a, Text, false, bom);
  assert.equal(frameThrough(a, Continuation, true, utf8("y")), "\uFEFFy");
});

// ---------------------------------------------------------------------------
// Ownership
// ---------------------------------------------------------------------------

Deno.test("MessageAssembler returns binary messages it does not share with the input (RFC 6455 §5.3)", () => {
  const a = assembler(1 << 20);
  for (
    const pieces of [
      [pattern(50)],
      [pattern(20), pattern(30, 20)],
      [pattern(5000), pattern(5000, 5000 % 256)],
    ]
  ) {
    const message = frameThrough(a, Binary, true, ...pieces);
    const expected = concat(...pieces);
    for (const piece of pieces) piece.fill(0);
    assert.deepEqual(message, expected);
  }
});

Deno.test("MessageAssembler frees the buffers it outgrows at once, not at garbage collection", () => {
  using frees = recordFrees();
  const a = assembler(1 << 20);
  // 3000 bytes fill a 6000-byte buffer, 8000 a 16000-byte one, and the final
  // frame announces the exact size: 28000.
  frameThrough(a, Binary, false, pattern(3000));
  frameThrough(a, Continuation, false, pattern(5000, 3000 % 256));
  const grown = frameThrough(a, Continuation, true, pattern(20000, 8000 % 256));
  assert.deepEqual(frees.freed, [6000, 16000]);
  assert.ok(grown instanceof Uint8Array && !grown.buffer.detached);
  assert.deepEqual(grown, pattern(28000));
  // A 10000-byte buffer holding 6000 bytes is trimmed by a copy.
  frees.freed.length = 0;
  frameThrough(a, Binary, false, pattern(5000));
  const trimmed = frameThrough(
    a,
    Continuation,
    true,
    pattern(1000, 5000 % 256),
  );
  assert.deepEqual(frees.freed, [10000]);
  assert.deepEqual(trimmed, pattern(6000));
});

Deno.test("MessageAssembler returns independent buffers for consecutive messages (RFC 6455 §5.3)", () => {
  const a = assembler(1 << 20);
  frameThrough(a, Binary, false, pattern(100));
  const first = frameThrough(a, Continuation, true, pattern(100, 100));
  frameThrough(a, Binary, false, pattern(100, 1));
  const second = frameThrough(a, Continuation, true, pattern(100, 101));
  assert.deepEqual(first, pattern(200));
  assert.deepEqual(second, pattern(200, 1));
});

Deno.test("MessageAssembler.partialMessageBytes counts what a message still arriving holds: text and binary, over fragments, 0 once it ends", () => {
  for (const opcode of [Text, Binary]) {
    const assembler = new MessageAssembler({
      maxPayload: 1024,
      maxFragments: 8,
    });
    assert.equal(assembler.partialMessageBytes, 0);
    assembler.startFrame(opcode, false, 10);
    assembler.append(utf8("abcd"));
    assert.equal(assembler.partialMessageBytes, 4);
    assembler.append(utf8("efghij"));
    assert.equal(assembler.endFrame(), undefined);
    assert.equal(assembler.partialMessageBytes, 10, "between fragments");
    assembler.startFrame(Continuation, true, 5);
    assembler.append(utf8("klm"));
    assert.equal(assembler.partialMessageBytes, 13);
    assembler.append(utf8("no"));
    assert.notEqual(assembler.endFrame(), undefined);
    assert.equal(assembler.partialMessageBytes, 0);
  }
});

Deno.test("MessageAssembler.partialMessageBytes is 0 for a streamed message (its pieces are handed on) but counts a compressed one, inflated only at its end", () => {
  const streamed = new MessageAssembler({
    maxPayload: 1024,
    maxFragments: 8,
    onStream: () => {},
  });
  streamed.startFrame(Binary, false, 100);
  streamed.append(new Uint8Array(100));
  assert.equal(streamed.partialMessageBytes, 0);
  const compressed = new MessageAssembler({
    maxPayload: 1024,
    maxFragments: 8,
    inflate: (data) => data.slice(),
    onStream: () => {},
  });
  compressed.startFrame(Binary, false, 100, 0x40);
  compressed.append(new Uint8Array(100));
  assert.equal(compressed.partialMessageBytes, 100);
});

Deno.test("MessageAssembler without inflate refuses RSV1 with RESERVED_BITS (RFC 6455 §5.2: no extension negotiated defines it)", () => {
  const assembler = new MessageAssembler({ maxPayload: 1024, maxFragments: 8 });
  assert.throws(() => assembler.startFrame(Text, true, 2, 0x40), (error) => {
    assert.ok(error instanceof ProtocolError);
    assert.equal(error.code, E.ReservedBits);
    return true;
  });
});
