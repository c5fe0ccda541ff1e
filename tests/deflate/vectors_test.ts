import assert from "node:assert/strict";
import {
  Connection,
  ContextDeflater,
  deflateMessage,
  inflateMessage,
  OPCODE,
  PROTOCOL_ERROR_CODE,
  ProtocolError,
  serve,
} from "../../mod.ts";
import {
  assertFailed,
  clientFrame,
  closeBody,
  concat,
  errorIndex,
  feedAllWays,
  fixedMaskKey,
  header,
  serverFrame,
  utf8,
} from "../protocol/_helpers.ts";
import {
  closePayload,
  DEADLINE,
  decode,
  echo,
  frame as rawFrame,
  LOCAL,
  OP,
  SocketTracker,
  withTimeout,
} from "../server/_helpers.ts";
import {
  ClientInflater,
  deflateConnection,
  deflateOptions,
  negotiated,
  rawDeflateClient,
  RSV1,
} from "./_helpers.ts";

const { Continuation, Text, Binary, Close, Ping, Pong } = OPCODE;
const E = PROTOCOL_ERROR_CODE;

// RFC 7692 §7.2.3: the payloads of its examples.
/** "Hello" compressed, one block, BFINAL unset (§7.2.3.1). */
const HELLO = Uint8Array.of(0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00);
/** A second "Hello" compressed with the first in the window (§7.2.3.2). */
const HELLO_AGAIN = Uint8Array.of(0xf2, 0x00, 0x11, 0x00, 0x00);
/** "Hello" in a stored (uncompressed) block (§7.2.3.3). */
const HELLO_STORED = Uint8Array.of(
  0x00,
  0x05,
  0x00,
  0xfa,
  0xff,
  0x48,
  0x65,
  0x6c,
  0x6c,
  0x6f,
);
/** "Hello" in a block with BFINAL set, then an empty header byte (§7.2.3.4). */
const HELLO_BFINAL = Uint8Array.of(
  0xf3,
  0x48,
  0xcd,
  0xc9,
  0xc9,
  0x07,
  0x00,
  0x00,
);
/** "Hello" in two DEFLATE blocks (§7.2.3.5). */
const HELLO_TWO_BLOCKS = Uint8Array.of(
  0xf2,
  0x48,
  0x05,
  0x00,
  0x00,
  0x00,
  0xff,
  0xff,
  0xca,
  0xc9,
  0xc9,
  0x07,
  0x00,
);

const DEFLATE = {
  perMessageDeflate: deflateOptions(negotiated({ threshold: 0 })),
};
const CLIENT = {
  role: "client",
  generateMaskKey: fixedMaskKey,
  ...DEFLATE,
} as const;
const HELLO_EVENT = { type: "text", data: "Hello" } as const;

// ---------------------------------------------------------------------------
// RFC 7692 §7.2.3: the examples, received
// ---------------------------------------------------------------------------

Deno.test("Connection inflates the compressed 'Hello' of one frame with RSV1 (RFC 7692 §7.2.3.1)", () => {
  const outcome = feedAllWays(clientFrame(Text, HELLO, { rsv: RSV1 }), DEFLATE);
  assert.deepEqual(outcome.events, [HELLO_EVENT]);
  assert.equal(outcome.state, "open");
  assert.equal(outcome.output.length, 0);
});

Deno.test("Connection in the client role inflates the RFC's exact unmasked frame bytes (RFC 7692 §7.2.3.1)", () => {
  const bytes = Uint8Array.of(0xc1, 0x07, ...HELLO);
  assert.deepEqual(feedAllWays(bytes, CLIENT).events, [HELLO_EVENT]);
});

Deno.test("Connection inflates 'Hello' compressed in two fragments, RSV1 on the first only (RFC 7692 §7.2.3.1)", () => {
  // The RFC's frames: 0x41 0x03 0xf2 0x48 0xcd, then 0x80 0x04 0xc9 0xc9 0x07 0x00.
  const unmasked = Uint8Array.of(
    0x41,
    0x03,
    ...HELLO.subarray(0, 3),
    0x80,
    0x04,
    ...HELLO.subarray(3),
  );
  assert.deepEqual(feedAllWays(unmasked, CLIENT).events, [HELLO_EVENT]);
  const masked = concat(
    clientFrame(Text, HELLO.subarray(0, 3), { fin: false, rsv: RSV1 }),
    clientFrame(Continuation, HELLO.subarray(3)),
  );
  assert.deepEqual(feedAllWays(masked, DEFLATE).events, [HELLO_EVENT]);
});

Deno.test("Connection delivers a ping between the fragments of a compressed message first (RFC 6455 §5.4, RFC 7692 §6)", () => {
  const outcome = feedAllWays(
    concat(
      clientFrame(Text, HELLO.subarray(0, 2), { fin: false, rsv: RSV1 }),
      clientFrame(Ping, "p"),
      clientFrame(Continuation, HELLO.subarray(2, 5), { fin: false }),
      clientFrame(Continuation, HELLO.subarray(5)),
    ),
    DEFLATE,
  );
  assert.deepEqual(outcome.events, [
    { type: "ping", data: utf8("p") },
    HELLO_EVENT,
  ]);
  assert.deepEqual(outcome.output, serverFrame(Pong, "p"));
});

Deno.test("Connection inflates the stored-block 'Hello' (RFC 7692 §7.2.3.3)", () => {
  assert.deepEqual(
    feedAllWays(clientFrame(Text, HELLO_STORED, { rsv: RSV1 }), DEFLATE).events,
    [HELLO_EVENT],
  );
});

Deno.test("Connection inflates the 'Hello' whose block has BFINAL set (RFC 7692 §7.2.3.4)", () => {
  assert.deepEqual(
    feedAllWays(clientFrame(Text, HELLO_BFINAL, { rsv: RSV1 }), DEFLATE).events,
    [HELLO_EVENT],
  );
  // A message after it starts afresh: each is inflated on its own.
  assert.deepEqual(
    feedAllWays(
      concat(
        clientFrame(Text, HELLO_BFINAL, { rsv: RSV1 }),
        clientFrame(Text, HELLO, { rsv: RSV1 }),
      ),
      DEFLATE,
    ).events,
    [HELLO_EVENT, HELLO_EVENT],
  );
});

Deno.test("Connection inflates 'Hello' made of two DEFLATE blocks (RFC 7692 §7.2.3.5)", () => {
  assert.deepEqual(
    feedAllWays(clientFrame(Text, HELLO_TWO_BLOCKS, { rsv: RSV1 }), DEFLATE)
      .events,
    [HELLO_EVENT],
  );
});

Deno.test("Connection inflates an empty compressed payload to an empty message (RFC 7692 §7.2.3.6)", () => {
  assert.deepEqual(
    feedAllWays(
      concat(
        clientFrame(Text, new Uint8Array(0), { rsv: RSV1 }),
        clientFrame(Binary, Uint8Array.of(0x00), { rsv: RSV1 }),
      ),
      DEFLATE,
    ).events,
    [{ type: "text", data: "" }, { type: "binary", data: new Uint8Array(0) }],
  );
});

Deno.test("Connection inflates a compressed binary message as bytes, whatever they decode to", () => {
  const bytes = Uint8Array.of(0xff, 0xfe, 0x00, 0x80);
  const payload = deflateMessage(bytes, negotiated());
  assert.deepEqual(
    feedAllWays(clientFrame(Binary, payload, { rsv: RSV1 }), DEFLATE).events,
    [{ type: "binary", data: bytes }],
  );
});

// ---------------------------------------------------------------------------
// RFC 7692 §7.2.3.2: a client that keeps its window though told not to
// ---------------------------------------------------------------------------

Deno.test("Connection fails the context-takeover second 'Hello' with 1007 INVALID_COMPRESSED_DATA: by default the server keeps no client window (RFC 7692 §7.2.3.2)", () => {
  // By default our server answers client_no_context_takeover (RFC 7692
  // §7.1.1.2), so it inflates every message on its own. The RFC's second
  // message refers 5 bytes back into the previous message; for us that
  // is a distance before the start of the data: invalid DEFLATE, 1007.
  const outcome = feedAllWays(
    concat(
      clientFrame(Text, HELLO, { rsv: RSV1 }),
      clientFrame(Text, HELLO_AGAIN, { rsv: RSV1 }),
    ),
    DEFLATE,
  );
  assertFailed(outcome, E.InvalidCompressedData, 1007, {
    before: [HELLO_EVENT],
  });
  assert.match(
    (outcome.events.at(-1) as { message: string }).message,
    /^Compressed message is not valid raw DEFLATE data: /,
  );
});

Deno.test("serve() with permessage-deflate closes with 1007 when a client ignores client_no_context_takeover (RFC 7692 §7.2.3.2)", async () => {
  const tracker = new SocketTracker();
  await using server = serve(
    { ...LOCAL, perMessageDeflate: true },
    tracker.wrap(echo),
  );
  const { peer, extensions } = await rawDeflateClient(server.addr);
  using _ = peer;
  assert.match(extensions ?? "", /client_no_context_takeover/);
  // The first message is echoed (below the threshold: uncompressed).
  await peer.write(rawFrame(OP.text, HELLO, { rsv: RSV1 }));
  const reply = await peer.readFrame();
  assert.deepEqual([reply.opcode, reply.rsv, decode(reply.payload)], [
    OP.text,
    0,
    "Hello",
  ]);
  // The second only makes sense with the first still in a window.
  await peer.write(rawFrame(OP.text, HELLO_AGAIN, { rsv: RSV1 }));
  const close = await peer.readClose();
  assert.deepEqual([close.code, close.reason, close.before], [
    1007,
    E.InvalidCompressedData,
    [],
  ]);
  const info = await tracker.closed(peer.port);
  assert.equal(info.code, 1007);
  assert.equal(info.wasClean, false);
});

Deno.test("serve() with clientNoContextTakeover: false inflates the context-takeover second 'Hello' in the client's window, which uncompressed messages do not enter (RFC 7692 §7.2.3.2, §7.2.2)", async () => {
  const tracker = new SocketTracker();
  await using server = serve(
    { ...LOCAL, perMessageDeflate: { clientNoContextTakeover: false } },
    tracker.wrap(echo),
  );
  const { peer, extensions } = await rawDeflateClient(server.addr);
  using _ = peer;
  assert.equal(extensions, "permessage-deflate; server_no_context_takeover");
  const echoOf = async (payload: Uint8Array, rsv: number) => {
    await peer.write(rawFrame(OP.text, payload, { rsv }));
    const reply = await peer.readFrame();
    assert.equal(reply.opcode, OP.text);
    return decode(reply.payload);
  };
  assert.equal(await echoOf(HELLO, RSV1), "Hello");
  // Five bytes back, five long: the first message's "Hello".
  assert.equal(await echoOf(HELLO_AGAIN, RSV1), "Hello");
  // An uncompressed message is no part of the window (RFC 7692 §7.2.2
  // keeps the window "used to decompress the previous message"): five
  // bytes back is still "Hello", not "World".
  assert.equal(await echoOf(utf8("World"), 0), "World");
  assert.equal(await echoOf(HELLO_AGAIN, RSV1), "Hello");
  await peer.write(rawFrame(OP.close, closePayload(1000)));
  const close = await peer.readClose();
  assert.equal(close.code, 1000);
  assert.equal((await tracker.closed(peer.port)).code, 1000);
});

// ---------------------------------------------------------------------------
// RFC 7692 §7.2.1: what we send
// ---------------------------------------------------------------------------

Deno.test("deflateMessage compresses 'Hello' to the RFC's exact bytes (RFC 7692 §7.2.3.1)", () => {
  assert.deepEqual(deflateMessage(utf8("Hello"), negotiated()), HELLO);
  // Any window from 9 bits gives the same bytes for 5 bytes of input.
  for (let bits = 9; bits <= 15; bits++) {
    assert.deepEqual(
      deflateMessage(utf8("Hello"), {
        serverMaxWindowBits: bits,
        level: 6,
        memLevel: 8,
      }),
      HELLO,
      `${bits} bits`,
    );
  }
});

Deno.test("deflateMessage keeps no state: the second 'Hello' compresses like the first (RFC 7692 §7.2.1)", () => {
  const params = negotiated();
  assert.deepEqual(deflateMessage(utf8("Hello"), params), HELLO);
  assert.deepEqual(deflateMessage(utf8("Hello"), params), HELLO);
});

Deno.test("deflateMessage compresses an empty message to one empty-block byte (RFC 7692 §7.2.3.6)", () => {
  assert.deepEqual(
    deflateMessage(new Uint8Array(0), negotiated()),
    Uint8Array.of(0x00),
  );
  assert.equal(inflateMessage(Uint8Array.of(0x00), 1).length, 0);
});

Deno.test(
  {
    name:
      "inflateMessage treats a maxLength of 0 as the caller's mistake or an empty limit, never as bad peer data",
  },
  () => {
    let result: Uint8Array | undefined;
    try {
      result = inflateMessage(Uint8Array.of(0x00), 0);
    } catch (error) {
      assert.ok(error instanceof RangeError, String(error));
      return;
    }
    assert.equal(result.length, 0);
  },
);

Deno.test("ContextDeflater compresses a second 'Hello' to the RFC's back-reference bytes (RFC 7692 §7.2.3.2)", async () => {
  const deflater = new ContextDeflater(negotiated());
  try {
    assert.deepEqual(await deflater.deflate(utf8("Hello")), HELLO);
    assert.deepEqual(await deflater.deflate(utf8("Hello")), HELLO_AGAIN);
  } finally {
    deflater.close();
  }
});

Deno.test("ContextDeflater creates its zlib stream with the first message: idle ones hold no zlib memory", () => {
  // An eager stream costs about 240 KiB of RSS (window and hash tables).
  const count = 200;
  const before = Deno.memoryUsage().rss;
  const idle = Array.from(
    { length: count },
    () => new ContextDeflater(negotiated()),
  );
  const perDeflater = (Deno.memoryUsage().rss - before) / count;
  assert.ok(
    perDeflater < 64 * 1024,
    `${Math.round(perDeflater / 1024)} KiB of RSS per idle deflater`,
  );
  for (const deflater of idle) deflater.close();
  // That a lazily created stream compresses right: the RFC vector test above.
});

Deno.test("ContextDeflater rejects a message after close()", async () => {
  const deflater = new ContextDeflater(negotiated());
  deflater.close();
  await assert.rejects(deflater.deflate(utf8("Hello")));
});

Deno.test(
  {
    name:
      "ContextDeflater rejects, never resolves empty, a message that close() interrupts",
  },
  async () => {
    const deflater = new ContextDeflater(negotiated());
    await deflater.deflate(utf8("warm"));
    const pending = deflater.deflate(new Uint8Array(65_536).fill(1));
    queueMicrotask(() => deflater.close());
    let payload: Uint8Array | undefined;
    try {
      payload = await pending;
    } catch {
      return; // rejected: fine
    }
    assert.equal(
      new ClientInflater(false).inflate(payload).length,
      65_536,
      "a resolved payload holds the whole message",
    );
  },
);

Deno.test("Connection sends 'Hello' as the RFC's compressed frame, RSV1 set (RFC 7692 §7.2.3.1)", () => {
  const connection = deflateConnection({}, negotiated({ threshold: 0 }));
  connection.sendText("Hello");
  connection.sendBinary(utf8("Hello"));
  assert.deepEqual(
    concat(...connection.takeOutput()),
    concat(
      [0xc1, 0x07],
      HELLO,
      [0xc2, 0x07],
      HELLO,
    ),
  );
});

Deno.test("Connection sends uncompressed below the threshold and with compress false (RFC 7692 §6)", () => {
  const connection = deflateConnection({}, negotiated({ threshold: 6 }));
  connection.sendText("Hello"); // 5 bytes < 6
  connection.sendText("Hello!"); // 6 bytes: compressed
  connection.sendText("Hello!", false);
  connection.sendBinary(utf8("Hello!"), false);
  const expected = concat(
    serverFrame(Text, "Hello"),
    [0xc1],
    [deflateMessage(utf8("Hello!"), negotiated()).length],
    deflateMessage(utf8("Hello!"), negotiated()),
    serverFrame(Text, "Hello!"),
    serverFrame(Binary, "Hello!"),
  );
  assert.deepEqual(concat(...connection.takeOutput()), expected);
});

Deno.test("Connection sendCompressed sends a caller-compressed payload with RSV1, and refuses without negotiation", () => {
  const connection = new Connection({
    role: "server",
    perMessageDeflate: { inflate: inflateMessage, threshold: 1024 },
  });
  connection.sendCompressed(Text, HELLO_AGAIN);
  assert.deepEqual(
    concat(...connection.takeOutput()),
    concat([0xc1, HELLO_AGAIN.length], HELLO_AGAIN),
  );
  const plain = new Connection({ role: "server" });
  assert.throws(() => plain.sendCompressed(Text, HELLO), {
    name: "TypeError",
    message:
      "Cannot send a compressed message: permessage-deflate was not negotiated",
  });
  // Only a data message may be compressed (RFC 7692 §6.1): a control or
  // continuation opcode would make the peer fail the connection.
  for (const opcode of [0x0, 0x3, 0x8, 0x9, 0xa]) {
    assert.throws(() => connection.sendCompressed(opcode, HELLO), {
      name: "TypeError",
      message:
        `Cannot send a compressed message: the opcode must be text (1) or binary (2), got ${opcode}`,
    });
  }
  assert.equal(connection.outputSize, 0);
});

Deno.test("inflateMessage returns a buffer of the message's own size, not zlib's output chunk", () => {
  for (const size of [0, 10, 3000, 20_000]) {
    const data = new Uint8Array(size).map((_, i) => i % 7);
    const inflated = inflateMessage(
      deflateMessage(data, { serverMaxWindowBits: 15, level: 6, memLevel: 8 }),
      1 << 20,
    );
    assert.deepEqual(inflated, data);
    assert.equal(inflated.byteOffset, 0);
    assert.equal(inflated.buffer.byteLength, size, `size ${size}`);
  }
});

// ---------------------------------------------------------------------------
// RFC 7692 §6: where RSV1 may appear
// ---------------------------------------------------------------------------

Deno.test("Connection fails RSV1 on a continuation frame with 1002 (RFC 7692 §6)", () => {
  const outcome = feedAllWays(
    concat(
      clientFrame(Text, HELLO.subarray(0, 3), { fin: false, rsv: RSV1 }),
      clientFrame(Continuation, HELLO.subarray(3), { rsv: RSV1 }),
    ),
    DEFLATE,
  );
  assertFailed(outcome, E.ReservedBits, 1002);
  assert.equal(
    (outcome.events[0] as { message: string }).message,
    "RSV1 is set on a continuation frame (RFC 7692 §6)",
  );
  // Also when the first frame was not compressed.
  assertFailed(
    feedAllWays(
      concat(
        clientFrame(Text, "Hel", { fin: false }),
        clientFrame(Continuation, HELLO, { rsv: RSV1 }),
      ),
      DEFLATE,
    ),
    E.ReservedBits,
    1002,
  );
});

Deno.test("Connection fails RSV1 on a control frame with 1002 (RFC 7692 §6.1)", () => {
  for (
    const [opcode, payload] of [
      [Ping, utf8("p")],
      [Pong, utf8("p")],
      [Close, closeBody(1000)],
    ] as const
  ) {
    const outcome = feedAllWays(
      concat(
        clientFrame(Text, HELLO, { rsv: RSV1 }),
        clientFrame(opcode, payload, { rsv: RSV1 }),
      ),
      DEFLATE,
    );
    assertFailed(outcome, E.ReservedBits, 1002, { before: [HELLO_EVENT] });
    assert.equal(
      (outcome.events.at(-1) as { message: string }).message,
      "RSV1 is set on a control frame (RFC 7692 §6.1)",
    );
  }
});

Deno.test("Connection fails RSV1 without a negotiated extension with 1002 (RFC 6455 §5.2)", () => {
  const outcome = feedAllWays(clientFrame(Text, HELLO, { rsv: RSV1 }));
  assertFailed(outcome, E.ReservedBits, 1002);
  // The failure comes with the header, before any payload is read.
  assert.equal(
    errorIndex(clientFrame(Text, HELLO, { rsv: RSV1 })),
    header(Text, HELLO.length).length - 1,
  );
});

Deno.test("Connection fails RSV2 and RSV3 with 1002 even with permessage-deflate (RFC 7692 §6)", () => {
  for (const rsv of [0x20, 0x10, 0x60, 0x70]) {
    assertFailed(
      feedAllWays(clientFrame(Text, HELLO, { rsv }), DEFLATE),
      E.ReservedBits,
      1002,
    );
  }
});

Deno.test("serve() with permessage-deflate fails RSV1 from a client that did not offer it with 1002 (RFC 7692 §6)", async () => {
  const tracker = new SocketTracker();
  await using server = serve(
    { ...LOCAL, perMessageDeflate: true },
    tracker.wrap(async (socket) => {
      assert.equal(socket.perMessageDeflate, undefined);
      await echo(socket);
    }),
  );
  const { peer, extensions } = await rawDeflateClient(server.addr, null);
  using _ = peer;
  assert.equal(extensions, null);
  await peer.write(rawFrame(OP.text, HELLO, { rsv: RSV1 }));
  const close = await peer.readClose();
  assert.deepEqual([close.code, close.reason, close.before], [
    1002,
    E.ReservedBits,
    [],
  ]);
  assert.equal((await tracker.closed(peer.port)).code, 1002);
});

Deno.test("serve() without permessage-deflate ignores the offer and fails RSV1 with 1002 (RFC 6455 §5.2)", async () => {
  await using server = serve(LOCAL, echo);
  const { peer, extensions } = await rawDeflateClient(server.addr);
  using _ = peer;
  assert.equal(extensions, null);
  await peer.write(rawFrame(OP.text, HELLO, { rsv: RSV1 }));
  const close = await peer.readClose();
  assert.equal(close.code, 1002);
  // The server's socket was built without an inflater: RSV1 is a plain
  // reserved bit, failed by the frame parser.
  assert.equal(close.reason, E.ReservedBits);
});

// ---------------------------------------------------------------------------
// RFC 7692 §8.1 and RFC 6455 §8.1: data that does not inflate, or not to UTF-8
// ---------------------------------------------------------------------------

Deno.test("Connection fails bad compressed data with 1007, after delivering earlier messages and answering their ping (RFC 7692 §8.1)", () => {
  const bad = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0x00);
  const outcome = feedAllWays(
    concat(
      clientFrame(Text, HELLO, { rsv: RSV1 }),
      clientFrame(Text, "plain"),
      clientFrame(Ping, "p"),
      clientFrame(Binary, bad, { rsv: RSV1 }),
      // Ignored: nothing is read after the failure.
      clientFrame(Text, HELLO, { rsv: RSV1 }),
    ),
    DEFLATE,
  );
  assertFailed(outcome, E.InvalidCompressedData, 1007, {
    before: [
      HELLO_EVENT,
      { type: "text", data: "plain" },
      { type: "ping", data: utf8("p") },
    ],
    outputBefore: serverFrame(Pong, "p"),
  });
});

Deno.test("Connection fails text that inflates to invalid UTF-8 with 1007 INVALID_UTF8 (RFC 6455 §8.1)", () => {
  for (
    const bytes of [
      Uint8Array.of(0xff, 0xfe, 0x41),
      Uint8Array.of(0x48, 0xc3), // cut mid-sequence
      Uint8Array.of(0xed, 0xa0, 0x80), // a surrogate
    ]
  ) {
    const payload = deflateMessage(bytes, negotiated());
    assertFailed(
      feedAllWays(
        concat(
          clientFrame(Text, HELLO, { rsv: RSV1 }),
          clientFrame(Text, payload, { rsv: RSV1 }),
        ),
        DEFLATE,
      ),
      E.InvalidUtf8,
      1007,
      { before: [HELLO_EVENT] },
    );
  }
});

Deno.test("inflateMessage throws ProtocolError INVALID_COMPRESSED_DATA with close code 1007", () => {
  assert.throws(
    () => inflateMessage(Uint8Array.of(0xff, 0xff, 0xff), 1024),
    (error: unknown) => {
      assert.ok(error instanceof ProtocolError);
      assert.equal(error.code, E.InvalidCompressedData);
      assert.equal(error.closeCode, 1007);
      return true;
    },
  );
});

Deno.test("Connection fails a compressed frame declared past maxPayload at its header, before buffering (RFC 6455 §10.4)", () => {
  const options = { maxPayload: 100, ...DEFLATE };
  const fixture = concat(
    header(Text, 101, { rsv: RSV1 }),
    new Uint8Array(101),
  );
  const index = errorIndex(fixture, options);
  assert.equal(index, header(Text, 101, { rsv: RSV1 }).length - 1);
  assertFailed(
    feedAllWays(header(Text, 101, { rsv: RSV1 }), options),
    E.MessageTooBig,
    1009,
  );
});

Deno.test("Connection bounds inflation at maxPayload: exactly maxPayload passes, one byte more is 1009 (RFC 6455 §10.4)", () => {
  const params = negotiated();
  const options = { maxPayload: 1000, ...DEFLATE };
  const fits = deflateMessage(new Uint8Array(1000), params);
  assert.ok(fits.length < 100);
  assert.deepEqual(
    feedAllWays(clientFrame(Binary, fits, { rsv: RSV1 }), options).events,
    [{ type: "binary", data: new Uint8Array(1000) }],
  );
  const outcome = feedAllWays(
    clientFrame(Binary, deflateMessage(new Uint8Array(1001), params), {
      rsv: RSV1,
    }),
    options,
  );
  assertFailed(outcome, E.MessageTooBig, 1009);
  assert.equal(
    (outcome.events[0] as { message: string }).message,
    "Compressed message inflates past maxPayload (1000)",
  );
});

Deno.test("serve() answers a compressed 'Hello' from a raw client and keeps the connection open", async () => {
  await using server = serve(
    { ...LOCAL, perMessageDeflate: { threshold: 0 } },
    echo,
  );
  const { peer } = await rawDeflateClient(server.addr);
  using _ = peer;
  await peer.write(rawFrame(OP.text, HELLO, { rsv: RSV1 }));
  const reply = await peer.readFrame();
  // Threshold 0: the echo is compressed too, to the same bytes.
  assert.deepEqual(
    [reply.fin, reply.rsv, reply.opcode, [...reply.payload]],
    [true, RSV1, OP.text, [...HELLO]],
  );
  await peer.write(rawFrame(OP.close, closePayload(1000)));
  const close = await withTimeout(peer.readClose(), DEADLINE, "the close");
  assert.equal(close.code, 1000);
});
