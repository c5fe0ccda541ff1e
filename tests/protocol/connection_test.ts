import assert from "node:assert/strict";
import {
  CLOSE_CODE,
  Connection,
  DEFAULT_MAX_FRAGMENTS,
  DEFAULT_MAX_PAYLOAD,
  deflateMessage,
  inflateMessage,
  OPCODE,
  PROTOCOL_ERROR_CODE,
  ProtocolError,
} from "./_core.ts";
import {
  assertFailed,
  clientFrame,
  closeBody,
  concat,
  cut,
  errorIndex,
  feed,
  feedAllWays,
  fixedMaskKey,
  frame,
  header,
  MASK_KEY,
  pattern,
  recordFrees,
  serverFrame,
  splitAt,
  utf8,
} from "./_helpers.ts";

const { Continuation, Text, Binary, Close, Ping, Pong } = OPCODE;
const E = PROTOCOL_ERROR_CODE;
const CLIENT = { role: "client", generateMaskKey: fixedMaskKey } as const;

// ---------------------------------------------------------------------------
// RFC 6455 §5.1: masking requirements of each role
// ---------------------------------------------------------------------------

Deno.test("Connection fails an unmasked client frame with 1002 UNMASKED_FRAME (RFC 6455 §5.1)", () => {
  assertFailed(
    feedAllWays(serverFrame(Text, "Hello")),
    E.UnmaskedFrame,
    1002,
  );
});

Deno.test("Connection fails an unmasked client control frame with 1002 (RFC 6455 §5.1)", () => {
  assertFailed(feedAllWays(serverFrame(Ping, "x")), E.UnmaskedFrame, 1002);
});

Deno.test("Connection fails an unmasked frame that follows masked ones, keeping earlier messages (RFC 6455 §5.1)", () => {
  assertFailed(
    feedAllWays(concat(clientFrame(Text, "a"), serverFrame(Text, "b"))),
    E.UnmaskedFrame,
    1002,
    { before: [{ type: "text", data: "a" }] },
  );
});

Deno.test("Connection in the client role fails a masked server frame with 1002 MASKED_FRAME (RFC 6455 §5.1)", () => {
  assertFailed(
    feedAllWays(clientFrame(Text, "Hello"), CLIENT),
    E.MaskedFrame,
    1002,
    { role: "client" },
  );
});

Deno.test("Connection in the client role accepts unmasked server frames (RFC 6455 §5.1)", () => {
  const outcome = feedAllWays(serverFrame(Binary, pattern(300)), CLIENT);
  assert.deepEqual(outcome.events, [{ type: "binary", data: pattern(300) }]);
  assert.equal(outcome.output.length, 0);
});

// ---------------------------------------------------------------------------
// RFC 6455 §5.2: base framing
// ---------------------------------------------------------------------------

for (const rsv of [0x40, 0x20, 0x10, 0x70]) {
  Deno.test(
    `Connection fails RSV bits 0x${
      rsv.toString(16)
    } without a negotiated extension with 1002 (RFC 6455 §5.2)`,
    () => {
      assertFailed(
        feedAllWays(clientFrame(Text, "Hello", { rsv })),
        E.ReservedBits,
        1002,
      );
    },
  );
}

Deno.test("Connection fails RSV bits on a control frame with 1002 (RFC 6455 §5.2)", () => {
  assertFailed(
    feedAllWays(clientFrame(Ping, "", { rsv: 0x40 })),
    E.ReservedBits,
    1002,
  );
});

for (const opcode of [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
  Deno.test(
    `Connection fails reserved opcode 0x${
      opcode.toString(16)
    } with 1002 (RFC 6455 §5.2)`,
    () => {
      assertFailed(
        feedAllWays(clientFrame(opcode, "x")),
        E.ReservedOpcode,
        1002,
      );
    },
  );
}

Deno.test("Connection fails a reserved opcode inside a fragmented message with 1002 (RFC 6455 §5.2)", () => {
  assertFailed(
    feedAllWays(
      concat(clientFrame(Text, "a", { fin: false }), clientFrame(3, "")),
    ),
    E.ReservedOpcode,
    1002,
  );
});

Deno.test("Connection fails a 64-bit length with the most significant bit set, at its header (RFC 6455 §5.2)", () => {
  const head = header(Binary, 0, { lengthBytes: 8 });
  head[2] = 0x80; // 2^63
  assertFailed(feedAllWays(head), E.InvalidLength, 1002);
  assert.equal(errorIndex(concat(head, pattern(64))), head.length - 1);
  head[2] = 0xff;
  head[9] = 0xff;
  assertFailed(feedAllWays(head), E.InvalidLength, 1002);
});

Deno.test("Connection reads 7-bit, 16-bit and 64-bit lengths at their boundaries (RFC 6455 §5.2)", () => {
  const sizes = [0, 1, 125, 126, 127, 65535, 65536];
  const fixture = concat(...sizes.map((n) => clientFrame(Binary, pattern(n))));
  const outcome = feedAllWays(fixture);
  assert.deepEqual(
    outcome.events,
    sizes.map((n) => ({ type: "binary", data: pattern(n) })),
  );
  assert.equal(outcome.output.length, 0);
  assert.equal(outcome.state, "open");
});

Deno.test("Connection accepts a length in a longer encoding than needed (RFC 6455 §5.2)", () => {
  // Minimal encoding binds the sender; a receiver that accepts the longer
  // form interoperates with more peers and loses nothing.
  const fixture = concat(
    clientFrame(Text, "Hi", { lengthBytes: 2 }),
    clientFrame(Text, "Yo", { lengthBytes: 8 }),
  );
  assert.deepEqual(feedAllWays(fixture).events, [
    { type: "text", data: "Hi" },
    { type: "text", data: "Yo" },
  ]);
});

// ---------------------------------------------------------------------------
// RFC 6455 §5.3: masking and buffer ownership
// ---------------------------------------------------------------------------

Deno.test("Connection unmasks with each frame's own key (RFC 6455 §5.3)", () => {
  const fixture = concat(
    clientFrame(Text, "first", { key: Uint8Array.of(1, 2, 3, 4) }),
    clientFrame(Text, "second", { key: Uint8Array.of(0xff, 0, 0x80, 7) }),
    clientFrame(Text, "third", { key: Uint8Array.of(0, 0, 0, 0) }),
  );
  assert.deepEqual(feedAllWays(fixture).events, [
    { type: "text", data: "first" },
    { type: "text", data: "second" },
    { type: "text", data: "third" },
  ]);
});

Deno.test("Connection delivers binary messages as fresh copies of the input (RFC 6455 §5.3)", () => {
  for (
    const chunks of [
      [clientFrame(Binary, pattern(100))],
      splitAt(clientFrame(Binary, pattern(100)), 10, 50),
      [concat(
        clientFrame(Binary, pattern(40), { fin: false }),
        clientFrame(Continuation, pattern(60, 40)),
      )],
      [clientFrame(Binary, pattern(70_000))],
    ]
  ) {
    const connection = new Connection({ role: "server" });
    for (const chunk of chunks) connection.receive(chunk);
    const [event] = connection.takeEvents();
    assert.equal(event.type, "binary");
    const expected = pattern(event.data.length);
    for (const chunk of chunks) chunk.fill(0xee);
    assert.deepEqual(event.data, expected);
    assert.ok(event.data.buffer !== chunks[0].buffer);
  }
});

Deno.test("Connection delivers ping and pong payloads as copies of the input (RFC 6455 §5.3)", () => {
  const chunk = concat(clientFrame(Ping, "ping!"), clientFrame(Pong, "pong!"));
  const connection = new Connection({ role: "server" });
  connection.receive(chunk);
  chunk.fill(0);
  assert.deepEqual(connection.takeEvents(), [
    { type: "ping", data: utf8("ping!") },
    { type: "pong", data: utf8("pong!") },
  ]);
  assert.deepEqual(
    concat(...connection.takeOutput()),
    serverFrame(Pong, "ping!"),
  );
});

Deno.test("Connection answers a ping with its payload even when the caller mutates the ping event (RFC 6455 §5.5.3)", () => {
  const connection = new Connection({ role: "server" });
  connection.receive(clientFrame(Ping, "Hello"));
  const [event] = connection.takeEvents();
  assert.equal(event.type, "ping");
  event.data.fill(0x21);
  assert.deepEqual(
    concat(...connection.takeOutput()),
    serverFrame(Pong, "Hello"),
  );
});

Deno.test("Connection output chunks stay intact after later sends (RFC 6455 §5.3)", () => {
  const connection = new Connection({ role: "server" });
  connection.sendText("first");
  const first = connection.takeOutput();
  const snapshot = concat(...first);
  for (let i = 0; i < 2000; i++) connection.sendBinary(pattern(100, i));
  connection.takeOutput();
  assert.deepEqual(concat(...first), snapshot);
  assert.deepEqual(snapshot, serverFrame(Text, "first"));
});

// ---------------------------------------------------------------------------
// RFC 6455 §5.4: fragmentation
// ---------------------------------------------------------------------------

Deno.test("Connection assembles a fragmented text message (RFC 6455 §5.4)", () => {
  const fixture = concat(
    clientFrame(Text, "Hel", { fin: false }),
    clientFrame(Continuation, "lo"),
  );
  const outcome = feedAllWays(fixture);
  assert.deepEqual(outcome.events, [{ type: "text", data: "Hello" }]);
  assert.equal(outcome.output.length, 0);
});

Deno.test("Connection assembles a fragmented binary message with empty fragments (RFC 6455 §5.4)", () => {
  const fixture = concat(
    clientFrame(Binary, new Uint8Array(0), { fin: false }),
    clientFrame(Continuation, pattern(5000), { fin: false }),
    clientFrame(Continuation, new Uint8Array(0), { fin: false }),
    clientFrame(Continuation, pattern(3000, 5000 % 256)),
    clientFrame(Binary, new Uint8Array(0)),
    clientFrame(Text, ""),
    clientFrame(Text, "", { fin: false }),
    clientFrame(Continuation, ""),
  );
  assert.deepEqual(feedAllWays(fixture).events, [
    { type: "binary", data: pattern(8000) },
    { type: "binary", data: new Uint8Array(0) },
    { type: "text", data: "" },
    { type: "text", data: "" },
  ]);
});

Deno.test("Connection fails a continuation frame without a message to continue with 1002 (RFC 6455 §5.4)", () => {
  assertFailed(
    feedAllWays(clientFrame(Continuation, "lo")),
    E.UnexpectedContinuation,
    1002,
  );
  assertFailed(
    feedAllWays(concat(clientFrame(Text, "Hello"), clientFrame(Continuation))),
    E.UnexpectedContinuation,
    1002,
    { before: [{ type: "text", data: "Hello" }] },
  );
});

Deno.test("Connection fails a new data frame inside a fragmented message with 1002 (RFC 6455 §5.4)", () => {
  for (const opcode of [Text, Binary]) {
    assertFailed(
      feedAllWays(
        concat(
          clientFrame(Binary, "ab", { fin: false }),
          clientFrame(opcode, "cd"),
        ),
      ),
      E.ExpectedContinuation,
      1002,
    );
  }
});

Deno.test("Connection answers a ping between fragments and still assembles the message (RFC 6455 §5.4)", () => {
  const fixture = concat(
    clientFrame(Text, "Hel", { fin: false }),
    clientFrame(Ping, "mid"),
    clientFrame(Continuation, "l", { fin: false }),
    clientFrame(Pong, "beat"),
    clientFrame(Continuation, "o"),
  );
  const outcome = feedAllWays(fixture);
  assert.deepEqual(outcome.events, [
    { type: "ping", data: utf8("mid") },
    { type: "pong", data: utf8("beat") },
    { type: "text", data: "Hello" },
  ]);
  assert.deepEqual(outcome.output, serverFrame(Pong, "mid"));
});

Deno.test("Connection handles a close frame between fragments, dropping the unfinished message (RFC 6455 §5.4)", () => {
  const fixture = concat(
    clientFrame(Text, "Hel", { fin: false }),
    clientFrame(Close, closeBody(1001)),
    clientFrame(Continuation, "lo"),
  );
  const outcome = feedAllWays(fixture);
  assert.deepEqual(outcome.events, [
    { type: "close", code: 1001, reason: "" },
  ]);
  assert.deepEqual(outcome.output, serverFrame(Close, closeBody(1001)));
});

Deno.test("Connection fails a message of more than maxFragments frames with 1009 (RFC 6455 §10.4)", () => {
  const three = concat(
    clientFrame(Binary, "a", { fin: false }),
    clientFrame(Continuation, "b", { fin: false }),
    clientFrame(Continuation, "c"),
  );
  const accepted = feedAllWays(three, { maxFragments: 3 });
  assert.deepEqual(accepted.events, [{ type: "binary", data: utf8("abc") }]);
  const rejected = feedAllWays(three, { maxFragments: 2 });
  assertFailed(rejected, E.TooManyFragments, 1009);
  // Rejected at the header of the third frame, before its payload.
  assert.equal(errorIndex(three, { maxFragments: 2 }), 2 * 7 + 5);
});

Deno.test("Connection counts maxFragments per message (RFC 6455 §10.4)", () => {
  const message = concat(
    clientFrame(Text, "a", { fin: false }),
    clientFrame(Continuation, "b"),
  );
  const outcome = feedAllWays(concat(message, message, message), {
    maxFragments: 2,
  });
  assert.deepEqual(outcome.events, [
    { type: "text", data: "ab" },
    { type: "text", data: "ab" },
    { type: "text", data: "ab" },
  ]);
});

Deno.test("Connection has 16 MiB and 4096 fragments as default limits (RFC 6455 §10.4)", () => {
  assert.equal(DEFAULT_MAX_PAYLOAD, 16 * 1024 * 1024);
  assert.equal(DEFAULT_MAX_FRAGMENTS, 4096);
  assertFailed(
    feedAllWays(header(Binary, DEFAULT_MAX_PAYLOAD + 1)),
    E.MessageTooBig,
    1009,
  );
  assert.deepEqual(feedAllWays(header(Binary, DEFAULT_MAX_PAYLOAD)).events, []);
  const fragments = [clientFrame(Text, "", { fin: false })];
  for (let i = 1; i < DEFAULT_MAX_FRAGMENTS; i++) {
    fragments.push(clientFrame(Continuation, "", { fin: false }));
  }
  const accepted = feedAllWays(concat(...fragments));
  assert.deepEqual(accepted.events, []);
  assertFailed(
    feedAllWays(concat(...fragments, clientFrame(Continuation))),
    E.TooManyFragments,
    1009,
  );
});

// ---------------------------------------------------------------------------
// RFC 6455 §10.4: maxPayload, enforced before any payload is buffered
// ---------------------------------------------------------------------------

Deno.test("Connection fails a frame declaring 2^40 bytes with 1009 from its header alone (RFC 6455 §10.4)", () => {
  const head = header(Binary, 2 ** 40);
  const connection = new Connection({ role: "server" });
  connection.receive(head.slice());
  const events = connection.takeEvents();
  assert.equal(events.length, 1);
  assert.equal(events[0].type, "error");
  assert.equal(connection.state, "closed");
  assert.deepEqual(
    concat(...connection.takeOutput()),
    serverFrame(Close, closeBody(1009, E.MessageTooBig)),
  );
  assertFailed(feedAllWays(head), E.MessageTooBig, 1009);
  assert.equal(errorIndex(concat(head, pattern(100))), head.length - 1);
});

Deno.test("Connection accepts a message of exactly maxPayload bytes and fails one more with 1009 (RFC 6455 §10.4)", () => {
  const accepted = feedAllWays(clientFrame(Binary, pattern(100)), {
    maxPayload: 100,
  });
  assert.deepEqual(accepted.events, [{ type: "binary", data: pattern(100) }]);
  const fixture = clientFrame(Binary, pattern(101));
  assertFailed(
    feedAllWays(fixture, { maxPayload: 100 }),
    E.MessageTooBig,
    1009,
  );
  assert.equal(errorIndex(fixture, { maxPayload: 100 }), 5);
});

Deno.test("Connection counts every fragment of a message against maxPayload (RFC 6455 §10.4)", () => {
  const first = clientFrame(Text, "12345", { fin: false });
  const second = clientFrame(Continuation, "67890", { fin: false });
  const third = clientFrame(Continuation, "!");
  const fixture = concat(first, second, third);
  const accepted = feedAllWays(fixture, { maxPayload: 11 });
  assert.deepEqual(accepted.events, [{ type: "text", data: "1234567890!" }]);
  assertFailed(feedAllWays(fixture, { maxPayload: 10 }), E.MessageTooBig, 1009);
  // Rejected at the third header: no byte of its payload is needed.
  assert.equal(
    errorIndex(fixture, { maxPayload: 10 }),
    first.length + second.length + 5,
  );
});

Deno.test("Connection counts maxPayload per message, not per connection (RFC 6455 §10.4)", () => {
  const fixture = concat(
    clientFrame(Binary, pattern(10)),
    clientFrame(Binary, pattern(6), { fin: false }),
    clientFrame(Continuation, pattern(4)),
    clientFrame(Text, "0123456789"),
  );
  assert.equal(
    feedAllWays(fixture, { maxPayload: 10 }).events.length,
    3,
  );
});

Deno.test("Connection does not count control frames against maxPayload (RFC 6455 §10.4)", () => {
  const fixture = concat(
    clientFrame(Text, "1234", { fin: false }),
    clientFrame(Ping, "12345678"),
    clientFrame(Continuation, "5"),
  );
  const outcome = feedAllWays(fixture, { maxPayload: 5 });
  assert.deepEqual(outcome.events, [
    { type: "ping", data: utf8("12345678") },
    { type: "text", data: "12345" },
  ]);
});

Deno.test("Connection rejects limits that are not positive integers with RangeError", () => {
  for (const value of [0, -1, 1.5, NaN, Infinity, 2 ** 53]) {
    assert.throws(
      () => new Connection({ role: "server", maxPayload: value }),
      RangeError,
    );
    assert.throws(
      () => new Connection({ role: "server", maxFragments: value }),
      RangeError,
    );
  }
});

// ---------------------------------------------------------------------------
// RFC 6455 §5.5: control frames
// ---------------------------------------------------------------------------

for (
  const [name, opcode] of [["ping", Ping], ["pong", Pong], [
    "close",
    Close,
  ]] as const
) {
  Deno.test(`Connection fails a fragmented ${name} frame with 1002 (RFC 6455 §5.5)`, () => {
    const payload = opcode === Close ? closeBody(1000) : utf8("x");
    assertFailed(
      feedAllWays(clientFrame(opcode, payload, { fin: false })),
      E.FragmentedControlFrame,
      1002,
    );
  });

  Deno.test(`Connection fails a 126-byte ${name} with 1002 (RFC 6455 §5.5)`, () => {
    const payload = opcode === Close
      ? closeBody(1000, "x".repeat(124))
      : pattern(126);
    assert.equal(payload.length, 126);
    const fixture = clientFrame(opcode, payload);
    assertFailed(feedAllWays(fixture), E.ControlFrameTooLong, 1002);
    // Rejected at the header, before any payload byte.
    assert.equal(errorIndex(fixture), 7);
  });
}

Deno.test("Connection fails a ping declaring a 64-bit length with 1002 (RFC 6455 §5.5)", () => {
  assertFailed(
    feedAllWays(header(Ping, 2 ** 32)),
    E.ControlFrameTooLong,
    1002,
  );
});

Deno.test("Connection fails a fragmented ping inside a fragmented message with 1002 (RFC 6455 §5.5)", () => {
  assertFailed(
    feedAllWays(
      concat(
        clientFrame(Text, "a", { fin: false }),
        clientFrame(Ping, "", { fin: false }),
      ),
    ),
    E.FragmentedControlFrame,
    1002,
  );
});

Deno.test("Connection accepts 125-byte control frames (RFC 6455 §5.5)", () => {
  const fixture = concat(
    clientFrame(Ping, pattern(125)),
    clientFrame(Pong, pattern(125, 7)),
  );
  const outcome = feedAllWays(fixture);
  assert.deepEqual(outcome.events, [
    { type: "ping", data: pattern(125) },
    { type: "pong", data: pattern(125, 7) },
  ]);
  assert.deepEqual(outcome.output, serverFrame(Pong, pattern(125)));
});

// ---------------------------------------------------------------------------
// RFC 6455 §5.5.1: close frames
// ---------------------------------------------------------------------------

Deno.test("Connection echoes a close frame with the same code and reason and closes cleanly (RFC 6455 §5.5.1)", () => {
  const outcome = feedAllWays(clientFrame(Close, closeBody(1000, "bye")));
  assert.deepEqual(outcome.events, [
    { type: "close", code: 1000, reason: "bye" },
  ]);
  assert.deepEqual(outcome.output, serverFrame(Close, closeBody(1000, "bye")));
  assert.equal(outcome.state, "closed");
  assert.equal(outcome.closedCleanly, true);
});

Deno.test("Connection echoes an empty close frame as an empty close frame, code 1005 (RFC 6455 §5.5.1)", () => {
  const outcome = feedAllWays(clientFrame(Close));
  assert.deepEqual(outcome.events, [{ type: "close", code: 1005, reason: "" }]);
  assert.deepEqual(outcome.output, serverFrame(Close));
  assert.equal(outcome.closedCleanly, true);
});

Deno.test("Connection.receive() with a limit stops after the frame that reaches it and returns how far it got; the rest, fed later, gives the same events", () => {
  const frames = [
    clientFrame(Text, utf8("one")),
    clientFrame(Ping, utf8("p")), // control frames do not count
    clientFrame(Binary, new Uint8Array(0)), // an empty message counts
    clientFrame(Text, utf8("three")),
    clientFrame(Binary, pattern(100)),
  ];
  const data = concat(...frames);
  const unlimited = new Connection({ role: "server" });
  assert.equal(unlimited.receive(data.slice()), data.length);
  const all = unlimited.takeEvents();
  assert.equal(all.length, 5);

  const limited = new Connection({ role: "server" });
  const input = data.slice();
  const first = limited.receive(input, { messages: 2 });
  assert.equal(first, frames[0].length + frames[1].length + frames[2].length);
  assert.deepEqual(limited.takeEvents(), all.slice(0, 3));
  // Bytes: "three" (5) reaches 4; the 100-byte message waits.
  const second = limited.receive(input.subarray(first), { bytes: 4 });
  assert.equal(second, frames[3].length);
  assert.deepEqual(limited.takeEvents(), all.slice(3, 4));
  const rest = input.subarray(first + second);
  assert.equal(limited.receive(rest, { messages: 1, bytes: 1 }), rest.length);
  assert.deepEqual(limited.takeEvents(), all.slice(4));
});

Deno.test("Connection.receive() with a frames limit counts control frames too, so a read of empty pings is parsed a bounded number at a time", () => {
  const ping = clientFrame(Ping);
  const data = concat(...Array.from({ length: 10 }, () => ping));
  const connection = new Connection({ role: "server" });
  const first = connection.receive(data, { frames: 4 });
  assert.equal(first, 4 * ping.length);
  assert.equal(connection.takeEvents().length, 4);
  assert.equal(
    connection.receive(data.subarray(first), { frames: 100 }),
    data.length - first,
  );
  assert.equal(connection.takeEvents().length, 6);
});

Deno.test("Connection with deferCloseReply holds its answer to the peer's close frame until acknowledgeClose(), and may send meanwhile (RFC 6455 §5.5.1)", () => {
  const connection = new Connection({ role: "server", deferCloseReply: true });
  connection.receive(
    concat(clientFrame(Text, utf8("hi")), clientFrame(Close, closeBody(4001))),
  );
  assert.deepEqual(connection.takeEvents(), [
    { type: "text", data: "hi" },
    { type: "close", code: 4001, reason: "" },
  ]);
  assert.deepEqual(connection.takeOutput(), [], "no close frame yet");
  assert.equal(connection.state, "open");
  connection.sendText("reply");
  // Input after the peer's close frame is still ignored.
  connection.receive(clientFrame(Text, utf8("late")));
  assert.deepEqual(connection.takeEvents(), []);
  connection.acknowledgeClose();
  assert.equal(connection.state, "closed");
  assert.equal(connection.closedCleanly, true);
  assert.deepEqual(
    concat(...connection.takeOutput()),
    concat(
      serverFrame(Text, utf8("reply")),
      serverFrame(Close, closeBody(4001)),
    ),
  );
  connection.acknowledgeClose();
  assert.deepEqual(connection.takeOutput(), [], "answered once");
});

Deno.test("Connection with deferCloseReply answers an empty close frame with an empty one, or with close()'s own code (RFC 6455 §5.5.1)", () => {
  const empty = new Connection({ role: "server", deferCloseReply: true });
  empty.receive(clientFrame(Close));
  empty.acknowledgeClose();
  assert.deepEqual(concat(...empty.takeOutput()), serverFrame(Close));
  const own = new Connection({ role: "server", deferCloseReply: true });
  own.receive(clientFrame(Close, closeBody(1000)));
  own.close(1001, "going");
  assert.equal(own.state, "closed");
  assert.equal(own.closedCleanly, true);
  assert.deepEqual(
    concat(...own.takeOutput()),
    serverFrame(Close, closeBody(1001, "going")),
  );
  // Nothing is owed without a close frame from the peer.
  const open = new Connection({ role: "server", deferCloseReply: true });
  open.acknowledgeClose();
  assert.equal(open.state, "open");
  assert.deepEqual(open.takeOutput(), []);
});

Deno.test("Connection with deferCloseReply holds a failure's close frame until acknowledgeClose() or close(), which sends it with its own code (RFC 6455 §7.1.7)", () => {
  for (const end of ["acknowledgeClose", "close"] as const) {
    const connection = new Connection({
      role: "server",
      deferCloseReply: true,
    });
    connection.receive(
      concat(clientFrame(Text, utf8("hi")), clientFrame(0x3, utf8("?"))),
    );
    const events = connection.takeEvents();
    assert.deepEqual(events[0], { type: "text", data: "hi" });
    assert.equal(events[1].type, "error");
    assert.equal(events.length, 2);
    assert.deepEqual(connection.takeOutput(), [], "no close frame yet");
    assert.equal(connection.state, "open");
    connection.sendText("reply");
    // Nothing after the error is processed.
    connection.receive(clientFrame(Text, utf8("late")));
    assert.deepEqual(connection.takeEvents(), []);
    if (end === "close") connection.close(1000, "bye");
    else connection.acknowledgeClose();
    assert.equal(connection.state, "closed");
    assert.equal(connection.closedCleanly, false);
    assert.deepEqual(
      concat(...connection.takeOutput()),
      concat(
        serverFrame(Text, utf8("reply")),
        serverFrame(Close, closeBody(1002, "RESERVED_OPCODE")),
      ),
      end,
    );
  }
});

Deno.test("Connection fails a close frame with a 1-byte payload with 1002 (RFC 6455 §5.5.1)", () => {
  assertFailed(
    feedAllWays(clientFrame(Close, Uint8Array.of(0x03))),
    E.InvalidClosePayload,
    1002,
  );
});

for (
  const code of [
    0,
    999,
    1004,
    1005,
    1006,
    1015,
    1016,
    1100,
    2000,
    2999,
    5000,
    65535,
  ]
) {
  Deno.test(`Connection fails a close frame with code ${code} with 1002 (RFC 6455 §7.4)`, () => {
    assertFailed(
      feedAllWays(clientFrame(Close, closeBody(code, "r"))),
      E.InvalidCloseCode,
      1002,
    );
  });
}

Deno.test("Connection accepts and echoes every valid close code (RFC 6455 §7.4)", () => {
  const valid = [
    1000,
    1001,
    1002,
    1003,
    1007,
    1008,
    1009,
    1010,
    1011,
    1012,
    1013,
    1014,
    3000,
    3999,
    4000,
    4999,
  ];
  for (const code of valid) {
    const outcome = feedAllWays(clientFrame(Close, closeBody(code, "why")));
    assert.deepEqual(outcome.events, [{ type: "close", code, reason: "why" }]);
    assert.deepEqual(
      outcome.output,
      serverFrame(Close, closeBody(code, "why")),
    );
  }
});

Deno.test("Connection fails a close reason that is not UTF-8 with 1007 (RFC 6455 §5.5.1)", () => {
  for (
    const reason of [[0xff], [0xc3], [0xed, 0xa0, 0x80], [0x61, 0xe2, 0x82]]
  ) {
    assertFailed(
      feedAllWays(clientFrame(Close, closeBody(1000, Uint8Array.from(reason)))),
      E.InvalidUtf8,
      1007,
    );
  }
});

Deno.test("Connection accepts a 123-byte UTF-8 close reason (RFC 6455 §5.5.1)", () => {
  const reason = "é".repeat(61) + "!";
  assert.equal(utf8(reason).length, 123);
  const outcome = feedAllWays(clientFrame(Close, closeBody(4000, reason)));
  assert.deepEqual(outcome.events, [{ type: "close", code: 4000, reason }]);
});

Deno.test("Connection processes nothing after the peer's close frame (RFC 6455 §5.5.1)", () => {
  const fixture = concat(
    clientFrame(Text, "before"),
    clientFrame(Close, closeBody(1000)),
    clientFrame(Text, "after"),
    clientFrame(Ping, "after"),
    clientFrame(Close, closeBody(1001)),
    serverFrame(Text, "unmasked garbage"),
    Uint8Array.of(0xff, 0xff, 0xff),
  );
  const outcome = feedAllWays(fixture);
  assert.deepEqual(outcome.events, [
    { type: "text", data: "before" },
    { type: "close", code: 1000, reason: "" },
  ]);
  assert.deepEqual(outcome.output, serverFrame(Close, closeBody(1000)));
  assert.equal(outcome.closedCleanly, true);
});

Deno.test("Connection ignores input after the peer's close in later receive() calls (RFC 6455 §5.5.1)", () => {
  const connection = new Connection({ role: "server" });
  connection.receive(clientFrame(Close, closeBody(1000)));
  connection.takeEvents();
  connection.takeOutput();
  connection.receive(clientFrame(Text, "late"));
  connection.receive(serverFrame(Text, "unmasked"));
  assert.deepEqual(connection.takeEvents(), []);
  assert.deepEqual(connection.takeOutput(), []);
});

Deno.test("Connection delivers messages that arrive after it sent close, until the peer's close (RFC 6455 §5.5.1)", () => {
  const fixture = concat(
    clientFrame(Text, "in flight"),
    clientFrame(Binary, pattern(3)),
    clientFrame(Pong, "p"),
    clientFrame(Close, closeBody(1000)),
    clientFrame(Text, "too late"),
  );
  const outcome = feedAllWays(fixture, {
    setup: (connection) => connection.close(1000, "done"),
  });
  assert.deepEqual(outcome.events, [
    { type: "text", data: "in flight" },
    { type: "binary", data: pattern(3) },
    { type: "pong", data: utf8("p") },
    { type: "close", code: 1000, reason: "" },
  ]);
  // Our close frame, and no echo: the peer's close answered ours.
  assert.deepEqual(outcome.output, serverFrame(Close, closeBody(1000, "done")));
  assert.equal(outcome.state, "closed");
  assert.equal(outcome.closedCleanly, true);
});

Deno.test("Connection answers a ping that arrives after it sent close, before the peer's close (RFC 6455 §5.5.2)", () => {
  const outcome = feedAllWays(clientFrame(Ping, "late"), {
    setup: (connection) => connection.close(),
  });
  assert.deepEqual(outcome.events, [{ type: "ping", data: utf8("late") }]);
  // "MUST send a Pong frame in response, unless it already received a
  // Close frame"; only data frames may not follow our close (§5.5.1).
  assert.deepEqual(
    outcome.output,
    concat(serverFrame(Close), serverFrame(Pong, "late")),
  );
  assert.equal(outcome.state, "closing");
});

Deno.test("Connection does not answer a ping that follows the peer's close frame (RFC 6455 §5.5.2)", () => {
  const outcome = feedAllWays(
    concat(clientFrame(Close, closeBody(1000)), clientFrame(Ping, "after")),
  );
  assert.deepEqual(outcome.events, [{ type: "close", code: 1000, reason: "" }]);
  assert.deepEqual(outcome.output, serverFrame(Close, closeBody(1000)));
  assert.equal(outcome.state, "closed");
});

Deno.test("Connection fails a protocol error after it sent close without a second close frame (RFC 6455 §7.1.7)", () => {
  const outcome = feedAllWays(serverFrame(Text, "unmasked"), {
    setup: (connection) => connection.close(1001),
  });
  assert.equal(outcome.events.length, 1);
  assert.equal(outcome.events[0].type, "error");
  assert.deepEqual(outcome.output, serverFrame(Close, closeBody(1001)));
  assert.equal(outcome.state, "closed");
  assert.equal(outcome.closedCleanly, false);
});

Deno.test("Connection close() queues one close frame, moves to closing, and ignores a second call (RFC 6455 §7.1.2)", () => {
  const connection = new Connection({ role: "server" });
  assert.equal(connection.state, "open");
  connection.close(4000, "bye");
  assert.equal(connection.state, "closing");
  connection.close(1000);
  assert.deepEqual(
    concat(...connection.takeOutput()),
    serverFrame(Close, closeBody(4000, "bye")),
  );
  assert.equal(connection.closedCleanly, false);
});

Deno.test("Connection close() rejects codes that may not be sent and too-long reasons with RangeError (RFC 6455 §7.4)", () => {
  const connection = new Connection({ role: "server" });
  for (const code of [999, 1004, 1005, 1006, 1015, 2999, 5000]) {
    assert.throws(() => connection.close(code), RangeError);
  }
  assert.throws(() => connection.close(1000, "x".repeat(124)), RangeError);
  assert.throws(() => connection.close(undefined, "reason"), TypeError);
  assert.equal(connection.state, "open");
  assert.deepEqual(connection.takeOutput(), []);
});

Deno.test("Connection throws TypeError on every send after it sent close (RFC 6455 §5.5.1)", () => {
  const closers: [string, (connection: Connection) => void][] = [
    ["close()", (connection) => connection.close(1000)],
    ["the peer's close", (connection) => {
      connection.receive(clientFrame(Close, closeBody(1000)));
    }],
    ["a protocol error", (connection) => {
      connection.receive(serverFrame(Text, "x"));
    }],
  ];
  for (const [label, closeIt] of closers) {
    const connection = new Connection({ role: "server" });
    closeIt(connection);
    const output = concat(...connection.takeOutput());
    for (
      const send of [
        () => connection.sendText("x"),
        () => connection.sendBinary(pattern(1)),
        () => connection.sendFragment(Text, utf8("x"), true),
        () => connection.ping(),
        () => connection.pong(),
      ]
    ) {
      assert.throws(send, TypeError, label);
    }
    assert.deepEqual(connection.takeOutput(), [], label);
    assert.equal(output[0], 0x88, label);
  }
});

Deno.test("Connection receiveEof() closes the connection without a clean close (RFC 6455 §7.1.5)", () => {
  const connection = new Connection({ role: "server" });
  connection.receiveEof();
  assert.equal(connection.state, "closed");
  assert.equal(connection.closedCleanly, false);
  connection.receive(clientFrame(Text, "late"));
  assert.deepEqual(connection.takeEvents(), []);
  assert.throws(() => connection.sendText("x"), TypeError);
});

Deno.test("Connection drops a message cut short: partialMessageBytes is 0 and its buffer freed after receiveEof(), a failure or the peer's close frame mid-message", async (t) => {
  // The first fragment of a binary message (whole), then the first 100
  // bytes of a 1000-byte continuation.
  const start = concat(
    clientFrame(Binary, pattern(400), { fin: false }),
    clientFrame(Continuation, pattern(1000)).subarray(0, 8 + 100),
  );
  const between = clientFrame(Binary, pattern(400), { fin: false });
  const cases: [string, Uint8Array, (connection: Connection) => void][] = [
    ["receiveEof()", start, (connection) => connection.receiveEof()],
    [
      "fail()",
      start,
      (connection) =>
        connection.fail(new ProtocolError("MESSAGE_TIMEOUT", "too slow")),
    ],
    [
      "the peer's close frame between fragments",
      between,
      (connection) => {
        connection.receive(clientFrame(Close, closeBody(1000, "")));
        assert.equal(connection.takeEvents().at(-1)?.type, "close");
      },
    ],
  ];
  for (const [label, input, end] of cases) {
    await t.step(label, () => {
      for (const deferCloseReply of [false, true]) {
        const connection = new Connection({ role: "server", deferCloseReply });
        connection.receive(input);
        const held = connection.partialMessageBytes;
        assert.ok(held >= 400, `${label}: ${held} held before`);
        using frees = recordFrees();
        end(connection);
        assert.equal(connection.partialMessageBytes, 0, label);
        assert.equal(connection.receiving, false, label);
        assert.ok(
          frees.freed.some((size) => size >= held),
          `${label}: the message's buffer is freed (${frees.freed})`,
        );
      }
    });
  }
});

// ---------------------------------------------------------------------------
// RFC 6455 §5.5.2-5.5.3: ping and pong
// ---------------------------------------------------------------------------

Deno.test("Connection answers a ping with a pong carrying the same payload (RFC 6455 §5.5.2)", () => {
  for (const payload of [new Uint8Array(0), utf8("Hello"), pattern(125)]) {
    const outcome = feedAllWays(clientFrame(Ping, payload));
    assert.deepEqual(outcome.events, [{ type: "ping", data: payload }]);
    assert.deepEqual(outcome.output, serverFrame(Pong, payload));
  }
});

Deno.test("Connection answers each of several pings before the output is taken, in order (RFC 6455 §5.5.2)", () => {
  const fixture = concat(
    clientFrame(Ping, "one"),
    clientFrame(Ping, "two"),
    clientFrame(Ping, "three"),
  );
  const outcome = feedAllWays(fixture);
  assert.deepEqual(outcome.events, [
    { type: "ping", data: utf8("one") },
    { type: "ping", data: utf8("two") },
    { type: "ping", data: utf8("three") },
  ]);
  assert.deepEqual(
    outcome.output,
    concat(
      serverFrame(Pong, "one"),
      serverFrame(Pong, "two"),
      serverFrame(Pong, "three"),
    ),
  );
});

Deno.test("Connection answers 16 pings per output taken, then only the latest of the rest (RFC 6455 §5.5.3)", () => {
  const names = Array.from({ length: 40 }, (_, i) => `ping ${i}`);
  const outcome = feedAllWays(
    concat(...names.map((name) => clientFrame(Ping, name))),
  );
  assert.equal(outcome.events.length, 40);
  assert.deepEqual(
    outcome.output,
    concat(
      ...names.slice(0, 16).map((name) => serverFrame(Pong, name)),
      serverFrame(Pong, "ping 39"),
    ),
  );
  // The count starts over with each output taken.
  const connection = new Connection({ role: "server" });
  for (const round of [0, 1]) {
    connection.receive(
      concat(...names.slice(0, 17).map((name) => clientFrame(Ping, name))),
    );
    assert.deepEqual(
      concat(...connection.takeOutput()),
      concat(...names.slice(0, 17).map((name) => serverFrame(Pong, name))),
      `round ${round}`,
    );
  }
});

Deno.test("Connection answers pings taken between takeOutput() calls separately (RFC 6455 §5.5.3)", () => {
  const connection = new Connection({ role: "server" });
  connection.receive(clientFrame(Ping, "one"));
  assert.deepEqual(
    concat(...connection.takeOutput()),
    serverFrame(Pong, "one"),
  );
  connection.receive(clientFrame(Ping, "two"));
  assert.equal(connection.outputSize, 5);
  assert.deepEqual(
    concat(...connection.takeOutput()),
    serverFrame(Pong, "two"),
  );
  assert.deepEqual(connection.takeOutput(), []);
});

Deno.test("Connection sends a pending pong before its close frame (RFC 6455 §5.5.3)", () => {
  const fixture = concat(
    clientFrame(Ping, "hb"),
    clientFrame(Close, closeBody(1000)),
  );
  const outcome = feedAllWays(fixture);
  assert.deepEqual(
    outcome.output,
    concat(serverFrame(Pong, "hb"), serverFrame(Close, closeBody(1000))),
  );
  const failed = feedAllWays(concat(clientFrame(Ping, "hb"), clientFrame(3)));
  assertFailed(failed, E.ReservedOpcode, 1002, {
    before: [{ type: "ping", data: utf8("hb") }],
    outputBefore: serverFrame(Pong, "hb"),
  });
});

Deno.test("Connection delivers an unsolicited pong without answering it (RFC 6455 §5.5.3)", () => {
  const outcome = feedAllWays(clientFrame(Pong, "beat"));
  assert.deepEqual(outcome.events, [{ type: "pong", data: utf8("beat") }]);
  assert.equal(outcome.output.length, 0);
});

Deno.test("Connection ping() and pong() reject payloads over 125 bytes with RangeError (RFC 6455 §5.5)", () => {
  const connection = new Connection({ role: "server" });
  assert.throws(() => connection.ping(pattern(126)), RangeError);
  assert.throws(() => connection.pong(pattern(126)), RangeError);
  connection.ping(pattern(125));
  connection.pong(utf8("x"));
  assert.deepEqual(
    concat(...connection.takeOutput()),
    concat(serverFrame(Ping, pattern(125)), serverFrame(Pong, "x")),
  );
});

// ---------------------------------------------------------------------------
// RFC 6455 §5.6, §8.1: text must be UTF-8, checked as early as possible
// ---------------------------------------------------------------------------

const INVALID_UTF8: [string, number[]][] = [
  ["a lone continuation byte", [0x80]],
  ["0xFF", [0xff]],
  ["an overlong two-byte NUL", [0xc0, 0x80]],
  ["an overlong three-byte sequence", [0xe0, 0x80, 0x80]],
  ["a UTF-16 surrogate", [0xed, 0xa0, 0x80]],
  ["a code point above U+10FFFF", [0xf4, 0x90, 0x80, 0x80]],
  ["a truncated sequence before ASCII", [0xe2, 0x82, 0x41]],
];

for (const [label, bytes] of INVALID_UTF8) {
  Deno.test(`Connection fails text with ${label} with 1007 (RFC 6455 §8.1)`, () => {
    const payload = concat(utf8("ok "), bytes, utf8(" tail"));
    assertFailed(
      feedAllWays(clientFrame(Text, payload)),
      E.InvalidUtf8,
      1007,
    );
  });
}

Deno.test("Connection with streamMessages fails streamed text that ends inside a UTF-8 sequence with 1007, and never ends the stream as if whole (RFC 6455 §8.1)", () => {
  for (const tail of [[0xce], [0xe2, 0x82], [0xf0, 0x9f, 0x98]]) {
    const payload = concat(utf8("ok"), new Uint8Array(tail));
    for (
      const bytes of [
        clientFrame(Text, payload),
        concat(
          clientFrame(Text, payload, { fin: false }),
          clientFrame(Continuation, ""),
        ),
      ]
    ) {
      for (const chunks of [[bytes], cut(bytes, () => 0, 1)]) {
        const { events } = feed(chunks, { streamMessages: true });
        const last = events.at(-1) as { type: string; code?: string };
        assert.deepEqual([last.type, last.code], ["error", E.InvalidUtf8]);
        assert.ok(!events.some((event) => event.type === "stream-end"));
      }
    }
  }
});

Deno.test("Connection fails text that ends inside a UTF-8 sequence with 1007 (RFC 6455 §8.1)", () => {
  for (const tail of [[0xce], [0xe2, 0x82], [0xf0, 0x9f, 0x98]]) {
    const payload = concat(utf8("ok"), tail);
    assertFailed(
      feedAllWays(clientFrame(Text, payload)),
      E.InvalidUtf8,
      1007,
    );
    // Fragmented: the message ends mid-sequence at the final fragment.
    assertFailed(
      feedAllWays(
        concat(
          clientFrame(Text, payload, { fin: false }),
          clientFrame(Continuation, ""),
        ),
      ),
      E.InvalidUtf8,
      1007,
    );
  }
});

Deno.test("Connection fails invalid UTF-8 at the fragment that contains it, before the final fragment (RFC 6455 §8.1)", () => {
  const first = clientFrame(Text, "κόσμε", { fin: false });
  const bad = clientFrame(Continuation, Uint8Array.of(0xce, 0xba, 0xed, 0xa0), {
    fin: false,
  });
  const last = clientFrame(Continuation, "end");
  const connection = new Connection({ role: "server" });
  connection.receive(first.slice());
  assert.deepEqual(connection.takeEvents(), []);
  connection.receive(bad.slice());
  const events = connection.takeEvents();
  assert.equal(events.length, 1);
  assert.ok(events[0].type === "error");
  assert.equal(events[0].error.code, E.InvalidUtf8);
  assert.deepEqual(
    concat(...connection.takeOutput()),
    serverFrame(Close, closeBody(1007, E.InvalidUtf8)),
  );
  connection.receive(last.slice());
  assert.deepEqual(connection.takeEvents(), []);
  assert.deepEqual(connection.takeOutput(), []);
  // Byte by byte: the error comes with the first byte that cannot continue
  // UTF-8 (0xA0 after 0xED), not at the end of the frame or message.
  const fixture = concat(first, bad, last);
  assert.equal(errorIndex(fixture), first.length + 6 + 3);
  assertFailed(feedAllWays(fixture), E.InvalidUtf8, 1007);
});

Deno.test("Connection fails invalid UTF-8 in a single frame fed in pieces before the rest arrives (RFC 6455 §8.1)", () => {
  const payload = concat(utf8("Hello, "), [0xf8], utf8("x".repeat(200)));
  const fixture = clientFrame(Text, payload);
  const headerLength = 2 + 2 + 4;
  const [piece, rest] = splitAt(fixture, headerLength + 10);
  const connection = new Connection({ role: "server" });
  connection.receive(piece);
  const events = connection.takeEvents();
  assert.equal(events.length, 1);
  assert.ok(events[0].type === "error");
  assert.equal(events[0].error.code, E.InvalidUtf8);
  assert.equal(connection.state, "closed");
  connection.receive(rest);
  assert.deepEqual(connection.takeEvents(), []);
  assert.equal(errorIndex(fixture), headerLength + 7);
  assertFailed(feedAllWays(fixture), E.InvalidUtf8, 1007);
});

Deno.test("Connection accepts UTF-8 sequences split across fragments (RFC 6455 §5.6)", () => {
  const text = "κόσμε 😀 €";
  const bytes = utf8(text);
  for (let at = 0; at <= bytes.length; at++) {
    const fixture = concat(
      clientFrame(Text, bytes.subarray(0, at), { fin: false }),
      clientFrame(Continuation, bytes.subarray(at)),
    );
    assert.deepEqual(feedAllWays(fixture).events, [{
      type: "text",
      data: text,
    }]);
  }
  // One byte per fragment.
  const fixture = concat(
    ...Array.from(
      bytes,
      (byte, i) =>
        clientFrame(i === 0 ? Text : Continuation, Uint8Array.of(byte), {
          fin: i === bytes.length - 1,
        }),
    ),
  );
  assert.deepEqual(feedAllWays(fixture).events, [{ type: "text", data: text }]);
});

Deno.test("Connection preserves a leading byte order mark in text (RFC 6455 §5.6)", () => {
  const bom = [0xef, 0xbb, 0xbf];
  const single = feedAllWays(clientFrame(Text, concat(bom, utf8("hi"))));
  assert.deepEqual(single.events, [{ type: "text", data: "\uFEFFhi" }]);
  const fragmented = feedAllWays(
    concat(
      clientFrame(Text, Uint8Array.of(0xef), { fin: false }),
      clientFrame(Continuation, concat([0xbb, 0xbf], utf8("hi"))),
    ),
  );
  assert.deepEqual(fragmented.events, [{ type: "text", data: "\uFEFFhi" }]);
});

Deno.test("Connection accepts the extremes of UTF-8 (RFC 6455 §5.6)", () => {
  const text = "\u0000\u007f\u0080\u07ff\u0800\uffff\u{10000}\u{10ffff}";
  assert.deepEqual(feedAllWays(clientFrame(Text, text)).events, [
    { type: "text", data: text },
  ]);
});

Deno.test("Connection does not check binary messages as UTF-8 (RFC 6455 §5.6)", () => {
  const payload = Uint8Array.of(0xff, 0xc0, 0x80, 0xed, 0xa0, 0x80);
  assert.deepEqual(feedAllWays(clientFrame(Binary, payload)).events, [
    { type: "binary", data: payload },
  ]);
});

// ---------------------------------------------------------------------------
// RFC 6455 §5.7: the examples, parsed and encoded byte-exactly
// ---------------------------------------------------------------------------

const HELLO_UNMASKED = Uint8Array.of(0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f);
const HELLO_MASKED = Uint8Array.of(
  0x81,
  0x85,
  0x37,
  0xfa,
  0x21,
  0x3d,
  0x7f,
  0x9f,
  0x4d,
  0x51,
  0x58,
);
const HEL = Uint8Array.of(0x01, 0x03, 0x48, 0x65, 0x6c);
const LO = Uint8Array.of(0x80, 0x02, 0x6c, 0x6f);
const PING_UNMASKED = Uint8Array.of(0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f);
const PONG_MASKED = Uint8Array.of(
  0x8a,
  0x85,
  0x37,
  0xfa,
  0x21,
  0x3d,
  0x7f,
  0x9f,
  0x4d,
  0x51,
  0x58,
);
const BINARY_256_HEADER = Uint8Array.of(0x82, 0x7e, 0x01, 0x00);
const BINARY_64K_HEADER = Uint8Array.of(
  0x82,
  0x7f,
  0x00,
  0x00,
  0x00,
  0x00,
  0x00,
  0x01,
  0x00,
  0x00,
);

Deno.test("Connection parses the single-frame unmasked text example (RFC 6455 §5.7)", () => {
  const outcome = feedAllWays(HELLO_UNMASKED, CLIENT);
  assert.deepEqual(outcome.events, [{ type: "text", data: "Hello" }]);
});

Deno.test("Connection parses the single-frame masked text example (RFC 6455 §5.7)", () => {
  const outcome = feedAllWays(HELLO_MASKED);
  assert.deepEqual(outcome.events, [{ type: "text", data: "Hello" }]);
  assert.deepEqual(clientFrame(Text, "Hello"), HELLO_MASKED);
});

Deno.test("Connection parses the fragmented unmasked text example (RFC 6455 §5.7)", () => {
  const outcome = feedAllWays(concat(HEL, LO), CLIENT);
  assert.deepEqual(outcome.events, [{ type: "text", data: "Hello" }]);
});

Deno.test("Connection answers the unmasked ping example with the masked pong example (RFC 6455 §5.7)", () => {
  const outcome = feedAllWays(PING_UNMASKED, CLIENT);
  assert.deepEqual(outcome.events, [{ type: "ping", data: utf8("Hello") }]);
  assert.deepEqual(outcome.output, PONG_MASKED);
  const pong = feedAllWays(PONG_MASKED);
  assert.deepEqual(pong.events, [{ type: "pong", data: utf8("Hello") }]);
});

Deno.test("Connection parses the 256-byte and 64 KiB binary examples (RFC 6455 §5.7)", () => {
  const fixture = concat(
    BINARY_256_HEADER,
    pattern(256),
    BINARY_64K_HEADER,
    pattern(65536, 3),
  );
  const outcome = feedAllWays(fixture, CLIENT);
  assert.deepEqual(outcome.events, [
    { type: "binary", data: pattern(256) },
    { type: "binary", data: pattern(65536, 3) },
  ]);
});

Deno.test("Connection encodes the §5.7 examples byte-exactly (RFC 6455 §5.7)", () => {
  const server = new Connection({ role: "server" });
  server.sendText("Hello");
  server.sendFragment(Text, utf8("Hel"), false);
  server.sendFragment(Continuation, utf8("lo"), true);
  server.ping(utf8("Hello"));
  server.sendBinary(pattern(256));
  server.sendBinary(pattern(65536));
  assert.deepEqual(
    concat(...server.takeOutput()),
    concat(
      HELLO_UNMASKED,
      HEL,
      LO,
      PING_UNMASKED,
      BINARY_256_HEADER,
      pattern(256),
      BINARY_64K_HEADER,
      pattern(65536),
    ),
  );
  const client = new Connection(CLIENT);
  client.sendText("Hello");
  client.pong(utf8("Hello"));
  assert.deepEqual(
    concat(...client.takeOutput()),
    concat(HELLO_MASKED, PONG_MASKED),
  );
});

// ---------------------------------------------------------------------------
// RFC 6455 §5.3-5.5, §6.1: sending, and taking events and output
// ---------------------------------------------------------------------------

Deno.test("Connection in the client role masks everything it sends with the injected key (RFC 6455 §5.3)", () => {
  let calls = 0;
  const client = new Connection({
    role: "client",
    generateMaskKey: (key) => {
      calls++;
      key.set(MASK_KEY);
    },
  });
  const payload = pattern(70_000);
  client.sendBinary(payload);
  client.sendText("é".repeat(100));
  client.ping(utf8("p"));
  client.close(1000, "bye");
  assert.equal(calls, 4);
  assert.deepEqual(payload, pattern(70_000));
  assert.deepEqual(
    concat(...client.takeOutput()),
    concat(
      frame(Binary, pattern(70_000)),
      frame(Text, "é".repeat(100)),
      frame(Ping, "p"),
      frame(Close, closeBody(1000, "bye")),
    ),
  );
});

Deno.test("Connection in the client role echoes a close frame masked (RFC 6455 §5.5.1)", () => {
  const outcome = feedAllWays(
    serverFrame(Close, closeBody(1001, "gone")),
    CLIENT,
  );
  assert.deepEqual(outcome.events, [
    { type: "close", code: 1001, reason: "gone" },
  ]);
  assert.deepEqual(outcome.output, clientFrame(Close, closeBody(1001, "gone")));
});

Deno.test("Connection reports outputSize as the bytes takeOutput() returns", () => {
  const connection = new Connection({ role: "server" });
  assert.equal(connection.outputSize, 0);
  connection.sendText("Hello");
  connection.sendBinary(pattern(70_000));
  connection.receive(clientFrame(Ping, "abc"));
  const size = connection.outputSize;
  assert.equal(size, 7 + 10 + 70_000 + 5);
  assert.equal(concat(...connection.takeOutput()).length, size);
  assert.equal(connection.outputSize, 0);
});

Deno.test("Connection reports outputSize with the masked pong header in the client role (RFC 6455 §5.5.3)", () => {
  const client = new Connection(CLIENT);
  client.receive(serverFrame(Ping, "abc"));
  assert.equal(client.outputSize, 6 + 3);
  assert.deepEqual(concat(...client.takeOutput()), clientFrame(Pong, "abc"));
});

Deno.test("Connection sendFragment() sends a fragmented message with pings between fragments (RFC 6455 §5.4)", () => {
  const connection = new Connection({ role: "server" });
  connection.sendFragment(Binary, pattern(3), false);
  connection.ping(utf8("p"));
  connection.sendFragment(Continuation, pattern(2, 3), false);
  connection.sendFragment(Continuation, new Uint8Array(0), true);
  connection.sendText("next");
  assert.deepEqual(
    concat(...connection.takeOutput()),
    concat(
      serverFrame(Binary, pattern(3), { fin: false }),
      serverFrame(Ping, "p"),
      serverFrame(Continuation, pattern(2, 3), { fin: false }),
      serverFrame(Continuation),
      serverFrame(Text, "next"),
    ),
  );
});

Deno.test("Connection sendFragment() refuses frame sequences RFC 6455 forbids with TypeError (RFC 6455 §5.4)", () => {
  const fresh = () => new Connection({ role: "server" });
  // A continuation with no message, a control or reserved opcode.
  for (const opcode of [Continuation, Close, Ping, Pong, 3, 0xb]) {
    const connection = fresh();
    assert.throws(
      () => connection.sendFragment(opcode, pattern(1), false),
      TypeError,
    );
    assert.deepEqual(connection.takeOutput(), []);
  }
  // A new message, text or binary, inside an unfinished one.
  const connection = fresh();
  connection.sendFragment(Text, utf8("a"), false);
  assert.throws(
    () => connection.sendFragment(Text, utf8("b"), true),
    TypeError,
  );
  assert.throws(
    () => connection.sendFragment(Binary, utf8("b"), true),
    TypeError,
  );
  assert.throws(() => connection.sendText("b"), TypeError);
  assert.throws(() => connection.sendBinary(pattern(1)), TypeError);
  connection.sendFragment(Continuation, utf8("b"), true);
  connection.sendText("c");
  assert.deepEqual(
    concat(...connection.takeOutput()),
    concat(
      serverFrame(Text, "a", { fin: false }),
      serverFrame(Continuation, "b"),
      serverFrame(Text, "c"),
    ),
  );
});

Deno.test("Connection takeEvents() returns each event once (RFC 6455 §6.2)", () => {
  const connection = new Connection({ role: "server" });
  assert.deepEqual(connection.takeEvents(), []);
  connection.receive(clientFrame(Text, "a"));
  assert.deepEqual(connection.takeEvents(), [{ type: "text", data: "a" }]);
  assert.deepEqual(connection.takeEvents(), []);
  connection.receive(clientFrame(Text, "b"));
  assert.deepEqual(connection.takeEvents(), [{ type: "text", data: "b" }]);
});

Deno.test("Connection round-trips CLOSE_CODE values through a close frame (RFC 6455 §7.4.1)", () => {
  for (const code of Object.values(CLOSE_CODE)) {
    if (code === 1005 || code === 1006) continue;
    const outcome = feedAllWays(clientFrame(Close, closeBody(code)));
    assert.deepEqual(outcome.events, [{ type: "close", code, reason: "" }]);
  }
});

// ---------------------------------------------------------------------------
// RFC 7692 §6: RSV1 once permessage-deflate is negotiated
// ---------------------------------------------------------------------------

const DEFLATE = {
  perMessageDeflate: { inflate: inflateMessage, threshold: Infinity },
} as const;
const deflated = (data: Uint8Array | string) =>
  deflateMessage(typeof data === "string" ? utf8(data) : data, {
    serverMaxWindowBits: 15,
    level: 6,
    memLevel: 8,
  });

Deno.test("Connection with permessage-deflate inflates the RFC 7692 §7.2.3.1 examples (RFC 7692 §6)", () => {
  const compressed = Uint8Array.of(0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00);
  assert.deepEqual(deflated("Hello"), compressed);
  const fixture = concat(
    clientFrame(Text, compressed, { rsv: 0x40 }),
    clientFrame(Text, compressed.subarray(0, 3), { rsv: 0x40, fin: false }),
    clientFrame(Ping, "mid"),
    clientFrame(Continuation, compressed.subarray(3)),
    clientFrame(Binary, deflated(pattern(5000)), { rsv: 0x40 }),
    clientFrame(Text, "plain"),
  );
  const outcome = feedAllWays(fixture, DEFLATE);
  assert.deepEqual(outcome.events, [
    { type: "text", data: "Hello" },
    { type: "ping", data: utf8("mid") },
    { type: "text", data: "Hello" },
    { type: "binary", data: pattern(5000) },
    { type: "text", data: "plain" },
  ]);
});

Deno.test("Connection with permessage-deflate charges each inflation to receive()'s frame budget, so a read of many small compressed messages is taken a few at a time", () => {
  const message = clientFrame(Text, deflated("hi"), { rsv: 0x40 });
  const chunk = concat(...Array.from({ length: 100 }, () => message));
  const connection = new Connection({ role: "server", ...DEFLATE });
  const perCall: number[] = [];
  for (let rest = chunk; rest.length > 0;) {
    rest = rest.subarray(connection.receive(rest, { frames: 4096 }));
    perCall.push(connection.takeEvents().length);
  }
  // 4096 frames: 4096 empty pings, or 16 small compressed messages (the
  // one that crosses the budget ends the call).
  assert.deepEqual(perCall, [16, 16, 16, 16, 16, 16, 4]);
  // Uncompressed, the budget is of frames.
  const plain = new Connection({ role: "server", ...DEFLATE });
  plain.receive(
    concat(...Array.from({ length: 100 }, () => clientFrame(Text, "hi"))),
    { frames: 4096 },
  );
  assert.equal(plain.takeEvents().length, 100);
});

Deno.test("Connection with permessage-deflate fails RSV1 on a continuation frame with 1002 (RFC 7692 §6)", () => {
  const compressed = deflated("Hello");
  assertFailed(
    feedAllWays(
      concat(
        clientFrame(Text, compressed.subarray(0, 3), { rsv: 0x40, fin: false }),
        clientFrame(Continuation, compressed.subarray(3), { rsv: 0x40 }),
      ),
      DEFLATE,
    ),
    E.ReservedBits,
    1002,
  );
});

Deno.test("Connection with permessage-deflate fails RSV1 on a control frame with 1002 (RFC 7692 §6.1)", () => {
  for (const opcode of [Ping, Pong, Close]) {
    assertFailed(
      feedAllWays(clientFrame(opcode, "", { rsv: 0x40 }), DEFLATE),
      E.ReservedBits,
      1002,
    );
  }
});

Deno.test("Connection with permessage-deflate still fails RSV2 and RSV3 with 1002 (RFC 6455 §5.2)", () => {
  for (const rsv of [0x20, 0x10, 0x60]) {
    assertFailed(
      feedAllWays(clientFrame(Text, "x", { rsv }), DEFLATE),
      E.ReservedBits,
      1002,
    );
  }
});

Deno.test("Connection with permessage-deflate fails a message inflating past maxPayload with 1009 (RFC 7692 §8.1)", () => {
  const fixture = clientFrame(Binary, deflated(new Uint8Array(10_000)), {
    rsv: 0x40,
  });
  assert.ok(fixture.length < 200);
  assertFailed(
    feedAllWays(fixture, { ...DEFLATE, maxPayload: 1000 }),
    E.MessageTooBig,
    1009,
  );
});

Deno.test("Connection with permessage-deflate fails compressed text that inflates to invalid UTF-8 with 1007 (RFC 7692 §6)", () => {
  const fixture = clientFrame(
    Text,
    deflated(Uint8Array.of(0x61, 0xed, 0xa0, 0x80)),
    { rsv: 0x40 },
  );
  assertFailed(feedAllWays(fixture, DEFLATE), E.InvalidUtf8, 1007);
});

Deno.test("Connection with permessage-deflate compresses messages from the threshold up (RFC 7692 §6)", () => {
  const server = new Connection({
    role: "server",
    perMessageDeflate: {
      inflate: inflateMessage,
      deflate: deflated,
      threshold: 10,
    },
  });
  server.sendText("short");
  server.sendText("a".repeat(100));
  server.sendBinary(pattern(1000));
  server.sendText("b".repeat(100), false);
  const output = concat(...server.takeOutput());
  assert.deepEqual(
    output,
    concat(
      serverFrame(Text, "short"),
      serverFrame(Text, deflated("a".repeat(100)), { rsv: 0x40 }),
      serverFrame(Binary, deflated(pattern(1000)), { rsv: 0x40 }),
      serverFrame(Text, "b".repeat(100)),
    ),
  );
  const client = feedAllWays(output, { ...CLIENT, ...DEFLATE });
  assert.deepEqual(client.events, [
    { type: "text", data: "short" },
    { type: "text", data: "a".repeat(100) },
    { type: "binary", data: pattern(1000) },
    { type: "text", data: "b".repeat(100) },
  ]);
});

Deno.test("Connection's send and receive methods throw a TypeError for data of the wrong type instead of sending wrong bytes; sendEncoded takes only whole data frames", () => {
  const server = new Connection({ role: "server" });
  const misuse: [string, () => unknown, RegExp][] = [
    [
      "sendBinary(string)",
      // deno-lint-ignore no-explicit-any
      () => server.sendBinary("abc" as any),
      /Cannot send binary: the payload must be a Uint8Array, got string/,
    ],
    [
      "sendText(number)",
      // deno-lint-ignore no-explicit-any
      () => server.sendText(12345 as any),
      /Cannot send text: the message must be a string, got number 12345/,
    ],
    [
      "receive(ArrayBuffer)",
      // deno-lint-ignore no-explicit-any
      () => server.receive(new ArrayBuffer(6) as any),
      /Cannot receive: the data must be a Uint8Array, got ArrayBuffer/,
    ],
    [
      "sendFragment(string)",
      // deno-lint-ignore no-explicit-any
      () => server.sendFragment(OPCODE.Text, "x" as any, true),
      /Cannot send a fragment: the payload must be a Uint8Array/,
    ],
    [
      "sendEncoded(close frame)",
      () => server.sendEncoded(new Uint8Array([0x88, 0x02, 0x03, 0xe8])),
      /must be a whole unmasked text or binary frame/,
    ],
    [
      "sendEncoded(first fragment)",
      () => server.sendEncoded(new Uint8Array([0x01, 0x01, 0x61])),
      /must be a whole unmasked text or binary frame/,
    ],
    [
      // RFC 6455 §5.1: "A server MUST NOT mask any frames that it sends".
      "sendEncoded(masked frame)",
      () =>
        server.sendEncoded(
          new Uint8Array([0x81, 0x82, 1, 2, 3, 4, 0x69, 0x6b]),
        ),
      /must be a whole unmasked text or binary frame/,
    ],
  ];
  for (const [name, call, message] of misuse) {
    assert.throws(call, { name: "TypeError", message }, name);
  }
  // Nothing was written, and the connection is still open and usable.
  assert.equal(server.takeOutput().length, 0);
  assert.equal(server.state, "open");
  server.sendEncoded(new Uint8Array([0x81, 0x02, 0x68, 0x69]));
  assert.deepEqual([...concat(...server.takeOutput())], [
    0x81,
    0x02,
    0x68,
    0x69,
  ]);
});

Deno.test("Connection with permessage-deflate and threshold Infinity compresses nothing itself but takes sendCompressed(); a threshold that is not a number is refused", () => {
  const server = new Connection({
    role: "server",
    perMessageDeflate: { inflate: inflateMessage, threshold: Infinity },
  });
  server.sendText("x".repeat(5000));
  const plain = concat(...server.takeOutput());
  assert.equal(plain[0], 0x81, "uncompressed: RSV1 clear");
  server.sendCompressed(
    OPCODE.Text,
    deflateMessage(new TextEncoder().encode("hi"), {
      serverMaxWindowBits: 15,
      level: 6,
      memLevel: 8,
    }),
  );
  assert.equal(concat(...server.takeOutput())[0], 0xc1, "compressed: RSV1 set");
  assert.throws(
    () =>
      new Connection({
        role: "server",
        perMessageDeflate: { inflate: inflateMessage, threshold: NaN },
      }),
    { name: "RangeError", message: /"perMessageDeflate.threshold" must be/ },
  );
});

// ---------------------------------------------------------------------------
// A driver's own limits: receiving and fail()
// ---------------------------------------------------------------------------

Deno.test("Connection.receiving holds from a frame's first header byte to its end, and between the fragments of a message", () => {
  const connection = new Connection({ role: "server" });
  assert.equal(connection.receiving, false);
  const whole = clientFrame(Binary, pattern(300));
  connection.receive(whole.subarray(0, 1));
  assert.equal(connection.receiving, true, "one header byte");
  connection.receive(whole.subarray(1, 20));
  assert.equal(connection.receiving, true, "in the payload");
  connection.receive(whole.subarray(20));
  assert.equal(connection.receiving, false, "the frame ended");
  connection.receive(clientFrame(Text, utf8("a"), { fin: false }));
  assert.equal(connection.receiving, true, "a fragmented message is open");
  connection.receive(clientFrame(Ping, utf8("p")));
  assert.equal(connection.receiving, true, "a ping between fragments");
  connection.receive(clientFrame(Continuation, utf8("b")));
  assert.equal(connection.receiving, false, "the message ended");
  assert.deepEqual(
    connection.takeEvents().map((event) => event.type),
    ["binary", "ping", "text"],
  );
});

Deno.test("Connection.fail() fails the connection as a protocol error would: the error's close code, its code as the reason, no more input", () => {
  const connection = new Connection({ role: "server" });
  const whole = clientFrame(Text, utf8("never finished"));
  connection.receive(whole.subarray(0, 8));
  const error = new ProtocolError("MESSAGE_TIMEOUT", "too slow");
  assert.equal(error.closeCode, CLOSE_CODE.PolicyViolation);
  assert.equal(connection.receiving, true);
  connection.fail(error);
  assert.deepEqual(connection.takeEvents(), [{ type: "error", error }]);
  assert.equal(connection.state, "closed");
  assert.equal(connection.receiving, false, "no more input is taken");
  assert.deepEqual(
    concat(...connection.takeOutput()),
    serverFrame(Close, closeBody(1008, "MESSAGE_TIMEOUT")),
  );
  // The rest of the frame, and anything after it, is ignored.
  connection.receive(concat(whole.subarray(8), clientFrame(Text, utf8("x"))));
  assert.deepEqual(connection.takeEvents(), []);
  // Once failed (or closed), fail() does nothing more.
  connection.fail(new ProtocolError("MESSAGE_TIMEOUT", "again"));
  assert.deepEqual(connection.takeEvents(), []);
  assert.deepEqual(connection.takeOutput(), []);
});

Deno.test("Connection.fail() with deferCloseReply holds the close frame until acknowledgeClose(), and does nothing after the peer's close frame", () => {
  const held = new Connection({ role: "server", deferCloseReply: true });
  held.fail(new ProtocolError("MESSAGE_TIMEOUT", "too slow"));
  assert.equal(held.takeEvents()[0].type, "error");
  assert.deepEqual(held.takeOutput(), [], "no close frame yet");
  assert.equal(held.state, "open");
  held.acknowledgeClose();
  assert.equal(held.state, "closed");
  assert.deepEqual(
    concat(...held.takeOutput()),
    serverFrame(Close, closeBody(1008, "MESSAGE_TIMEOUT")),
  );
  const answered = new Connection({ role: "server", deferCloseReply: true });
  answered.receive(clientFrame(Close, closeBody(1000)));
  answered.takeEvents();
  answered.fail(new ProtocolError("MESSAGE_TIMEOUT", "too late"));
  assert.deepEqual(answered.takeEvents(), [], "the close handshake goes on");
  answered.acknowledgeClose();
  assert.deepEqual(
    concat(...answered.takeOutput()),
    serverFrame(Close, closeBody(1000)),
  );
});

Deno.test("Connection.fail() takes only a ProtocolError", () => {
  const connection = new Connection({ role: "server" });
  assert.throws(
    () => connection.fail(new Error("nope") as ProtocolError),
    {
      name: "TypeError",
      message:
        "Cannot fail the connection: the error must be a ProtocolError, got Error",
    },
  );
  assert.equal(connection.state, "open");
});

Deno.test("Connection.sendEncoded() refuses RSV bits no negotiated extension defines (RFC 6455 §5.2): RSV1 without permessage-deflate, RSV2 and RSV3 always", () => {
  const compressed = [0xc1, 0x02, 0x68, 0x69]; // FIN | RSV1 | text
  const plain = new Connection({ role: "server" });
  for (const first of [0xc1, 0xa1, 0x91]) {
    assert.throws(
      () => plain.sendEncoded(new Uint8Array([first, ...compressed.slice(1)])),
      {
        name: "TypeError",
        message: /its RSV bits \(0x[1-7]0\) need an extension/,
      },
    );
  }
  const negotiated = new Connection({ role: "server", ...DEFLATE });
  assert.throws(
    () => negotiated.sendEncoded(new Uint8Array([0xa1, 0x02, 0x68, 0x69])),
    { name: "TypeError", message: /permessage-deflate defines RSV1 only/ },
  );
  assert.equal(plain.takeOutput().length, 0);
  negotiated.sendEncoded(new Uint8Array(compressed));
  assert.deepEqual([...concat(...negotiated.takeOutput())], compressed);
});

Deno.test("Connection whose inflate throws something other than a ProtocolError rethrows it and closes, taking no more input and sending no close frame to a peer that did nothing wrong", () => {
  const bug = new Error("inflater bug");
  const connection = new Connection({
    role: "server",
    perMessageDeflate: {
      inflate: () => {
        throw bug;
      },
      threshold: Infinity,
    },
  });
  const bytes = concat(
    clientFrame(Text, "one", { rsv: 0x40 }),
    clientFrame(Text, "two"),
  );
  assert.throws(() => connection.receive(bytes), bug);
  assert.equal(connection.state, "closed");
  connection.receive(clientFrame(Text, "three"));
  assert.deepEqual(connection.takeEvents(), []);
  assert.equal(connection.takeOutput().length, 0);
});
