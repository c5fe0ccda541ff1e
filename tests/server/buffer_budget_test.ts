import assert from "node:assert/strict";
import {
  CLOSE_REASON,
  ConnectionClosedError,
  prepareMessage,
  serve,
  type ServerLogEvent,
  type Socket,
} from "../../mod.ts";
import { BufferBudget } from "../../src/_buffer_budget.ts";
import { randomBytes } from "../deflate/_helpers.ts";
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
  oneReadThenEnd,
  OP,
  pattern,
  rawHandshake,
  seqOf,
  socketOver,
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

/** A handler that subscribes its socket to "room" and counts it. */
function roomHandler(tracker = new SocketTracker()) {
  let subscribed = 0;
  const handler = tracker.wrap(async (socket) => {
    socket.subscribe("room");
    subscribed++;
    await socket.closed;
  });
  return { handler, subscribed: () => subscribed };
}

for (const deflate of [false, true]) {
  Deno.test(
    `serve({maxBufferedBytes${
      deflate ? ", perMessageDeflate" : ""
    }}) counts a message published to many subscribers once: 200 KiB ${
      deflate ? "(compressed once) " : ""
    }to 19 npm:ws clients under a 2 MiB budget closes none of them, and each gets it`,
    async () => {
      const { events, logger } = budgetEvents();
      const room = roomHandler();
      await using server = serve({
        ...LOCAL,
        maxBufferedBytes: 2 * 1024 * KIB,
        perMessageDeflate: deflate,
        pingInterval: 0,
        logger,
      }, room.handler);
      await using clients = new AsyncDisposableStack();
      const subscribers: NpmClient[] = [];
      for (let i = 0; i < 19; i++) {
        const client = await NpmClient.connect(wsUrl(server.addr), {
          perMessageDeflate: deflate,
        });
        subscribers.push(clients.use(client));
        assert.equal(
          client.ws.extensions.includes("permessage-deflate"),
          deflate,
        );
      }
      await waitUntil(() => room.subscribed() === 19, "19 subscribers");
      // Incompressible: compressed, it is no smaller.
      const message = randomBytes(200 * KIB, 7);
      assert.equal(server.publish("room", message), 19);
      for (const subscriber of subscribers) {
        assert.deepEqual(await subscriber.next(), message);
      }
      assert.deepEqual(events, []);
      assert.equal(server.stats().budgetCloses, 0);
      await waitUntil(
        () => server.stats().bufferedBytes === 0,
        "bufferedBytes back to 0 once written",
      );
    },
  );
}

Deno.test(
  "serve({maxBufferedBytes}) still closes the subscriber that stops reading with 1013: as publishes pile up, it alone holds most of them; the npm:ws subscribers that read get every one",
  async () => {
    const tracker = new SocketTracker();
    const { events, logger } = budgetEvents();
    const room = roomHandler(tracker);
    await using server = serve({
      ...LOCAL,
      maxBufferedBytes: 2 * 1024 * KIB,
      // Far above the budget: the budget is what stops the backlog.
      maxBackpressure: 256 * 1024 * KIB,
      pingInterval: 0,
      logger,
    }, room.handler);
    using stalled = await rawHandshake(server.addr); // never reads
    await using first = await NpmClient.connect(wsUrl(server.addr));
    await using second = await NpmClient.connect(wsUrl(server.addr));
    await using third = await NpmClient.connect(wsUrl(server.addr));
    const readers = [first, second, third];
    await waitUntil(() => room.subscribed() === 4, "4 subscribers");
    const stalledSocket = await tracker.socket(stalled.port);
    let sent = 0;
    for (; sent < MAX_CHUNKS && stalledSocket.state === "open"; sent++) {
      server.publish("room", numbered(sent));
      for (const reader of readers) {
        assert.equal(seqOf((await reader.next()) as Uint8Array), sent);
      }
    }
    const info = await withTimeout(stalledSocket.closed, DEADLINE, "1013");
    assert.deepEqual(
      { code: info.code, reason: info.reason, wasClean: info.wasClean },
      OVER_BUDGET,
    );
    assert.equal(events.length, 1);
    assert.equal(events[0].remoteAddr.port, stalled.port);
    assert.ok(events[0].held > 2 * 1024 * KIB - 2 * CHUNK, `${events[0].held}`);

    for (const reader of readers) {
      assert.equal((await tracker.socket(reader.port)).state, "open");
    }
    assert.equal(server.publish("room", "still here"), 3);
    for (const reader of readers) {
      assert.equal(await reader.next(), "still here");
    }
    assert.equal(server.stats().budgetCloses, 1);
    await waitUntil(
      () => server.stats().bufferedBytes === 0,
      "bufferedBytes back to 0",
    );
  },
);

Deno.test(
  "Server.stats().bufferedBytes goes back to 0 under maxBufferedBytes after publishes of every size, compressed or not, to subscribers that read, and to subscribers that stop reading and leave",
  async () => {
    const tracker = new SocketTracker();
    const room = roomHandler(tracker);
    await using server = serve({
      ...LOCAL,
      maxBufferedBytes: 256 * 1024 * KIB,
      maxBackpressure: 256 * 1024 * KIB,
      perMessageDeflate: true,
      pingInterval: 0,
    }, room.handler);
    await using plain = await NpmClient.connect(wsUrl(server.addr));
    await using compressing = await NpmClient.connect(wsUrl(server.addr), {
      perMessageDeflate: true,
    });
    const readers = [plain, compressing];
    using first = await rawHandshake(server.addr); // never reads
    using second = await rawHandshake(server.addr); // nor does this one
    await waitUntil(() => room.subscribed() === 4, "4 subscribers");
    // Small ones (joined into one write, copied), one over the write slice
    // (written in parts), text and binary, compressible or not.
    const sizes = [0, 10, 5 * KIB, 20 * KIB, 300 * KIB, 700 * KIB];
    let round = 0;
    const publishRound = async () => {
      const messages = sizes.flatMap((size, i) => [
        randomBytes(size, round * 10 + i),
        "x".repeat(size),
      ]);
      round++;
      for (const message of messages) server.publish("room", message);
      for (const reader of readers) {
        for (const message of messages) {
          assert.deepEqual(await reader.next(), message);
        }
      }
    };
    // Each subscriber that never reads leaves with a backlog unwritten.
    for (const peer of [first, second]) {
      const socket = await tracker.socket(peer.port);
      while (socket.bufferedAmount === 0 && round < 64) await publishRound();
      assert.ok(socket.bufferedAmount > 0, "a backlog");
      peer.close();
      await tracker.closed(peer.port);
    }
    await publishRound();
    await waitUntil(
      () => server.stats().bufferedBytes === 0,
      "bufferedBytes back to 0 once written",
    );
    await plain.close();
    await compressing.close();
    assert.equal(server.stats().bufferedBytes, 0);
    assert.equal(server.stats().budgetCloses, 0);
  },
);

/**
 * A server socket under `budget` whose peer sends nothing and takes nothing
 * written until `release()`; `leave()` ends the connection from its side.
 */
function heldWrites(budget: BufferBudget<Socket>) {
  const gone = Promise.withResolvers<void>();
  const gate = Promise.withResolvers<void>();
  let writes = 0;
  const readable = new ReadableStream({
    type: "bytes",
    async pull(controller) {
      await gone.promise;
      controller.close();
      controller.byobRequest?.respond(0);
    },
  });
  const writable = new WritableStream<Uint8Array>({
    async write() {
      writes++;
      // A peer that left takes nothing more.
      await Promise.race([
        gate.promise,
        gone.promise.then(() => Promise.reject(new Error("reset"))),
      ]);
    },
  });
  const socket = socketOver(readable, writable, { budget }, gone.resolve);
  const running = socket.run();
  return {
    socket,
    writes: () => writes,
    release: () => gate.resolve(),
    leave: () => gone.resolve(),
    async end() {
      gone.resolve();
      gate.resolve();
      await running;
    },
  };
}

Deno.test("Socket: a prepared message queued on several sockets counts once in the server's budget while any of them has not written it, and goes with the last", async () => {
  const budget = new BufferBudget<Socket>(64 * 1024 * KIB);
  const [written, leaving, holding] = [0, 1, 2].map(() => heldWrites(budget));
  // Over the write slice: it goes out in parts.
  const prepared = prepareMessage(new Uint8Array(700 * KIB));
  const size = prepared.frame.length;
  for (const { socket } of [written, leaving, holding]) {
    socket.trySend(prepared);
  }
  assert.equal(budget.total, size);
  assert.equal(budget.recount(), size);
  written.socket.trySend(new Uint8Array(20 * KIB)); // its own: counts apart
  assert.equal(budget.recount(), size + 20 * KIB + 4);
  await waitUntil(
    () => [written, leaving, holding].every((peer) => peer.writes() > 0),
    "the writes to start",
  );
  assert.equal(budget.recount(), size + 20 * KIB + 4, "being written");

  written.release();
  await waitUntil(() => written.socket.bufferedAmount === 0, "the writes");
  assert.equal(budget.recount(), size, "two hold it still");
  leaving.leave();
  await withTimeout(leaving.socket.closed, DEADLINE, "the socket to close");
  assert.equal(budget.recount(), size, "one holds it still");
  assert.equal(budget.total, size);
  holding.release();
  await waitUntil(() => holding.socket.bufferedAmount === 0, "the writes");
  assert.equal(budget.total, 0);
  assert.equal(budget.recount(), 0);
  await Promise.all([written, leaving, holding].map((peer) => peer.end()));
});

Deno.test("Socket: small prepared messages copied into one write still count once, as shared, while taken, and not at all once written", async () => {
  const budget = new BufferBudget<Socket>(64 * 1024 * KIB);
  const peers = [0, 1].map(() => heldWrites(budget));
  const messages = [prepareMessage(pattern(1000, 1)), prepareMessage("two")];
  const size = messages[0].frame.length + messages[1].frame.length;
  for (const { socket } of peers) {
    for (const message of messages) socket.trySend(message);
  }
  assert.equal(budget.total, size);
  await waitUntil(
    () => peers.every((peer) => peer.writes() > 0),
    "the writes to start",
  );
  // One write each, of a copy of both frames: the frames still count once
  // (counted as each socket's own, a burst published to thousands of
  // sockets would count thousands of times).
  assert.equal(budget.total, size);
  assert.equal(budget.recount(), size);
  for (const peer of peers) peer.release();
  await waitUntil(
    () => peers.every((peer) => peer.socket.bufferedAmount === 0),
    "the writes",
  );
  assert.equal(budget.total, 0);
  assert.equal(budget.recount(), 0);
  await Promise.all(peers.map((peer) => peer.end()));
});

/** A socket whose writes each wait for `release()`. */
function steppedWrites(budget: BufferBudget<Socket>) {
  const input = oneReadThenEnd(null);
  const peer = { writes: 0, release: () => {}, socket: null! as Socket };
  let ended = false;
  const writable = new WritableStream<Uint8Array>({
    write() {
      peer.writes++;
      if (ended) return;
      return new Promise<void>((resolve) => peer.release = resolve);
    },
  });
  peer.socket = socketOver(input.readable, writable, { budget }, input.end);
  const running = peer.socket.run();
  return {
    peer,
    async end() {
      ended = true;
      peer.release();
      input.end();
      await running;
    },
  };
}

Deno.test("Socket: a backlog of small prepared messages copied into runs for one write counts as shared up to the first run (4 KiB), the rest as the socket's own copies, while another socket holds the same frames", async () => {
  const budget = new BufferBudget<Socket>(64 * 1024 * KIB);
  const writing = steppedWrites(budget);
  const holding = steppedWrites(budget);
  const [a, b] = [writing.peer, holding.peer];
  // A write under way on each, then a backlog of 100 frames of 1004 bytes
  // behind it: a's next write is 25 runs of four, its progress counted
  // every 64 KiB; b never writes it.
  for (const { socket } of [a, b]) socket.trySend(new Uint8Array(10));
  await waitUntil(() => a.writes === 1 && b.writes === 1, "the first writes");
  const messages = Array.from(
    { length: 100 },
    (_, i) => prepareMessage(pattern(1000, i)),
  );
  for (const message of messages) {
    a.socket.trySend(message);
    b.socket.trySend(message);
  }
  const frame = messages[0].frame.length;
  assert.equal(budget.recount(), 100 * frame + 2 * 12, "each frame once");
  let seen = 1;
  while (a.socket.bufferedAmount > 0) {
    a.release();
    await waitUntil(
      () => a.writes > seen || a.socket.bufferedAmount === 0,
      "the next write",
    );
    seen = a.writes;
    // b holds every frame; a's copies are a's own, but for those of its
    // first run until a write counted as done covers it.
    const held = a.socket.bufferedAmount + b.socket.bufferedAmount;
    const running = budget.total;
    const total = budget.recount();
    assert.ok(running >= total, `running total ${running} below ${total}`);
    assert.ok(
      total === held ||
        (a.socket.bufferedAmount === 100 * frame &&
          total === held - 4 * frame),
      `${total} counted of ${held} held`,
    );
  }
  assert.equal(budget.recount(), b.socket.bufferedAmount);
  await writing.end();
  await holding.end();
  assert.equal(budget.recount(), 0);
});

Deno.test("serve({maxBufferedBytes}): a subscriber closed by its backpressure policy within a publish is not also taken for a budget eviction (no over-budget, no budgetCloses)", async () => {
  const message = 200 * KIB;
  const { events, logger } = budgetEvents();
  const sockets: Socket[] = [];
  await using server = serve({
    ...LOCAL,
    pingInterval: 0,
    maxBackpressure: 1024 * KIB,
    // Over it only when the slow one holds a message past its limit.
    maxBufferedBytes: 1024 * KIB + message - 1,
    logger,
  }, async (socket) => {
    sockets.push(socket);
    socket.subscribe("t");
    for await (const _ of socket);
  });
  using slow = await rawHandshake(server.addr); // never reads
  const fast = new WebSocket(wsUrl(server.addr));
  await new Promise((resolve) => fast.onopen = resolve);
  await waitUntil(() => server.subscriberCount("t") === 2, "both subscribed");
  const slowSocket = sockets[0];
  const payload = new Uint8Array(message);
  for (let i = 0; i < 2000 && slowSocket.state === "open"; i++) {
    const before = slowSocket.bufferedAmount;
    server.publish("t", prepareMessage(payload));
    if (before === 0) await delay(5);
  }
  const info = await withTimeout(slowSocket.closed, DEADLINE, "the close");
  assert.equal(info.code, 1008);
  assert.deepEqual(events, []);
  assert.equal(server.stats().budgetCloses, 0);
  const closed = new Promise((resolve) => fast.onclose = resolve);
  fast.close();
  await closed;
  slow.close();
});

Deno.test("serve({maxBufferedBytes}): a burst of small messages published in one turn to hundreds of subscribers that keep up evicts none of them (each one's copy of the burst counts once)", async () => {
  const subscribers = 200;
  const events: ServerLogEvent[] = [];
  await using server = serve({
    ...LOCAL,
    // Far below 200 copies of the burst (800 KiB), far above the burst.
    maxBufferedBytes: 256 * KIB,
    logger: (event) => events.push(event),
  }, async (socket) => {
    socket.subscribe("news");
    for await (const _ of socket);
  });
  let received = 0;
  const clients = await Promise.all(
    Array.from(
      { length: subscribers },
      () =>
        new Promise<WebSocket>((resolve, reject) => {
          const client = new WebSocket(wsUrl(server.addr));
          client.onopen = () => resolve(client);
          client.onerror = reject;
          client.onmessage = () => received++;
        }),
    ),
  );
  await waitUntil(
    () => server.subscriberCount("news") === subscribers,
    "every subscription",
  );
  // Four 1 KiB messages in one turn: each subscriber's write joins them.
  for (let i = 0; i < 4; i++) server.publish("news", pattern(KIB, i));
  await waitUntil(() => received === 4 * subscribers, "every delivery");
  assert.deepEqual(events.filter((event) => event.type === "over-budget"), []);
  await Promise.all(clients.map((client) => {
    const closed = new Promise((resolve) => client.onclose = resolve);
    client.close();
    return closed;
  }));
});

Deno.test("serve({maxBufferedBytes}): a logger that publishes on over-budget (an eviction inside publish()) does not overtake the message being published", async () => {
  const sockets: Socket[] = [];
  await using server = serve({
    ...LOCAL,
    maxBufferedBytes: 64 * KIB,
    logger: (event) => {
      if (event.type === "over-budget") server.publish("news", "someone left");
    },
  }, async (socket) => {
    socket.subscribe("news");
    sockets.push(socket);
    await socket.closed;
  });
  using _evicted = await rawHandshake(server.addr); // subscribed first
  await waitUntil(() => sockets.length === 1, "the first subscriber");
  await using reader = await NpmClient.connect(wsUrl(server.addr));
  await waitUntil(() => sockets.length === 2, "the second subscriber");
  // The first holds 60 KiB; the publish takes the total over the budget,
  // and the first is evicted in the middle of it.
  sockets[0].trySend(new Uint8Array(60 * KIB));
  const first = "first" + "x".repeat(8 * KIB);
  server.publish("news", first);
  assert.equal(await reader.next(), first);
  assert.equal(await reader.next(), "someone left");
});
