import assert from "node:assert/strict";
import {
  CLOSE_REASON,
  ConnectionClosedError,
  serve,
  type ServerLogEvent,
  type Socket,
} from "../../mod.ts";
import {
  CHUNK,
  DEADLINE,
  delay,
  echo,
  frame,
  KIB,
  LOCAL,
  MAX_CHUNKS,
  NpmClient,
  numbered,
  OP,
  pattern,
  rawHandshake,
  seqOf,
  SocketTracker,
  waitUntil,
  withTimeout,
  wsUrl,
} from "./_helpers.ts";

const OVER_BUDGET = {
  code: 1013,
  reason: CLOSE_REASON.OverBudget,
  wasClean: false,
};

const holdOpen = async (socket: Socket) => {
  await socket.closed;
};

/** The `over-budget` events a logger saw. */
function budgetEvents() {
  const events: Extract<ServerLogEvent, { type: "over-budget" }>[] = [];
  const logger = (event: ServerLogEvent) => {
    if (event.type === "over-budget") events.push(event);
  };
  return { events, logger };
}

Deno.test(
  "serve({maxBufferedBytes}) closes the peer holding the most of many partial messages with 1013 once they hold more together; the others finish theirs, and a new client still gets in",
  async () => {
    const tracker = new SocketTracker();
    const { events, logger } = budgetEvents();
    await using server = serve(
      { ...LOCAL, maxBufferedBytes: 250_000, pingInterval: 0, logger },
      tracker.wrap(echo),
    );
    // Two peers each send 30 KB of a 40 KB message; a third sends 210 KB
    // of a 1 MB one. Together, 270 KB: over the budget, whatever the order
    // the server reads them in.
    const small = [pattern(40_000, 1), pattern(40_000, 2)];
    const smallFrames = small.map((payload) => frame(OP.binary, payload));
    const peers = [];
    for (const bytes of smallFrames) {
      const peer = await rawHandshake(server.addr);
      peers.push(peer);
      await peer.write(bytes.subarray(0, 30_000));
    }
    using first = peers[0];
    using second = peers[1];
    await waitUntil(
      () => server.stats().bufferedBytes >= 2 * 29_000,
      "the server to hold the two partial messages",
    );
    using large = await rawHandshake(server.addr);
    const largeFrame = frame(OP.binary, new Uint8Array(1_000_000));
    await large.write(largeFrame.subarray(0, 210_000));

    // A peer with nothing queued for it gets the close frame.
    const close = await withTimeout(large.readClose(), DEADLINE, "1013");
    assert.deepEqual(close.before, []);
    assert.equal(close.code, 1013);
    assert.equal(close.reason, CLOSE_REASON.OverBudget);
    await large.readToEof();
    const info = await tracker.closed(large.port);
    assert.deepEqual(
      { code: info.code, reason: info.reason, wasClean: info.wasClean },
      OVER_BUDGET,
    );
    assert.equal(events.length, 1);
    assert.equal(events[0].remoteAddr.port, large.port);
    assert.ok(
      events[0].held >= 150_000 && events[0].total > 250_000,
      `held ${events[0].held} of ${events[0].total}`,
    );

    // The others finish their messages and get them back whole.
    for (const [i, peer] of [first, second].entries()) {
      await peer.write(smallFrames[i].subarray(30_000));
      const echoed = await peer.readFrame();
      assert.equal(echoed.opcode, OP.binary);
      assert.deepEqual(echoed.payload, small[i]);
    }
    await using fresh = await NpmClient.connect(wsUrl(server.addr));
    assert.equal(await fresh.roundTrip("still serving"), "still serving");
    const stats = server.stats();
    assert.equal(stats.budgetCloses, 1);
    assert.deepEqual(stats.closeCodes, { 1013: 1 });
    assert.equal(stats.openConnections, 3);
  },
);

Deno.test(
  "serve({maxBufferedBytes}) closes a peer that does not read what it is sent with 1013 once the backlog takes the server over its budget, while a peer that reads is kept",
  async () => {
    const tracker = new SocketTracker();
    const { events, logger } = budgetEvents();
    await using server = serve(
      {
        ...LOCAL,
        maxBufferedBytes: 2 * 1024 * KIB,
        // Far above the budget: the budget is what stops the backlog.
        maxBackpressure: 256 * 1024 * KIB,
        pingInterval: 0,
        logger,
      },
      tracker.wrap(holdOpen),
    );
    using stalled = await rawHandshake(server.addr); // never reads
    await using reader = await NpmClient.connect(wsUrl(server.addr));
    const stalledSocket = await tracker.socket(stalled.port);
    const readerSocket = await tracker.socket(reader.port);
    let sent = 0;
    for (; sent < MAX_CHUNKS && stalledSocket.state === "open"; sent++) {
      stalledSocket.trySend(numbered(sent));
      assert.equal(readerSocket.trySend(numbered(sent)), "sent");
      await delay(1); // the writes go out, and the reader reads
    }
    const info = await withTimeout(stalledSocket.closed, DEADLINE, "1013");
    assert.deepEqual(
      { code: info.code, reason: info.reason, wasClean: info.wasClean },
      OVER_BUDGET,
    );
    assert.equal(events.length, 1);
    assert.equal(events[0].remoteAddr.port, stalled.port);
    assert.ok(events[0].held > CHUNK, `it held ${events[0].held}`);

    assert.equal(readerSocket.state, "open");
    for (let seq = 0; seq < sent; seq++) {
      assert.equal(seqOf((await reader.next()) as Uint8Array), seq);
    }
    assert.equal(readerSocket.trySend("still here"), "sent");
    assert.equal(await reader.next(), "still here");
    assert.equal(server.stats().budgetCloses, 1);
  },
);

Deno.test(
  "serve({maxBufferedBytes}) closes nothing while the connections hold less: rounds of messages that wait for the handler, then go back, with a budget just above what they hold",
  async () => {
    const { events, logger } = budgetEvents();
    const ROUNDS = 8;
    const COUNT = 64;
    const gates = Array.from(
      { length: ROUNDS },
      () => Promise.withResolvers<void>(),
    );
    // Each round, 64 KiB wait for the handler, then it takes them all and
    // queues 64 KiB of echoes (and 4 header bytes each) in one go: at most
    // 65,792 bytes held.
    await using server = serve(
      { ...LOCAL, maxBufferedBytes: 66 * KIB, pingInterval: 0, logger },
      async (socket) => {
        const messages = socket[Symbol.asyncIterator]();
        for (const gate of gates) {
          await gate.promise;
          for (let i = 0; i < COUNT; i++) {
            const { value, done } = await messages.next();
            if (done) return;
            await socket.send(value);
          }
        }
        await socket.closed;
      },
    );
    await using client = await NpmClient.connect(wsUrl(server.addr));
    for (const gate of gates) {
      for (let i = 0; i < COUNT; i++) client.send(numbered(i, KIB));
      await waitUntil(
        () => server.stats().bufferedBytes === COUNT * KIB,
        "the round to wait for the handler",
      );
      gate.resolve();
      for (let i = 0; i < COUNT; i++) {
        assert.equal(seqOf((await client.next()) as Uint8Array), i);
      }
    }
    assert.deepEqual(events, []);
    const stats = server.stats();
    assert.equal(stats.budgetCloses, 0);
    assert.equal(stats.openConnections, 1);
    assert.equal(stats.messagesReceived, ROUNDS * COUNT);
  },
);

Deno.test(
  "Server.stats().bufferedBytes counts what the connections hold (a message still arriving, a backlog), and goes back to 0 once it is taken, written, or its connection closes",
  async () => {
    const tracker = new SocketTracker();
    await using server = serve(
      { ...LOCAL, pingInterval: 0, backpressurePolicy: "wait" },
      tracker.wrap(echo),
    );
    using peer = await rawHandshake(server.addr);
    const whole = frame(OP.binary, pattern(50_000));
    await peer.write(whole.subarray(0, 20_008)); // 8 header bytes, 20 KB
    await waitUntil(
      () => server.stats().bufferedBytes === 20_000,
      "the partial message to count",
    );
    await peer.write(whole.subarray(20_008));
    assert.deepEqual((await peer.readFrame()).payload, pattern(50_000));
    await waitUntil(
      () => server.stats().bufferedBytes === 0,
      "bufferedBytes back to 0 once echoed",
    );
    assert.match(server.metrics(), /^duplex_buffered_bytes 0$/m);

    // A backlog the peer does not read counts until its connection closes.
    const socket = await tracker.socket(peer.port);
    for (let seq = 0; seq < MAX_CHUNKS && socket.bufferedAmount === 0; seq++) {
      socket.trySend(numbered(seq));
      await delay(1);
    }
    assert.ok(socket.bufferedAmount > 0, "a backlog");
    assert.ok(server.stats().bufferedBytes >= socket.bufferedAmount);
    assert.match(server.metrics(), /^duplex_buffered_bytes [1-9]\d*$/m);
    peer.close();
    await tracker.closed(peer.port);
    assert.equal(server.stats().bufferedBytes, 0);
    assert.match(server.metrics(), /^duplex_budget_closes_total 0$/m);

    // A peer that leaves mid-message: what it sent counts until it is gone.
    using leaving = await rawHandshake(server.addr);
    await leaving.write(whole.subarray(0, 10_008));
    await waitUntil(
      () => server.stats().bufferedBytes === 10_000,
      "the partial message to count",
    );
    leaving.close();
    await tracker.closed(leaving.port);
    assert.equal(server.stats().bufferedBytes, 0);
  },
);

Deno.test(
  "serve({maxBufferedBytes}) lets go of the messages a closed peer sent that its handler had not taken: the handler finds none, and npm:ws sees 1013",
  async () => {
    const go = Promise.withResolvers<void>();
    const taken = Promise.withResolvers<number>();
    await using server = serve(
      { ...LOCAL, maxBufferedBytes: 250_000, pingInterval: 0 },
      async (socket) => {
        await go.promise;
        let count = 0;
        for await (const _ of socket) count++;
        taken.resolve(count);
      },
    );
    await using client = await NpmClient.connect(wsUrl(server.addr));
    for (let i = 0; i < 3; i++) client.send(pattern(100_000, i));
    const close = await withTimeout(client.closed, DEADLINE, "1013");
    assert.deepEqual(close, { code: 1013, reason: CLOSE_REASON.OverBudget });
    go.resolve();
    assert.equal(await withTimeout(taken.promise, DEADLINE, "the loop"), 0);
    assert.equal(server.stats().budgetCloses, 1);
  },
);

Deno.test(
  "serve({maxBufferedBytes, streamMessages}) counts the pieces of a streamed message its handler has not read, and closes the peer with 1013 when they take the server over its budget; the stream errors",
  async () => {
    const failed = Promise.withResolvers<unknown>();
    await using server = serve(
      {
        ...LOCAL,
        streamMessages: true,
        maxBufferedBytes: 100_000,
        pingInterval: 0,
      },
      async (socket) => {
        for await (const message of socket.streams()) {
          // Taken, but read only once the whole message is here.
          await socket.closed;
          try {
            for await (const _ of message.readable);
          } catch (error) {
            failed.resolve(error);
          }
        }
      },
    );
    using peer = await rawHandshake(server.addr);
    await peer.write(frame(OP.binary, pattern(150_000)));
    const close = await withTimeout(peer.readClose(), DEADLINE, "1013");
    assert.equal(close.code, 1013);
    const error = await withTimeout(failed.promise, DEADLINE, "the stream");
    assert.ok(error instanceof ConnectionClosedError, String(error));
    assert.equal(error.code, 1013);
    assert.equal(server.stats().budgetCloses, 1);
  },
);

for (
  const [value, error, message] of [
    [0, RangeError, "got 0"],
    [-1, RangeError, "got -1"],
    [1.5, RangeError, "got 1.5"],
    [NaN, RangeError, "got NaN"],
    ["1000000", TypeError, 'got "1000000"'],
  ] as const
) {
  Deno.test(
    `serve({maxBufferedBytes: ${
      typeof value === "string" ? JSON.stringify(value) : value
    }}) throws a ${error.name} that says what it takes`,
    () => {
      assert.throws(
        () => serve({ ...LOCAL, maxBufferedBytes: value as number }, echo),
        error,
        `Cannot serve: "maxBufferedBytes" must be a positive integer or Infinity, ${message}`,
      );
    },
  );
}

Deno.test(
  "serve({maxBufferedBytes}) lets a peer it closed mid-message send the rest of that message after the 1013 close frame, discarded, instead of resetting it",
  async () => {
    await using server = serve(
      { ...LOCAL, maxBufferedBytes: 100_000, pingInterval: 0 },
      echo,
    );
    using peer = await rawHandshake(server.addr);
    const bytes = frame(OP.binary, new Uint8Array(1_000_000));
    await peer.write(bytes.subarray(0, 150_000));
    const close = await withTimeout(peer.readClose(), DEADLINE, "1013");
    assert.equal(close.code, 1013);
    // The peer had not read it yet: it goes on sending its message.
    for (let at = 150_000; at < bytes.length; at += 64 * KIB) {
      await peer.write(bytes.subarray(at, at + 64 * KIB));
    }
    await withTimeout(peer.readToEof(), DEADLINE, "the server's EOF");
  },
);

Deno.test("serve({maxBufferedBytes: Infinity}) is the default: no budget", async () => {
  await using server = serve({ ...LOCAL, maxBufferedBytes: Infinity }, echo);
  await using client = await NpmClient.connect(wsUrl(server.addr));
  assert.deepEqual(await client.roundTrip(pattern(100_000)), pattern(100_000));
  assert.equal(server.stats().budgetCloses, 0);
});
