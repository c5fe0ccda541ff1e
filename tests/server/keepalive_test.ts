import assert from "node:assert/strict";
import { serve, type Socket } from "../../mod.ts";
import {
  closePayload,
  DEADLINE,
  delay,
  echo,
  frame,
  LOCAL,
  NpmClient,
  OP,
  rawHandshake,
  SocketTracker,
  waitUntil,
  withTimeout,
  wsUrl,
} from "./_helpers.ts";

/** Counts the pings an npm:ws client receives (it answers each with a pong). */
function countPings(client: NpmClient): { count: number } {
  const counter = { count: 0 };
  client.ws.on("ping", () => counter.count++);
  return counter;
}

/** Waits for the server's handler to end: the socket stays open until then. */
const holdOpen = async (socket: Socket) => {
  await socket.closed;
};

Deno.test(
  "serve({pingInterval}) pings an idle npm:ws client and Socket.rtt becomes a number",
  async () => {
    const tracker = new SocketTracker();
    await using server = serve(
      { ...LOCAL, pingInterval: 50, pongTimeout: 2_000 },
      tracker.wrap(holdOpen),
    );
    await using client = await NpmClient.connect(wsUrl(server.addr));
    const pings = countPings(client);
    const socket = await tracker.socket(client.port);
    assert.equal(socket.rtt, undefined, "no round trip measured yet");
    // A second ping is only sent once the first was answered, so two pings
    // mean one measured round trip.
    await waitUntil(() => pings.count >= 2, "two keepalive pings");
    assert.equal(typeof socket.rtt, "number");
    assert.ok(socket.rtt! >= 0, `rtt ${socket.rtt}`);
    assert.ok(server.stats().pingRtt.count >= 1);
    assert.equal(socket.state, "open");
    const seen = await client.close(1000);
    assert.equal(seen.code, 1000);
  },
);

Deno.test(
  "serve({pongTimeout}) closes a peer that never answers pings with 1011 'keepalive pong timeout'",
  async () => {
    const tracker = new SocketTracker();
    await using server = serve(
      { ...LOCAL, pingInterval: 50, pongTimeout: 100 },
      tracker.wrap(holdOpen),
    );
    using peer = await rawHandshake(server.addr);
    // The peer reads what the server sends but never answers.
    const first = await peer.readFrame();
    assert.equal(first.opcode, OP.ping, "the first frame is a keepalive ping");
    assert.deepEqual(await tracker.closed(peer.port), {
      code: 1011,
      reason: "keepalive pong timeout",
      wasClean: false,
    });
    // The transport is gone: the peer reaches the end of the stream, with at
    // most a best-effort close frame before it.
    await peer.readToEof();
    assert.equal(server.connections, 0);
  },
);

Deno.test(
  "serve({pongTimeout}) closes a peer that neither reads nor answers while the server keeps sending a trickle (the kernel takes the writes)",
  async () => {
    const tracker = new SocketTracker();
    await using server = serve(
      { ...LOCAL, pingInterval: 100, pongTimeout: 200 },
      tracker.wrap(async (socket) => {
        const ticker = setInterval(() => socket.trySend("x".repeat(200)), 20);
        await socket.closed;
        clearInterval(ticker);
      }),
    );
    using peer = await rawHandshake(server.addr); // never reads
    assert.deepEqual(await tracker.closed(peer.port), {
      code: 1011,
      reason: "keepalive pong timeout",
      wasClean: false,
    });
  },
);

Deno.test(
  "serve({pongTimeout: 0}) waits for a pong forever and sends no second ping meanwhile",
  async () => {
    const tracker = new SocketTracker();
    await using server = serve(
      { ...LOCAL, pingInterval: 30, pongTimeout: 0, idleTimeout: 400 },
      tracker.wrap(holdOpen),
    );
    using peer = await rawHandshake(server.addr);
    // Only the idle timeout ends the connection: one ping, then the close.
    const close = await peer.readClose();
    assert.deepEqual(close.before.map((f) => f.opcode), [OP.ping]);
    assert.equal(close.code, 1001);
    assert.equal(close.reason, "idle timeout");
    await peer.write(frame(OP.close, closePayload(1001)));
    const info = await tracker.closed(peer.port);
    assert.equal(info.code, 1001);
  },
);

Deno.test(
  "serve({idleTimeout, pingInterval: 0}) closes a silent connection with 1001 'idle timeout' and sends no pings",
  async () => {
    const tracker = new SocketTracker();
    await using server = serve(
      { ...LOCAL, idleTimeout: 150, pingInterval: 0 },
      tracker.wrap(holdOpen),
    );
    await using client = await NpmClient.connect(wsUrl(server.addr));
    const pings = countPings(client);
    const seen = await withTimeout(client.closed, DEADLINE, "the idle close");
    assert.deepEqual(seen, { code: 1001, reason: "idle timeout" });
    const info = await tracker.closed(client.port);
    assert.equal(info.code, 1001);
    assert.equal(info.reason, "idle timeout");
    assert.equal(info.wasClean, true);
    assert.equal(pings.count, 0, "pingInterval: 0 sends no pings");
  },
);

Deno.test(
  "serve({idleTimeout}) does not count pings and pongs as activity",
  async () => {
    const tracker = new SocketTracker();
    await using server = serve(
      { ...LOCAL, idleTimeout: 300, pingInterval: 30, pongTimeout: 2_000 },
      tracker.wrap(holdOpen),
    );
    await using client = await NpmClient.connect(wsUrl(server.addr));
    const pings = countPings(client);
    const seen = await withTimeout(client.closed, DEADLINE, "the idle close");
    assert.deepEqual(seen, { code: 1001, reason: "idle timeout" });
    assert.ok(pings.count >= 1, "keepalive pings and pongs were exchanged");
    assert.equal((await tracker.closed(client.port)).code, 1001);
  },
);

Deno.test(
  "serve({idleTimeout}) keeps a connection open while the client sends messages",
  async () => {
    const tracker = new SocketTracker();
    const received: string[] = [];
    await using server = serve(
      { ...LOCAL, idleTimeout: 240, pingInterval: 0 },
      tracker.wrap(async (socket) => {
        for await (const message of socket) received.push(message as string);
      }),
    );
    await using client = await NpmClient.connect(wsUrl(server.addr));
    // Twelve messages, 40 ms apart: together twice the idle timeout.
    for (let i = 0; i < 12; i++) {
      assert.equal(client.ws.readyState, 1, `still open before message ${i}`);
      client.send(`m${i}`);
      await delay(40);
    }
    await waitUntil(() => received.length === 12, "12 messages");
    assert.equal((await tracker.socket(client.port)).state, "open");
    // Silence then closes it.
    const seen = await withTimeout(client.closed, DEADLINE, "the idle close");
    assert.deepEqual(seen, { code: 1001, reason: "idle timeout" });
  },
);

for (const streamMessages of [false, true]) {
  Deno.test(
    `serve({idleTimeout${
      streamMessages ? ", streamMessages" : ""
    }}) keeps a connection open while one message arrives slowly, fragment by fragment`,
    async () => {
      const received = Promise.withResolvers<string>();
      const tracker = new SocketTracker();
      await using server = serve(
        { ...LOCAL, idleTimeout: 240, pingInterval: 0, streamMessages },
        tracker.wrap(async (socket) => {
          if (!streamMessages) {
            for await (const message of socket) received.resolve(`${message}`);
            return;
          }
          for await (const stream of socket.streams()) {
            received.resolve(
              (await Array.fromAsync(stream.readable as ReadableStream<string>))
                .join(""),
            );
          }
        }),
      );
      const peer = await rawHandshake(server.addr);
      const socket = await tracker.socket(peer.port);
      // Twelve fragments, 40 ms apart: together twice the idle timeout.
      for (let i = 0; i < 12; i++) {
        assert.equal(socket.state, "open", `still open before fragment ${i}`);
        await peer.write(
          frame(i === 0 ? OP.text : OP.continuation, `${i % 10}`, {
            fin: i === 11,
          }),
        );
        await delay(40);
      }
      assert.equal(
        await withTimeout(received.promise, DEADLINE, "the message"),
        "012345678901",
      );
      // Silence then closes it.
      const close = await withTimeout(peer.readClose(), DEADLINE, "the close");
      assert.equal(close.code, 1001);
      peer.close();
    },
  );
}

Deno.test(
  "serve({idleTimeout}) keeps a connection open while the server sends messages",
  async () => {
    await using server = serve(
      { ...LOCAL, idleTimeout: 240, pingInterval: 0 },
      async (socket) => {
        // Twelve messages, 40 ms apart: together twice the idle timeout.
        for (let i = 0; i < 12; i++) {
          await socket.send(`tick ${i}`);
          await delay(40);
        }
        await socket.closed;
      },
    );
    await using client = await NpmClient.connect(wsUrl(server.addr));
    for (let i = 0; i < 12; i++) assert.equal(await client.next(), `tick ${i}`);
    const seen = await withTimeout(client.closed, DEADLINE, "the idle close");
    assert.deepEqual(seen, { code: 1001, reason: "idle timeout" });
  },
);

Deno.test(
  "keepalive stops its interval timer once the last socket closes",
  async () => {
    // The ticker's interval is unref'd, which the sanitizers do not see:
    // count live intervals instead.
    const live = new Set<unknown>();
    const { setInterval: realSet, clearInterval: realClear } = globalThis;
    globalThis.setInterval = ((...args: Parameters<typeof realSet>) => {
      const id = realSet(...args);
      live.add(id);
      return id;
    }) as typeof realSet;
    globalThis.clearInterval = ((id?: ReturnType<typeof realSet>) => {
      if (id !== undefined) live.delete(id);
      realClear(id);
    }) as typeof realClear;
    try {
      const tracker = new SocketTracker();
      await using server = serve(
        { ...LOCAL, pingInterval: 20, idleTimeout: 10_000 },
        tracker.wrap(holdOpen),
      );
      const a = await NpmClient.connect(wsUrl(server.addr));
      const b = await NpmClient.connect(wsUrl(server.addr));
      const pingsA = countPings(a);
      const pingsB = countPings(b);
      await waitUntil(
        () => pingsA.count > 0 && pingsB.count > 0,
        "a ping on both clients",
      );
      assert.ok(live.size >= 1, "keepalive runs on an interval");
      await a.close(1000);
      await b.close(1000);
      await tracker.closed(a.port);
      await tracker.closed(b.port);
      assert.equal(server.connections, 0);
      assert.equal(live.size, 0, "no interval left while the server listens");
    } finally {
      globalThis.setInterval = realSet;
      globalThis.clearInterval = realClear;
    }
  },
);

Deno.test(
  "Server.shutdown() with keepalive enabled closes every socket with 1001",
  async () => {
    const tracker = new SocketTracker();
    const server = serve(
      { ...LOCAL, pingInterval: 20, pongTimeout: 1_000, idleTimeout: 5_000 },
      tracker.wrap(echo),
    );
    try {
      const clients = await Promise.all(
        [1, 2, 3].map(() => NpmClient.connect(wsUrl(server.addr))),
      );
      const pings = clients.map(countPings);
      for (const client of clients) {
        assert.equal(await client.roundTrip("hi"), "hi");
      }
      await waitUntil(
        () => pings.every((p) => p.count > 0),
        "a ping on every client",
      );
      await withTimeout(server.shutdown(), DEADLINE, "shutdown()");
      await withTimeout(server.finished, DEADLINE, "server.finished");
      for (const client of clients) {
        assert.deepEqual(await client.closed, {
          code: 1001,
          reason: "server shutting down",
        });
        const info = await tracker.closed(client.port);
        assert.equal(info.code, 1001);
        assert.equal(info.wasClean, true);
      }
      assert.equal(server.stats().closeCodes[1011], undefined);
    } finally {
      await server.shutdown();
    }
  },
);

Deno.test({
  name:
    "keepalive does not fail a live peer whose pongs wait unread behind inbound backpressure",
  fn: async () => {
    const tracker = new SocketTracker();
    const start = Promise.withResolvers<void>();
    let received = 0;
    await using server = serve(
      { ...LOCAL, pingInterval: 50, pongTimeout: 150, maxQueuedMessages: 1 },
      tracker.wrap(async (socket) => {
        await start.promise;
        for await (const _ of socket) received++;
      }),
    );
    await using client = await NpmClient.connect(wsUrl(server.addr));
    try {
      // Far more than the kernel buffers hold: the server stops reading.
      for (let i = 0; i < 2_000; i++) client.send(new Uint8Array(8_192));
      const socket = await tracker.socket(client.port);
      // Several pong timeouts pass while the handler is busy.
      await delay(600);
      assert.equal(socket.state, "open", "the peer did nothing wrong");
    } finally {
      start.resolve();
    }
    await waitUntil(() => received === 2_000, "every message");
    assert.equal((await client.close(1000)).code, 1000);
  },
});
