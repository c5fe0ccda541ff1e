import assert from "node:assert/strict";
import {
  type CloseInfo,
  ConnectionClosedError,
  type Message,
  serve,
  type Socket,
} from "../../mod.ts";
import {
  assertBytes,
  CHUNK,
  closePayload,
  concat,
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
  type RawPeer,
  seqOf,
  settlesWithin,
  SocketTracker,
  waitUntil,
  withTimeout,
  wsUrl,
} from "./_helpers.ts";

/** Tracks whether a promise has settled. */
function track(promise: Promise<unknown>): { settled: boolean } {
  const state = { settled: false };
  promise.then(
    () => state.settled = true,
    () => state.settled = true,
  );
  return state;
}

/**
 * Sends numbered 64 KiB messages with `send()` until one does not resolve:
 * the peer is not reading, the kernel buffers are full and the socket holds
 * the rest. Returns how many were sent and the pending `send()`.
 */
async function sendUntilStalled(
  socket: Socket,
): Promise<{ count: number; pending: Promise<void> }> {
  for (let seq = 0; seq < MAX_CHUNKS; seq++) {
    const pending = socket.send(numbered(seq));
    if (!await settlesWithin(pending, 150)) {
      return { count: seq + 1, pending };
    }
  }
  throw new Error(`send() never waited in ${MAX_CHUNKS} messages`);
}

/** Reads `count` binary frames and asserts they are numbered from `from`. */
async function readNumbered(
  peer: RawPeer,
  count: number,
  from = 0,
): Promise<void> {
  for (let i = 0; i < count; i++) {
    const { opcode, payload } = await peer.readFrame();
    assert.equal(opcode, OP.binary);
    assert.equal(seqOf(payload), from + i, "messages arrive in order");
  }
}

/** Answers the server's close and checks the socket closed cleanly. */
async function closeFromPeer(
  peer: RawPeer,
  tracker: SocketTracker,
  code = 1000,
): Promise<void> {
  await peer.write(frame(OP.close, closePayload(code)));
  const info = await tracker.closed(peer.port);
  assert.equal(info.code, code);
  assert.equal(info.wasClean, true);
}

/** Closes from a raw peer with 1000; the server's `closed` says it was clean. */
async function closeCleanly(peer: RawPeer, closed: Promise<unknown>) {
  await peer.write(frame(OP.close, closePayload(1000)));
  assert.deepEqual(await withTimeout(closed, DEADLINE, "the close"), {
    code: 1000,
    reason: "",
    wasClean: true,
  });
  peer.close();
}

const holdOpen = async (socket: Socket) => {
  await socket.closed;
};

// --- outbound -------------------------------------------------------------

Deno.test(
  "Socket.bufferedAmount grows while the peer does not read and returns to 0 when it does",
  async () => {
    const tracker = new SocketTracker();
    await using server = serve(
      { ...LOCAL, sendHighWaterMark: CHUNK, backpressurePolicy: "wait" },
      tracker.wrap(holdOpen),
    );
    using peer = await rawHandshake(server.addr);
    const socket = await tracker.socket(peer.port);
    assert.equal(socket.bufferedAmount, 0);
    const { count, pending } = await sendUntilStalled(socket);
    const stalled = socket.bufferedAmount;
    assert.ok(stalled > 0, "bytes wait in the socket");
    for (let i = 0; i < 4; i++) {
      assert.equal(socket.trySend(numbered(count + i)), "backpressure");
    }
    assert.ok(
      socket.bufferedAmount >= stalled + 4 * CHUNK,
      `${socket.bufferedAmount} >= ${stalled} + 4 chunks`,
    );
    const sending = track(pending);
    await delay(100);
    assert.equal(sending.settled, false, "send() waits while nothing drains");

    await readNumbered(peer, count + 4);
    await withTimeout(pending, DEADLINE, "the pending send() to resolve");
    await waitUntil(() => socket.bufferedAmount === 0, "bufferedAmount 0");
    assert.equal(socket.trySend("after"), "sent");
    const after = await peer.readFrame();
    assert.equal(after.opcode, OP.text);
    assert.equal(new TextDecoder().decode(after.payload), "after");
    await closeFromPeer(peer, tracker);
  },
);

Deno.test(
  "await Socket.send() parks a sending handler over sendHighWaterMark until the peer reads",
  async () => {
    const tracker = new SocketTracker();
    const total = 400; // 25 MiB: more than the kernel buffers hold.
    let progress = 0;
    await using server = serve(
      { ...LOCAL, sendHighWaterMark: CHUNK, maxBackpressure: 64 * 1024 * KIB },
      tracker.wrap(async (socket) => {
        for (let seq = 0; seq < total; seq++) {
          await socket.send(numbered(seq));
          progress = seq + 1;
        }
        await socket.closed;
      }),
    );
    using peer = await rawHandshake(server.addr);
    const socket = await tracker.socket(peer.port);
    // Wait for the stall: bytes queued above the high-water mark.
    let parked = -1;
    for (let i = 0; i < 200 && parked === -1; i++) {
      const before = progress;
      await delay(50);
      if (progress === before && socket.bufferedAmount > CHUNK) {
        parked = progress;
      }
    }
    assert.ok(parked >= 0 && parked < total, `parked at ${parked}`);
    await delay(100);
    assert.equal(progress, parked, "the handler is still waiting in send()");

    await readNumbered(peer, total);
    await waitUntil(() => progress === total, "the handler to send them all");
    await closeFromPeer(peer, tracker);
  },
);

Deno.test(
  "Socket.trySend() says sent, backpressure, dropped and closed",
  async () => {
    const tracker = new SocketTracker();
    await using server = serve({
      ...LOCAL,
      sendHighWaterMark: KIB,
      maxBackpressure: 4 * KIB,
      backpressurePolicy: "drop",
    }, tracker.wrap(holdOpen));
    await using client = await NpmClient.connect(wsUrl(server.addr));
    const socket = await tracker.socket(client.port);
    // One synchronous run: nothing is written in between.
    assert.equal(socket.trySend("small"), "sent");
    assert.equal(socket.trySend(numbered(1, 2 * KIB)), "backpressure");
    assert.equal(socket.trySend(numbered(2, 3 * KIB)), "backpressure");
    assert.ok(socket.bufferedAmount >= 4 * KIB);
    assert.equal(socket.trySend("dropped"), "dropped");
    assert.equal(socket.trySend(numbered(3, 10)), "dropped");
    assert.equal(server.stats().backpressureDrops, 2);
    await waitUntil(() => socket.bufferedAmount === 0, "the queue to drain");
    assert.equal(socket.trySend("after the drain"), "sent");

    assert.equal(await client.next(), "small");
    assert.equal(seqOf((await client.next()) as Uint8Array), 1);
    assert.equal(seqOf((await client.next()) as Uint8Array), 2);
    assert.equal(await client.next(), "after the drain");

    const closing = socket.close(1000, "bye");
    assert.equal(socket.trySend("late"), "closed");
    await assert.rejects(socket.send("late"), ConnectionClosedError);
    assert.deepEqual(await client.closed, { code: 1000, reason: "bye" });
    await withTimeout(closing, DEADLINE, "close()");
    assert.equal(socket.trySend("later"), "closed");
    assert.equal(server.stats().messagesSent, 4);
  },
);

Deno.test(
  'serve({backpressurePolicy: "close"}) closes a socket that does not read with 1008',
  async () => {
    const tracker = new SocketTracker();
    await using server = serve({
      ...LOCAL,
      sendHighWaterMark: CHUNK,
      maxBackpressure: 256 * KIB,
      backpressurePolicy: "close",
    }, tracker.wrap(holdOpen));
    using peer = await rawHandshake(server.addr);
    const socket = await tracker.socket(peer.port);
    const statuses = new Set<string>();
    let last = "";
    for (let seq = 0; seq < MAX_CHUNKS && last !== "dropped"; seq++) {
      last = socket.trySend(numbered(seq));
      statuses.add(last);
      await delay(0);
    }
    assert.equal(last, "dropped");
    assert.ok(statuses.has("backpressure"));
    assert.deepEqual(
      await withTimeout(socket.closed, DEADLINE, "the 1008 close"),
      { code: 1008, reason: "backpressure limit exceeded", wasClean: false },
    );
    assert.equal(socket.trySend("late"), "closed");
    await assert.rejects(socket.send("late"), ConnectionClosedError);
    await peer.readToEof();
    await waitUntil(() => server.connections === 0, "the socket to go");
    const stats = server.stats();
    assert.equal(stats.closeCodes[1008], 1);
    assert.equal(stats.backpressureDrops, 1);
  },
);

Deno.test(
  'serve({backpressurePolicy: "drop"}) drops what does not fit, counts it, and delivers the rest in order',
  async () => {
    const tracker = new SocketTracker();
    await using server = serve({
      ...LOCAL,
      sendHighWaterMark: CHUNK,
      maxBackpressure: 256 * KIB,
      backpressurePolicy: "drop",
    }, tracker.wrap(holdOpen));
    using peer = await rawHandshake(server.addr);
    const socket = await tracker.socket(peer.port);
    const accepted: number[] = [];
    let drops = 0;
    for (let seq = 0; seq < MAX_CHUNKS && drops < 5; seq++) {
      const status = socket.trySend(numbered(seq));
      if (status === "dropped") drops++;
      else accepted.push(seq);
      await delay(0);
    }
    assert.equal(drops, 5);
    assert.equal(socket.state, "open", "dropping does not close");
    assert.equal(server.stats().backpressureDrops, 5);
    for (const seq of accepted) {
      const { payload } = await peer.readFrame();
      assert.equal(seqOf(payload), seq);
    }
    await closeFromPeer(peer, tracker);
  },
);

Deno.test(
  'serve({backpressurePolicy: "wait"}) queues past maxBackpressure and drops nothing',
  async () => {
    const tracker = new SocketTracker();
    await using server = serve({
      ...LOCAL,
      sendHighWaterMark: CHUNK,
      maxBackpressure: 256 * KIB,
      backpressurePolicy: "wait",
    }, tracker.wrap(holdOpen));
    using peer = await rawHandshake(server.addr);
    const socket = await tracker.socket(peer.port);
    let count = 0;
    while (socket.bufferedAmount < 1024 * KIB && count < MAX_CHUNKS) {
      assert.notEqual(socket.trySend(numbered(count)), "dropped");
      count++;
      await delay(0);
    }
    assert.ok(socket.bufferedAmount >= 1024 * KIB, "4x maxBackpressure queued");
    const pending = socket.send(numbered(count++));
    const sending = track(pending);
    await delay(50);
    assert.equal(sending.settled, false, "send() waits for the drain");
    assert.equal(socket.state, "open");
    await readNumbered(peer, count);
    await withTimeout(pending, DEADLINE, "send() after the drain");
    assert.equal(server.stats().backpressureDrops, 0);
    await closeFromPeer(peer, tracker);
  },
);

for (const size of [1, 125, 126, 16 * KIB + 1, 65_536, 256 * KIB]) {
  Deno.test(
    `Socket.send() copies a ${size}-byte payload: mutating it after send() returns changes nothing`,
    async () => {
      const original = pattern(size, 7);
      await using server = serve(LOCAL, (socket) => {
        const buffer = original.slice();
        socket.send(buffer);
        buffer.fill(0xee);
        const other = original.slice();
        assert.notEqual(socket.trySend(other), "dropped");
        other.fill(0xdd);
        const arrayBuffer = original.slice().buffer;
        socket.send(arrayBuffer);
        new Uint8Array(arrayBuffer).fill(0xcc);
      });
      await using client = await NpmClient.connect(wsUrl(server.addr));
      for (let i = 0; i < 3; i++) assertBytes(await client.next(), original);
    },
  );
}

Deno.test(
  "Socket.send() of a binary payload over 256 KiB resolves once written; the peer receives it intact",
  async () => {
    const size = 256 * KIB + 1;
    const written = Promise.withResolvers<void>();
    await using server = serve(LOCAL, async (socket) => {
      const buffer = pattern(size, 5);
      // Written from the caller's buffer: leave it alone until send() resolves.
      await socket.send(buffer);
      buffer.fill(0xee);
      written.resolve();
      await socket.closed;
    });
    await using client = await NpmClient.connect(wsUrl(server.addr));
    await withTimeout(written.promise, DEADLINE, "send() to resolve");
    assertBytes(await client.next(), pattern(size, 5));
  },
);

Deno.test(
  "Server.shutdown() delivers data queued before it, then the 1001 close",
  async () => {
    const tracker = new SocketTracker();
    const server = serve(
      { ...LOCAL, sendHighWaterMark: CHUNK, pingInterval: 50 },
      tracker.wrap(holdOpen),
    );
    try {
      using peer = await rawHandshake(server.addr);
      const socket = await tracker.socket(peer.port);
      const { count, pending } = await sendUntilStalled(socket);
      for (let i = 0; i < 4; i++) socket.trySend(numbered(count + i));
      assert.ok(socket.bufferedAmount > 4 * CHUNK);
      const shutdown = server.shutdown();
      const close = await peer.readClose();
      // Keepalive pings may be interleaved; the data is all there, in order.
      const data = close.before.filter((f) => f.opcode === OP.binary);
      assert.deepEqual(
        data.map((f) => seqOf(f.payload)),
        Array.from({ length: count + 4 }, (_, i) => i),
      );
      assert.ok(
        close.before.every((f) =>
          f.opcode === OP.binary || f.opcode === OP.ping
        ),
        "nothing but the data and keepalive pings before the close",
      );
      assert.equal(close.code, 1001);
      assert.equal(close.reason, "server shutting down");
      await withTimeout(pending, DEADLINE, "the pending send()");
      await peer.write(frame(OP.close, closePayload(1001)));
      await withTimeout(shutdown, DEADLINE, "shutdown()");
      const info = await tracker.closed(peer.port);
      assert.equal(info.code, 1001);
      assert.equal(info.wasClean, true);
    } finally {
      await server.shutdown();
    }
  },
);

// --- inbound --------------------------------------------------------------

/** Writes all of `bytes`, however many writes that takes. */
async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  while (bytes.length > 0) bytes = bytes.subarray(await conn.write(bytes));
}

/**
 * Writes batches of masked frames until a write stalls (the server stopped
 * reading and the kernel buffers are full). Returns how many frames went out
 * including the stalled batch, the bytes written, and the pending write.
 */
async function writeUntilStalled(
  peer: RawPeer,
  batch: (first: number) => { frames: Uint8Array; count: number },
  maxBytes = 64 * 1024 * KIB,
): Promise<{ frames: number; bytes: number; pending: Promise<void> }> {
  let frames = 0;
  let bytes = 0;
  while (bytes < maxBytes) {
    const next = batch(frames);
    const pending = writeAll(peer.conn, next.frames);
    frames += next.count;
    bytes += next.frames.length;
    if (!await settlesWithin(pending, 200)) return { frames, bytes, pending };
  }
  throw new Error(`writes never stalled in ${maxBytes} bytes`);
}

/** A handler that waits for `start` before iterating, collecting messages. */
function lateReader(start: Promise<void>) {
  const received: Message[] = [];
  const done = Promise.withResolvers<void>();
  const handler = async (socket: Socket) => {
    await start;
    for await (const message of socket) received.push(message);
    done.resolve();
  };
  return { received, done: done.promise, handler };
}

for (
  const { name, options, size, perBatch } of [
    {
      name: "receiveHighWaterMark",
      options: { receiveHighWaterMark: 64 * KIB },
      size: 16 * KIB,
      perBatch: 4,
    },
    {
      name: "maxQueuedMessages",
      options: { maxQueuedMessages: 8 },
      size: 100,
      perBatch: 600,
    },
  ] as const
) {
  Deno.test(
    `serve({${name}}) stops reading from a peer whose handler does not iterate, then delivers every message in order`,
    async () => {
      const start = Promise.withResolvers<void>();
      const reader = lateReader(start.promise);
      const tracker = new SocketTracker();
      await using server = serve(
        { ...LOCAL, ...options },
        tracker.wrap(reader.handler),
      );
      using peer = await rawHandshake(server.addr);
      const batch = (first: number) => {
        const frames: Uint8Array[] = [];
        for (let i = 0; i < perBatch; i++) {
          frames.push(frame(OP.binary, numbered(first + i, size)));
        }
        return { frames: concat(...frames), count: perBatch };
      };
      let written: Awaited<ReturnType<typeof writeUntilStalled>>;
      try {
        written = await writeUntilStalled(peer, batch);
        const held = server.stats().bytesReceived;
        // What the server read is bounded by the limit plus one read; the
        // rest waits in the kernel buffers.
        assert.ok(held <= 1024 * KIB, `the server read ${held} bytes`);
        assert.ok(
          written.bytes > held + 1024 * KIB,
          `the client wrote ${written.bytes} bytes, the server read ${held}`,
        );
        await delay(100);
        assert.equal(
          server.stats().bytesReceived,
          held,
          "the server reads nothing more while the handler waits",
        );
      } finally {
        start.resolve();
      }
      await withTimeout(written.pending, DEADLINE, "the stalled write");
      await writeAll(peer.conn, frame(OP.close, closePayload(1000)));
      await withTimeout(reader.done, DEADLINE, "the handler to read all");
      assert.equal(reader.received.length, written.frames);
      reader.received.forEach((message, i) => {
        assert.ok(message instanceof Uint8Array);
        assert.equal(message.length, size);
        assert.equal(seqOf(message), i);
      });
      assert.equal((await tracker.closed(peer.port)).code, 1000);
    },
  );
}

Deno.test({
  name:
    "Socket.close() completes the closing handshake while reading is paused by inbound backpressure",
  fn: async () => {
    const tracker = new SocketTracker();
    await using server = serve(
      // The handler never takes a message: closing waits for it a second at
      // most, then drops what it would not take to find the client's close
      // frame, long before closeTimeout (past DEADLINE).
      { ...LOCAL, maxQueuedMessages: 1, closeTimeout: 20_000, pingInterval: 0 },
      tracker.wrap(holdOpen),
    );
    await using client = await NpmClient.connect(wsUrl(server.addr));
    for (let i = 0; i < 10; i++) client.send(`m${i}`);
    await waitUntil(
      () => server.stats().messagesReceived > 0,
      "the server to read something",
    );
    const socket = await tracker.socket(client.port);
    const info = await withTimeout(
      socket.close(1000, "bye"),
      DEADLINE,
      "close",
    );
    assert.deepEqual(await client.closed, { code: 1000, reason: "bye" });
    assert.deepEqual(info, { code: 1000, reason: "bye", wasClean: true });
  },
});

Deno.test("a socket whose reading is paused still notices a peer that went away: its pings fail, and the socket ends", async () => {
  const tracker = new SocketTracker();
  await using server = serve(
    { ...LOCAL, pingInterval: 50, maxQueuedMessages: 2 },
    tracker.wrap(async (socket) => {
      // Never iterates: the queue fills and reading pauses.
      await socket.closed;
    }),
  );
  const peer = await rawHandshake(server.addr);
  const socket = await tracker.socket(peer.port);
  for (let i = 0; i < 10; i++) await peer.write(frame(OP.text, `m${i}`));
  await delay(100); // read, queued, paused
  // Gone without a close frame; the paused socket never reads the EOF.
  peer.close();
  const info = await withTimeout(
    socket.closed,
    DEADLINE,
    "the paused socket to notice the peer is gone",
  );
  assert.equal(info.code, 1006);
  await waitUntil(() => server.connections === 0, "the connection to end");
});

Deno.test("two loops iterating one socket at once share its messages, each message once, and both end at close", async () => {
  const received: string[][] = [[], []];
  const done = Promise.withResolvers<void>();
  await using server = serve(LOCAL, async (socket) => {
    const loop = async (i: number) => {
      for await (const message of socket) received[i].push(message as string);
    };
    await Promise.all([loop(0), loop(1)]);
    done.resolve();
  });
  await using client = await NpmClient.connect(wsUrl(server.addr));
  const sent = Array.from({ length: 50 }, (_, i) => `m${i}`);
  for (const message of sent) client.send(message);
  await waitUntil(
    () => received[0].length + received[1].length === sent.length,
    "every message taken",
  );
  await client.close(1000);
  await withTimeout(done.promise, DEADLINE, "both loops to end");
  assert.deepEqual([...received[0], ...received[1]].sort(), [...sent].sort());
  assert.ok(received[0].length > 0 && received[1].length > 0);
});

for (
  const [shape, handler] of [
    [
      "a handler that only sends, to a peer that keeps sending",
      async (socket: Socket) => {
        const payload = new Uint8Array(CHUNK);
        while (socket.state === "open") {
          await socket.send(payload).catch(() => {});
        }
      },
    ],
    ["the echo loop, to a peer that sent a lot and went quiet", echo],
  ] as const
) {
  Deno.test(`${shape} but never reads is closed with 1011 after pingInterval + pongTimeout without progress`, async () => {
    const tracker = new SocketTracker();
    await using server = serve(
      { ...LOCAL, pingInterval: 200, pongTimeout: 200 },
      tracker.wrap(handler),
    );
    const peer = await rawHandshake(server.addr);
    const socket = await tracker.socket(peer.port);
    const talking = (async () => {
      // The echo loop gets enough to fill every buffer; the other, a trickle
      // that keeps it from ever being a silent peer.
      const burst = handler === echo;
      for (let i = 0; socket.state === "open" && i < MAX_CHUNKS; i++) {
        await peer.write(frame(OP.binary, numbered(i, burst ? CHUNK : 4)))
          .catch(() => {});
        if (!burst) await delay(50);
      }
    })();
    const info = await withTimeout(socket.closed, DEADLINE, "the close");
    assert.deepEqual(info, {
      code: 1011,
      reason: "peer stopped reading",
      wasClean: false,
    });
    peer.close();
    await talking;
  });
}

Deno.test("a handler that takes none of a full queue for closeTimeout closes with 1008 'messages not read' instead of dropping them unseen; what it takes later arrives in order", async () => {
  const taken: string[] = [];
  const closed = Promise.withResolvers<unknown>();
  const handled = Promise.withResolvers<void>();
  await using server = serve(
    { ...LOCAL, closeTimeout: 300, maxQueuedMessages: 8 },
    async (socket) => {
      socket.closed.then(closed.resolve);
      await delay(700); // a slow start: longer than closeTimeout
      for await (const message of socket) taken.push(message as string);
      handled.resolve();
    },
  );
  const peer = await rawHandshake(server.addr);
  const sent = Array.from({ length: 40 }, (_, i) => `m${i}`);
  await peer.write(concat(...sent.map((text) => frame(OP.text, text))));
  const close = await withTimeout(peer.readClose(), DEADLINE, "the close");
  assert.deepEqual([close.code, close.reason], [1008, "messages not read"]);
  await peer.write(frame(OP.close, closePayload(1008)));
  // (`closed` reports the peer's close frame: our code, echoed.)
  const info = await withTimeout(closed.promise, DEADLINE, "closed");
  assert.deepEqual(info, { code: 1008, reason: "", wasClean: true });
  await withTimeout(handled.promise, DEADLINE, "the handler");
  assert.ok(taken.length >= 8, `took ${taken.length}`);
  assert.deepEqual(taken, sent.slice(0, taken.length));
  peer.close();
});

Deno.test("a handler that takes a full queue slowly, one message per more than closeTimeout, is not closed, whether in one loop or through a helper that returns from a loop per message", async () => {
  /** The next message, through a loop of its own (a common helper). */
  async function receive(socket: Socket): Promise<Message | undefined> {
    for await (const message of socket) return message;
  }
  for (const helper of [false, true]) {
    const taken: string[] = [];
    await using server = serve(
      { ...LOCAL, closeTimeout: 100, maxQueuedMessages: 2 },
      async (socket) => {
        if (helper) {
          for (let m; (m = await receive(socket)) !== undefined;) {
            taken.push(m as string);
            await delay(150);
          }
        } else {
          for await (const message of socket) {
            taken.push(message as string);
            await delay(150);
          }
        }
      },
    );
    const peer = await rawHandshake(server.addr);
    const sent = Array.from({ length: 6 }, (_, i) => `m${i}`);
    await peer.write(concat(...sent.map((text) => frame(OP.text, text))));
    await waitUntil(() => taken.length === sent.length, "every message taken");
    assert.deepEqual(taken, sent);
    await peer.write(frame(OP.close, closePayload(1000)));
    const close = await withTimeout(peer.readClose(), DEADLINE, "the close");
    assert.equal(close.code, 1000);
    peer.close();
  }
});

Deno.test("with streamMessages too, a handler that takes no stream of a full queue for closeTimeout closes with 1008 'messages not read', so the peer's close is not stuck behind them", async () => {
  const closed = Promise.withResolvers<CloseInfo>();
  await using server = serve(
    { ...LOCAL, closeTimeout: 300, maxQueuedMessages: 8, streamMessages: true },
    async (socket) => {
      closed.resolve(await socket.closed); // never takes a stream
    },
  );
  const peer = await rawHandshake(server.addr);
  const sent = Array.from({ length: 40 }, (_, i) => frame(OP.text, `m${i}`));
  await peer.write(concat(...sent, frame(OP.close, closePayload(1000))));
  const close = await withTimeout(peer.readClose(), DEADLINE, "the close");
  assert.deepEqual([close.code, close.reason], [1008, "messages not read"]);
  assert.equal(
    (await withTimeout(closed.promise, DEADLINE, "closed")).code,
    1000,
  );
  peer.close();
});

Deno.test("a keepalive ping queued behind a slow reader's backlog is not judged before it is written: the pong timeout runs from then", async () => {
  // 48 MiB at 10-20 MB/s: the ping, due 100 ms into it, waits behind 2.5-5
  // s of output, far more than pongTimeout. Once it is written, the kernel
  // may still hold several MB ahead of it (loopback buffers grow to 8 MB
  // and more: 300 ms of pongTimeout was too little for them).
  const count = 768;
  const closed = Promise.withResolvers<unknown>();
  await using server = serve(
    {
      ...LOCAL,
      pingInterval: 100,
      pongTimeout: 1500,
      maxBackpressure: 64 * 1024 * KIB,
    },
    async (socket) => {
      for (let i = 0; i < count; i++) socket.trySend(numbered(i));
      closed.resolve(await socket.closed);
    },
  );
  const peer = await rawHandshake(server.addr);
  let received = 0;
  let pings = 0;
  // Everything queued, then the ping queued after it: answered, it shows
  // the peer alive.
  const reading = (async () => {
    while (pings === 0) {
      const { opcode, payload } = await peer.readFrame();
      if (opcode === OP.ping) {
        pings++;
        await peer.write(frame(OP.pong, payload));
        continue;
      }
      assert.equal(opcode, OP.binary);
      assert.equal(seqOf(payload), received++);
      await delay(3);
    }
  })();
  await withTimeout(reading, 4 * DEADLINE, "the frames, then a ping");
  assert.equal(received, count);
  await closeCleanly(peer, closed.promise);
});

Deno.test("close() lets a slow reader take everything queued before the close frame: closeTimeout runs from the last write it took", async () => {
  // 48 MiB, far more than loopback buffers hold: reading it takes the peer
  // over two seconds, twice closeTimeout; what the kernel still holds after
  // the close frame is written (a few MB) takes it a fraction of that.
  const count = 768;
  const closed = Promise.withResolvers<unknown>();
  await using server = serve(
    { ...LOCAL, closeTimeout: 1000, maxBackpressure: 64 * 1024 * KIB },
    async (socket) => {
      for (let i = 0; i < count; i++) socket.trySend(numbered(i));
      closed.resolve(await socket.close(1000, "all sent"));
    },
  );
  const peer = await rawHandshake(server.addr);
  let received = 0;
  for (;;) {
    const { opcode, payload } = await peer.readFrame();
    if (opcode === OP.close) break;
    assert.equal(seqOf(payload), received++);
    await delay(3); // about 20 MB/s
  }
  assert.equal(received, count);
  await closeCleanly(peer, closed.promise);
});

Deno.test("under backpressurePolicy 'close', the send() that closed the socket rejects like the sends after it", async () => {
  const results = Promise.withResolvers<string[]>();
  await using server = serve(
    {
      ...LOCAL,
      sendHighWaterMark: 256 * KIB,
      maxBackpressure: 256 * KIB,
      backpressurePolicy: "close",
    },
    (socket) => {
      // Not awaited: the second finds 256 KiB queued and closes the socket;
      // the first was queued but never written.
      const sends = [0, 1, 2, 3].map((i) =>
        socket.send(numbered(i, 256 * KIB)).then(
          () => "resolved",
          (error) =>
            error instanceof ConnectionClosedError ? "rejected" : error,
        )
      );
      Promise.all(sends).then(results.resolve);
    },
  );
  await using _peer = await rawHandshake(server.addr); // never reads
  const settled = await withTimeout(results.promise, DEADLINE, "the sends");
  assert.deepEqual(settled, ["rejected", "rejected", "rejected", "rejected"]);
});

Deno.test("a read of thousands of empty frames is parsed no further than maxQueuedMessages while the handler takes none", async () => {
  let taken = 0;
  await using server = serve(
    { ...LOCAL, maxQueuedMessages: 10 },
    async (socket) => {
      for await (const message of socket) {
        taken++;
        if (message === "stop") break;
      }
      await socket.closed;
    },
  );
  const peer = await rawHandshake(server.addr);
  // Filler grows the reads; then the marker and 5000 empty frames, in the
  // same write and so in one read (they used to be parsed and queued all).
  const filler = frame(OP.binary, numbered(0, CHUNK));
  const empty = frame(OP.binary, new Uint8Array(0));
  await peer.write(concat(
    ...Array.from({ length: 8 }, () => filler),
    frame(OP.text, "stop"),
    ...Array.from({ length: 5000 }, () => empty),
  ));
  await waitUntil(() => taken === 9, "the filler and the marker");
  await delay(100);
  const parsed = server.stats().messagesReceived - taken;
  assert.ok(parsed <= 2 * 10, `${parsed} empty messages parsed`);
  peer.close();
});

Deno.test("a peer reading a burst of many 60 KB messages slowly but steadily is not taken for stalled", async () => {
  const closed = Promise.withResolvers<unknown>();
  const count = 200; // 12 MB, more than loopback buffers hold
  await using server = serve(
    // The write-stall limit (600 ms) is far shorter than the burst takes the
    // peer, which reads all along (and sends pongs, so no ping is due).
    { ...LOCAL, pingInterval: 300, pongTimeout: 300 },
    async (socket) => {
      socket.closed.then(closed.resolve);
      for (let i = 0; i < count; i++) socket.trySend(numbered(i, 60_000));
      for await (const _ of socket) { /* until the peer closes */ }
    },
  );
  const peer = await rawHandshake(server.addr);
  let received = 0;
  while (received < count) {
    const { opcode, payload } = await peer.readFrame();
    assert.equal(opcode, OP.binary);
    assert.equal(seqOf(payload), received++);
    if (received % 10 === 0) await peer.write(frame(OP.pong));
    await delay(10); // about 6 MB/s
  }
  await closeCleanly(peer, closed.promise);
});

Deno.test("a message still streaming out when the peer closes is cut short within closeTimeout, and the close is answered", async () => {
  const stream = Promise.withResolvers<unknown>();
  await using server = serve(
    { ...LOCAL, closeTimeout: 300, pingInterval: 0 },
    async (socket) => {
      async function* endless() {
        for (let i = 0;; i++) {
          yield `piece ${i}`;
          await delay(20);
        }
      }
      socket.sendStream(endless()).then(stream.resolve, stream.resolve);
      for await (const _ of socket) { /* until the peer closes */ }
    },
  );
  const peer = await rawHandshake(server.addr);
  assert.equal((await peer.readFrame()).opcode, OP.text); // under way
  await peer.write(frame(OP.close, closePayload(4000)));
  const { code } = await withTimeout(peer.readClose(), DEADLINE, "the answer");
  assert.equal(code, 4000, "the peer's code, echoed");
  assert.ok(
    (await withTimeout(stream.promise, DEADLINE, "the stream")) instanceof
      ConnectionClosedError,
  );
  peer.close();
});

Deno.test("an awaited send() behind a sendStream() waits for its own write, not for the stream's next piece: an awaiting sender never queues more than sendHighWaterMark behind a slow stream", async () => {
  const result = Promise.withResolvers<[number, CloseInfo]>();
  const message = 256 * KIB;
  await using server = serve({
    ...LOCAL,
    sendHighWaterMark: 64 * KIB,
    maxBackpressure: 1024 * KIB, // four messages: policy "close"
  }, async (socket) => {
    const stream = socket.sendStream((async function* () {
      for (let i = 0; i < 10; i++) {
        await delay(20);
        yield "piece ";
      }
    })());
    let most = 0;
    for (let i = 0; i < 8; i++) {
      await socket.send(new Uint8Array(message));
      most = Math.max(most, socket.bufferedAmount);
    }
    await stream;
    socket.close(1000);
    result.resolve([most, await socket.closed]);
  });
  await using client = await NpmClient.connect(wsUrl(server.addr));
  const first = await client.next();
  assert.equal(first, "piece ".repeat(10));
  for (let i = 0; i < 8; i++) {
    assert.equal((await client.next() as Uint8Array).length, message);
  }
  const [most, closed] = await withTimeout(
    result.promise,
    DEADLINE,
    "the handler",
  );
  assert.ok(most < 64 * KIB, `bufferedAmount after an awaited send(): ${most}`);
  assert.equal(closed.code, 1000);
});

Deno.test("an awaiting sender never meets the backpressure policy, even with sendHighWaterMark equal to maxBackpressure: send() resolves at once only below the mark", async () => {
  for (const backpressurePolicy of ["drop", "close"] as const) {
    const done = Promise.withResolvers<void>();
    await using server = serve({
      ...LOCAL,
      sendHighWaterMark: 64 * KIB,
      maxBackpressure: 64 * KIB,
      backpressurePolicy,
    }, async (socket) => {
      // Frames of exactly 4 KiB (a 4-byte header): the queue reaches the
      // mark exactly.
      for (let i = 0; i < 20; i++) {
        await socket.send(new Uint8Array(4 * KIB - 4).fill(i));
      }
      done.resolve();
      await socket.closed;
    });
    await using client = await NpmClient.connect(wsUrl(server.addr));
    for (let i = 0; i < 20; i++) {
      const message = await client.next() as Uint8Array;
      assert.deepEqual([message.length, message[0]], [4 * KIB - 4, i]);
    }
    await withTimeout(done.promise, DEADLINE, "the sends");
    assert.equal(server.stats().backpressureDrops, 0);
  }
});

Deno.test("an awaited send() queued behind a sendStream() that close() cuts short rejects with ConnectionClosedError: its message was dropped, not written", async () => {
  const outcome = Promise.withResolvers<unknown>();
  await using server = serve(LOCAL, async (socket) => {
    // A source that has yielded and not ended: the stream is cut.
    const source = new ReadableStream<string>({
      start(controller) {
        controller.enqueue("piece ");
      },
    });
    socket.sendStream(source).catch(() => {});
    // Above sendHighWaterMark: it waits for its own write.
    const sending = socket.send("x".repeat(2 * 1024 * KIB));
    await socket.close(1000, "bye", { streamGrace: 100 });
    outcome.resolve(await sending.then(() => "resolved", (error) => error));
  });
  await using client = await NpmClient.connect(wsUrl(server.addr));
  const error = await withTimeout(outcome.promise, DEADLINE, "the send");
  assert.ok(error instanceof ConnectionClosedError, String(error));
  assert.equal((await client.closed).code, 1000);
});

Deno.test("with permessage-deflate keeping its context, a string whose UTF-8 size is below the threshold is framed at once, not queued behind a compression it does not need", async () => {
  const buffered = Promise.withResolvers<number[]>();
  await using server = serve({
    ...LOCAL,
    perMessageDeflate: { serverNoContextTakeover: false },
  }, async (socket) => {
    const sizes: number[] = [];
    // 342 and 1023 ASCII characters: below the 1024-byte threshold, though
    // three bytes per character would not be.
    for (const length of [342, 1023]) {
      socket.send("a".repeat(length));
      sizes.push(socket.bufferedAmount);
      await delay(20);
    }
    buffered.resolve(sizes);
    await socket.closed;
  });
  await using client = await NpmClient.connect(wsUrl(server.addr), {
    perMessageDeflate: true,
  });
  assert.equal(await client.next(), "a".repeat(342));
  assert.equal(await client.next(), "a".repeat(1023));
  // Framed: the 4-byte header counts (queued raw, it would not).
  assert.deepEqual(await buffered.promise, [346, 1027]);
});
