import assert from "node:assert/strict";
import {
  type FrameHandler,
  FrameParser,
  type FrameParserOptions,
  OPCODE,
  PROTOCOL_ERROR_CODE,
  ProtocolError,
} from "./_core.ts";
import {
  assertBytes,
  clientFrame,
  concat,
  cut,
  header,
  pattern,
  prng,
  SEEDS,
  serverFrame,
  utf8,
} from "./_helpers.ts";

const { Continuation, Text, Binary, Close, Ping, Pong } = OPCODE;
const E = PROTOCOL_ERROR_CODE;

/** What a parser reported: frames with their payload joined, and how. */
interface Parsed {
  frames: {
    opcode: number;
    fin: boolean;
    rsv: number;
    length: number;
    payload: Uint8Array;
  }[];
  /** Payload pieces per frame, in order. */
  pieces: number[][];
  error?: ProtocolError;
}

function recorder(): { parsed: Parsed; handler: FrameHandler } {
  const parsed: Parsed = { frames: [], pieces: [] };
  let parts: Uint8Array[] = [];
  const handler: FrameHandler = {
    onFrameStart(opcode, fin, rsv, length) {
      assert.equal(parts.length, 0, "onFrameStart after onFrameEnd");
      parsed.frames.push({
        opcode,
        fin,
        rsv,
        length,
        payload: new Uint8Array(0),
      });
      parsed.pieces.push([]);
    },
    onFramePayload(data) {
      assert.ok(data.length > 0, "no empty payload pieces");
      parts.push(data.slice());
      parsed.pieces.at(-1)!.push(data.length);
    },
    onFrameEnd() {
      const current = parsed.frames.at(-1)!;
      current.payload = concat(...parts);
      assert.equal(current.payload.length, current.length);
      parts = [];
    },
  };
  return { parsed, handler };
}

/** Parses `chunks` with a fresh parser; records a ProtocolError, if any. */
function parse(
  chunks: Iterable<Uint8Array>,
  options: FrameParserOptions = { role: "server" },
): Parsed {
  const parser = new FrameParser(options);
  const { parsed, handler } = recorder();
  try {
    for (const chunk of chunks) parser.parse(chunk, handler);
  } catch (error) {
    assert.ok(error instanceof ProtocolError);
    parsed.error = error;
  }
  return parsed;
}

/**
 * Parses `fixture` whole, one byte at a time and in random cuts; asserts
 * the same frames (and error code) every way; returns the whole-way result.
 */
function parseAllWays(
  fixture: Uint8Array,
  options: FrameParserOptions = { role: "server" },
): { frames: Parsed["frames"]; error?: string } {
  const summary = ({ frames, error }: Parsed) => ({
    frames,
    error: error?.code,
  });
  const whole = parse([fixture.slice()], options);
  for (
    const chunks of [
      cut(fixture, () => 0, 1),
      ...SEEDS.map((seed) => cut(fixture, prng(seed))),
    ]
  ) {
    assert.deepEqual(summary(parse(chunks, options)), summary(whole));
  }
  return summary(whole);
}

// ---------------------------------------------------------------------------
// RFC 6455 §5.2: base framing
// ---------------------------------------------------------------------------

Deno.test("FrameParser reports opcode, FIN, RSV and length from the header (RFC 6455 §5.2)", () => {
  const fixture = concat(
    clientFrame(Text, "Hel", { fin: false }),
    clientFrame(Continuation, "lo"),
    clientFrame(Ping),
    clientFrame(Binary, pattern(126), { rsv: 0x40 }),
  );
  const { frames, error } = parseAllWays(fixture, {
    role: "server",
    allowedRsv: 0x40,
  });
  assert.equal(error, undefined);
  assert.deepEqual(frames, [
    { opcode: Text, fin: false, rsv: 0, length: 3, payload: utf8("Hel") },
    { opcode: Continuation, fin: true, rsv: 0, length: 2, payload: utf8("lo") },
    { opcode: Ping, fin: true, rsv: 0, length: 0, payload: new Uint8Array(0) },
    {
      opcode: Binary,
      fin: true,
      rsv: 0x40,
      length: 126,
      payload: pattern(126),
    },
  ]);
});

Deno.test("FrameParser reads 16-bit and 64-bit lengths at their boundaries (RFC 6455 §5.2)", () => {
  for (const length of [125, 126, 65535, 65536]) {
    const { frames } = parseAllWays(clientFrame(Binary, pattern(length)));
    assert.equal(frames[0].length, length);
    assertBytes(frames[0].payload, pattern(length));
  }
});

Deno.test("FrameParser reports a 64-bit length up to 2^53 - 1 exactly, before any payload (RFC 6455 §5.2)", () => {
  for (const length of [2 ** 32, 2 ** 32 + 5, 2 ** 40, 2 ** 53 - 1]) {
    const { frames, error } = parse([header(Binary, length)]);
    assert.equal(error, undefined);
    assert.equal(frames.length, 1);
    assert.equal(frames[0].length, length);
  }
});

Deno.test("FrameParser rejects a 64-bit length with the most significant bit set (RFC 6455 §5.2)", () => {
  const head = header(Binary, 0, { lengthBytes: 8 });
  head[2] = 0x80;
  const { frames, error } = parseAllWays(head);
  assert.equal(error, E.InvalidLength);
  assert.deepEqual(frames, []);
});

Deno.test("FrameParser rejects a 64-bit length of 2^53 or more, which a number cannot count exactly (1009), and stays failed: every later parse throws the same error", () => {
  const head = header(Binary, 0, { lengthBytes: 8 });
  head[3] = 0x20; // 2^53
  const { frames, error } = parseAllWays(head);
  assert.equal(error, E.MessageTooBig);
  assert.deepEqual(frames, []);
  const parser = new FrameParser({ role: "server" });
  const handler = {
    onFrameStart() {},
    onFramePayload() {},
    onFrameEnd() {},
  };
  let first: unknown;
  try {
    parser.parse(head.slice(), handler);
  } catch (caught) {
    first = caught;
  }
  assert.ok(first instanceof ProtocolError);
  assert.throws(
    () => parser.parse(clientFrame(Text, "next"), handler),
    (error) => error === first,
  );
});

Deno.test("FrameParser checks a frame's protocol rules before a 64-bit length of 2^53 or more: a control frame or a reserved opcode that long is a protocol error (1002), not 1009", () => {
  for (
    const [opcode, expected] of [[Ping, E.ControlFrameTooLong], [
      0x3,
      E.ReservedOpcode,
    ], [0xb, E.ReservedOpcode]] as const
  ) {
    const head = header(opcode, 0, { lengthBytes: 8 });
    head[3] = 0x20; // 2^53
    assert.equal(parseAllWays(head).error, expected);
  }
});

Deno.test("FrameParser rejects RSV bits that no extension allows (RFC 6455 §5.2)", () => {
  for (const rsv of [0x40, 0x20, 0x10]) {
    assert.equal(
      parseAllWays(clientFrame(Text, "x", { rsv })).error,
      E.ReservedBits,
    );
  }
  const options = { role: "server", allowedRsv: 0x40 } as const;
  assert.equal(
    parseAllWays(clientFrame(Text, "x", { rsv: 0x40 }), options).error,
    undefined,
  );
  for (const rsv of [0x20, 0x10, 0x60]) {
    assert.equal(
      parseAllWays(clientFrame(Text, "x", { rsv }), options).error,
      E.ReservedBits,
    );
  }
});

Deno.test("FrameParser rejects reserved opcodes 3-7 and 0xB-0xF (RFC 6455 §5.2)", () => {
  for (let opcode = 0; opcode < 16; opcode++) {
    const fixture = clientFrame(opcode, "");
    const reserved = (opcode >= 3 && opcode <= 7) || opcode >= 0xb;
    const { error, frames } = parseAllWays(fixture);
    assert.equal(
      error,
      reserved ? E.ReservedOpcode : undefined,
      `0x${opcode.toString(16)}`,
    );
    assert.equal(frames.length, reserved ? 0 : 1);
  }
});

Deno.test("FrameParser validates the whole header before reporting the frame (RFC 6455 §5.2)", () => {
  // Each bad header is followed by payload: onFrameStart is never called.
  for (
    const fixture of [
      clientFrame(3, "abc"),
      clientFrame(Text, "abc", { rsv: 0x10 }),
      clientFrame(Ping, "abc", { fin: false }),
      clientFrame(Pong, pattern(126)),
      serverFrame(Text, "abc"),
    ]
  ) {
    const { frames, error } = parseAllWays(fixture);
    assert.ok(error !== undefined);
    assert.deepEqual(frames, []);
  }
});

// ---------------------------------------------------------------------------
// RFC 6455 §5.1, §5.3: masking
// ---------------------------------------------------------------------------

Deno.test("FrameParser in the server role rejects an unmasked frame (RFC 6455 §5.1)", () => {
  assert.equal(
    parseAllWays(serverFrame(Text, "Hello")).error,
    E.UnmaskedFrame,
  );
  assert.equal(parseAllWays(serverFrame(Close)).error, E.UnmaskedFrame);
});

Deno.test("FrameParser in the client role rejects a masked frame (RFC 6455 §5.1)", () => {
  assert.equal(
    parseAllWays(clientFrame(Text, "Hello"), { role: "client" }).error,
    E.MaskedFrame,
  );
});

Deno.test("FrameParser unmasks payloads in place and hands out views of the chunk (RFC 6455 §5.3)", () => {
  const chunk = clientFrame(Text, "Hello");
  const views: Uint8Array[] = [];
  new FrameParser({ role: "server" }).parse(chunk, {
    onFrameStart() {},
    onFramePayload: (data) => views.push(data),
    onFrameEnd() {},
  });
  assert.equal(views.length, 1);
  assert.equal(views[0].buffer, chunk.buffer);
  assert.equal(views[0].byteOffset, chunk.byteOffset + 6);
  assert.deepEqual(chunk.subarray(6), utf8("Hello"));
});

Deno.test("FrameParser unmasks a payload split at every offset, keeping the key phase (RFC 6455 §5.3)", () => {
  const payload = pattern(37, 100);
  const fixture = clientFrame(Binary, payload, {
    key: Uint8Array.of(0xde, 0xad, 0xbe, 0xef),
  });
  for (let at = 0; at <= fixture.length; at++) {
    const { frames } = parse([fixture.slice(0, at), fixture.slice(at)]);
    assertBytes(frames[0].payload, payload, `split at ${at}`);
  }
});

Deno.test("FrameParser delivers a frame's payload as it arrives, in pieces (RFC 6455 §5.2)", () => {
  const fixture = clientFrame(Binary, pattern(10));
  const parsed = parse([
    fixture.slice(0, 8),
    fixture.slice(8, 12),
    fixture.slice(12),
  ]);
  assert.deepEqual(parsed.pieces, [[2, 4, 4]]);
  const whole = parse([fixture.slice()]);
  assert.deepEqual(whole.pieces, [[10]]);
});

Deno.test("FrameParser handles a header split at every byte and many frames in one chunk (RFC 6455 §5.2)", () => {
  const frames = [
    clientFrame(Text, "a"),
    clientFrame(Binary, pattern(300)),
    clientFrame(Binary, pattern(70_000)),
    clientFrame(Ping),
    clientFrame(Close, Uint8Array.of(3, 0xe8)),
  ];
  const fixture = concat(...frames);
  for (let at = 0; at < 30; at++) {
    const parsed = parse([fixture.slice(0, at), fixture.slice(at)]);
    assert.equal(parsed.error, undefined);
    assert.deepEqual(
      parsed.frames.map((f) => f.length),
      [1, 300, 70_000, 0, 2],
    );
  }
});

// ---------------------------------------------------------------------------
// RFC 6455 §5.5: control frames
// ---------------------------------------------------------------------------

Deno.test("FrameParser rejects fragmented control frames (RFC 6455 §5.5)", () => {
  for (const opcode of [Close, Ping, Pong]) {
    assert.equal(
      parseAllWays(clientFrame(opcode, "", { fin: false })).error,
      E.FragmentedControlFrame,
    );
  }
});

Deno.test("FrameParser rejects control frames over 125 bytes, including a 126-byte ping (RFC 6455 §5.5)", () => {
  for (const opcode of [Close, Ping, Pong]) {
    assert.equal(
      parseAllWays(clientFrame(opcode, pattern(125))).error,
      undefined,
    );
    assert.equal(
      parseAllWays(clientFrame(opcode, pattern(126))).error,
      E.ControlFrameTooLong,
    );
    assert.equal(
      parse([header(opcode, 2 ** 40)]).error?.code,
      E.ControlFrameTooLong,
    );
  }
});

// ---------------------------------------------------------------------------
// RFC 6455 §5.7: examples
// ---------------------------------------------------------------------------

Deno.test("FrameParser parses the §5.7 examples (RFC 6455 §5.7)", () => {
  const client = { role: "client" } as const;
  const hello = Uint8Array.of(0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f);
  assert.deepEqual(parseAllWays(hello, client).frames, [
    { opcode: Text, fin: true, rsv: 0, length: 5, payload: utf8("Hello") },
  ]);
  const masked = Uint8Array.of(
    ...[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58],
  );
  assert.deepEqual(parseAllWays(masked).frames, [
    { opcode: Text, fin: true, rsv: 0, length: 5, payload: utf8("Hello") },
  ]);
  const fragmented = Uint8Array.of(
    ...[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f],
  );
  assert.deepEqual(parseAllWays(fragmented, client).frames, [
    { opcode: Text, fin: false, rsv: 0, length: 3, payload: utf8("Hel") },
    { opcode: Continuation, fin: true, rsv: 0, length: 2, payload: utf8("lo") },
  ]);
  const ping = Uint8Array.of(0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f);
  assert.deepEqual(parseAllWays(ping, client).frames, [
    { opcode: Ping, fin: true, rsv: 0, length: 5, payload: utf8("Hello") },
  ]);
  const pong = Uint8Array.of(
    ...[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58],
  );
  assert.deepEqual(parseAllWays(pong).frames, [
    { opcode: Pong, fin: true, rsv: 0, length: 5, payload: utf8("Hello") },
  ]);
  const binary256 = concat([0x82, 0x7e, 0x01, 0x00], pattern(256));
  assert.deepEqual(parseAllWays(binary256, client).frames[0].length, 256);
  const binary64k = concat(
    [0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0, 0],
    pattern(65536),
  );
  assert.deepEqual(parseAllWays(binary64k, client).frames, [
    {
      opcode: Binary,
      fin: true,
      rsv: 0,
      length: 65536,
      payload: pattern(65536),
    },
  ]);
});

Deno.test("FrameParser.payloadRemaining counts the payload bytes the frame in progress still needs", () => {
  const parser = new FrameParser({ role: "server" });
  const handler: FrameHandler = {
    onFrameStart() {},
    onFramePayload() {},
    onFrameEnd() {},
  };
  const bytes = concat(
    clientFrame(Binary, pattern(1000)),
    clientFrame(Text, utf8("hi")),
  );
  assert.equal(parser.payloadRemaining, 0);
  parser.parse(bytes.subarray(0, 5), handler); // 5 of the 8 header bytes
  assert.equal(parser.payloadRemaining, 0);
  parser.parse(bytes.subarray(5, 308), handler); // header done + 300 bytes
  assert.equal(parser.payloadRemaining, 700);
  parser.parse(bytes.subarray(308, 1008), handler); // the rest of the frame
  assert.equal(parser.payloadRemaining, 0);
  parser.parse(bytes.subarray(1008, 1015), handler); // the next header + 1 byte
  assert.equal(parser.payloadRemaining, 1);
});

Deno.test("FrameParser is unusable after a handler threw anything, not only a ProtocolError: later calls throw it again instead of reading payload bytes as headers", () => {
  const parser = new FrameParser({ role: "server" });
  const bug = new TypeError("handler bug");
  const starts: number[] = [];
  let payloads = 0;
  const handler: FrameHandler = {
    onFrameStart(opcode) {
      starts.push(opcode);
    },
    onFramePayload() {
      if (++payloads === 1) throw bug; // once: a later call must not go on
    },
    onFrameEnd() {},
  };
  const bytes = concat(clientFrame(Binary, "abcdef"), clientFrame(Text, "hi"));
  assert.throws(() => parser.parse(bytes.subarray(0, 9), handler), bug);
  assert.throws(() => parser.parse(bytes.subarray(9), handler), bug);
  assert.deepEqual(starts, [Binary]);
  assert.equal(payloads, 1);
});

Deno.test("FrameParser refuses parse() called from inside a handler callback, which would splice the inner bytes into the outer frame", () => {
  const parser = new FrameParser({ role: "client" });
  let inner: unknown;
  const handler: FrameHandler = {
    onFrameStart() {},
    onFramePayload() {
      try {
        parser.parse(serverFrame(Ping), handler);
      } catch (error) {
        inner = error;
        throw error;
      }
    },
    onFrameEnd() {},
  };
  assert.throws(() => parser.parse(serverFrame(Binary, "abc"), handler), {
    name: "TypeError",
    message: /^Cannot parse: a parse\(\) is under way/,
  });
  assert.ok(inner instanceof TypeError);
});
