import assert from "node:assert/strict";
import {
  serve,
  type ServeOptions,
  type ServerLogEvent,
  type Socket,
} from "../../mod.ts";
import {
  closePayload,
  DEADLINE,
  decode,
  echo,
  encodeRequest,
  frame,
  LOCAL,
  NpmClient,
  OP,
  pattern,
  rawHandshake,
  RawPeer,
  rawUpgrade,
  SocketTracker,
  upgradeHeaders,
  waitUntil,
  withTimeout,
  wsUrl,
} from "./_helpers.ts";
import { parseExposition, valueOf, zeroStats } from "./_prometheus.ts";

/** Rejections of three kinds: the hook (401), origins (403), method (405). */
const REJECTING: ServeOptions = {
  origins: ["https://ok.example"],
  onUpgrade: (request) => {
    if (new URL(request.url).pathname === "/deny") {
      return new Response("denied", { status: 401 });
    }
  },
};

async function rejectThreeTimes(addr: Deno.NetAddr): Promise<void> {
  for (
    const [target, extra, status] of [
      ["/deny", [], 401],
      ["/", [["Origin", "https://bad.example"]], 403],
    ] as [string, [string, string][], number][]
  ) {
    const { peer, response } = await rawUpgrade(addr, extra, target);
    peer.close();
    assert.equal(response.status, status);
  }
  using peer = await RawPeer.connect(addr);
  await peer.write(encodeRequest("POST / HTTP/1.1", upgradeHeaders(addr)));
  assert.equal((await peer.readResponse()).status, 405);
}

Deno.test(
  "Server.stats() counts connections, messages, close codes and rejections exactly",
  async () => {
    const tracker = new SocketTracker();
    await using server = serve(
      { ...LOCAL, ...REJECTING, pingInterval: 0 },
      tracker.wrap(echo),
    );
    assert.deepEqual(server.stats(), zeroStats());

    using raw = await rawHandshake(server.addr);
    await using npm = await NpmClient.connect(wsUrl(server.addr));
    for (const text of ["one", "two", "three"]) {
      await raw.write(frame(OP.text, text));
      assert.equal(decode((await raw.readFrame()).payload), text);
    }
    for (const seed of [1, 2]) {
      assert.deepEqual(
        await npm.roundTrip(pattern(10, seed)),
        pattern(10, seed),
      );
    }
    await rejectThreeTimes(server.addr);
    const open = server.stats();
    assert.equal(open.openConnections, 2);
    assert.equal(open.totalConnections, 2);
    assert.equal(open.messagesReceived, 5);
    assert.equal(open.messagesSent, 5);
    assert.deepEqual(open.closeCodes, {});
    assert.deepEqual(open.handshakeRejections, { 401: 1, 403: 1, 405: 1 });

    await raw.write(frame(OP.close, closePayload(1000)));
    assert.equal((await raw.readClose()).code, 1000);
    await npm.close(4001, "later");
    await tracker.closed(raw.port);
    await tracker.closed(npm.port);
    await waitUntil(
      () => server.stats().openConnections === 0,
      "openConnections to reach 0",
    );
    const closed = server.stats();
    assert.equal(closed.totalConnections, 2);
    assert.equal(closed.messagesReceived, 5);
    assert.equal(closed.messagesSent, 5);
    assert.deepEqual(closed.closeCodes, { 1000: 1, 4001: 1 });
    assert.deepEqual(closed.handshakeRejections, { 401: 1, 403: 1, 405: 1 });
    assert.equal(closed.backpressureDrops, 0);
    assert.equal(closed.pingRtt.count, 0, "no pings with pingInterval: 0");
  },
);

Deno.test(
  "Server.stats() counts the bytes of every frame both ways",
  async () => {
    const tracker = new SocketTracker();
    await using server = serve(LOCAL, tracker.wrap(echo));
    using peer = await rawHandshake(server.addr);
    let written = 0;
    let read = 0;
    const send = async (bytes: Uint8Array) => {
      written += bytes.length;
      await peer.write(bytes);
    };
    const headerSize = (length: number) =>
      length < 126 ? 2 : length < 65536 ? 4 : 10;
    for (const size of [0, 5, 200, 70_000]) {
      await send(frame(OP.binary, pattern(size)));
      const echoed = await peer.readFrame();
      assert.equal(echoed.payload.length, size);
      read += headerSize(size) + size;
    }
    await send(frame(OP.ping, "p"));
    const pong = await peer.readFrame();
    assert.equal(pong.opcode, OP.pong);
    read += 2 + pong.payload.length;
    await send(frame(OP.close, closePayload(1000, "done")));
    const close = await peer.readFrame();
    assert.equal(close.opcode, OP.close);
    read += 2 + close.payload.length;
    await tracker.closed(peer.port);
    await waitUntil(() => server.connections === 0, "the socket to go");
    const stats = server.stats();
    assert.equal(stats.bytesReceived, written);
    assert.equal(stats.bytesSent, read);
  },
);

Deno.test(
  "Server.stats().pingRtt summarises the keepalive round trips",
  async () => {
    const tracker = new SocketTracker();
    await using server = serve(
      { ...LOCAL, pingInterval: 30, pongTimeout: 2_000 },
      tracker.wrap(echo),
    );
    await using a = await NpmClient.connect(wsUrl(server.addr));
    await using b = await NpmClient.connect(wsUrl(server.addr));
    await waitUntil(
      () => server.stats().pingRtt.count >= 4,
      "four measured round trips",
    );
    const { count, mean, max, sum, buckets } = server.stats().pingRtt;
    assert.ok(count >= 4);
    assert.ok(Number.isFinite(mean) && mean >= 0, `mean ${mean}`);
    assert.ok(max >= mean, `max ${max} >= mean ${mean}`);
    assert.ok(Math.abs(sum - mean * count) < 1e-6, `sum ${sum}`);
    // Cumulative; a pong later than pongTimeout (2 s) closes the connection
    // instead, so every round trip is in the 10 s bucket.
    for (let i = 1; i < buckets.length; i++) {
      assert.ok(buckets[i].count >= buckets[i - 1].count, "cumulative");
    }
    assert.deepEqual(buckets.at(-1), { le: 10_000, count });
    const atMost = (ms: number) => buckets.find(({ le }) => le >= ms)!.count;
    assert.equal(atMost(max), count, `every round trip is at most ${max} ms`);
    for (const client of [a, b]) {
      const rtt = (await tracker.socket(client.port)).rtt;
      assert.ok(rtt !== undefined && rtt <= max, `rtt ${rtt} <= max ${max}`);
    }
  },
);

Deno.test(
  "Server.metrics() is valid Prometheus text with HELP and TYPE before the samples",
  async () => {
    const tracker = new SocketTracker();
    await using server = serve(
      { ...LOCAL, ...REJECTING, pingInterval: 20, pongTimeout: 2_000 },
      tracker.wrap(echo),
    );
    {
      await using client = await NpmClient.connect(wsUrl(server.addr));
      assert.equal(await client.roundTrip("hi"), "hi");
      await waitUntil(() => server.stats().pingRtt.count > 0, "a round trip");
      await client.close(4002);
      await tracker.closed(client.port);
    }
    await rejectThreeTimes(server.addr);
    await waitUntil(() => server.connections === 0, "the socket to go");

    const families = parseExposition(server.metrics());
    const value = (name: string, labels?: Record<string, string>) =>
      valueOf(families, name, labels);
    assert.equal(value("duplex_connections_open"), 0);
    assert.equal(value("duplex_connections_total"), 1);
    assert.equal(value("duplex_messages_received_total"), 1);
    assert.equal(value("duplex_messages_sent_total"), 1);
    assert.equal(value("duplex_closes_total", { code: "4002" }), 1);
    for (const status of [401, 403, 405]) {
      assert.equal(
        value("duplex_handshake_rejections_total", { status: `${status}` }),
        1,
      );
    }
    for (const [name, family] of families) {
      if (name.endsWith("_total")) assert.equal(family.type, "counter", name);
    }
    assert.ok(value("duplex_ping_rtt_seconds_max")! >= 0);
    const pings = value("duplex_pings_answered_total")!;
    assert.ok(pings > 0);
    assert.equal(families.get("duplex_ping_rtt_seconds")?.type, "histogram");
    assert.equal(value("duplex_ping_rtt_seconds_count"), pings);
    assert.equal(value("duplex_ping_rtt_seconds_bucket", { le: "10" }), pings);
  },
);

type Event<T extends ServerLogEvent["type"]> = Extract<
  ServerLogEvent,
  { type: T }
>;

Deno.test(
  "serve({logger}) receives listen, open, close, protocol-error, handshake-rejected and handler-error",
  async () => {
    const events: ServerLogEvent[] = [];
    const failure = new Error("handler failed");
    const tracker = new SocketTracker();
    await using server = serve(
      {
        ...LOCAL,
        protocols: ["chat"],
        origins: ["https://ok.example"],
        logger: (event) => events.push(event),
      },
      tracker.wrap(async (socket) => {
        if (socket.url.pathname === "/throw") throw failure;
        await echo(socket);
      }),
    );
    const ofType = <T extends ServerLogEvent["type"]>(t: T) =>
      events.filter((e): e is Event<T> => e.type === t);

    assert.deepEqual(events, [{ type: "listen", addr: server.addr }]);

    // open and close, with code and reason.
    {
      await using client = await NpmClient.connectWith(
        wsUrl(server.addr, "/room?x=1"),
        ["chat"],
      );
      assert.equal(await client.roundTrip("hi"), "hi");
      await client.close(4000, "bye");
      await tracker.closed(client.port);
      await waitUntil(() => ofType("close").length === 1, "a close event");
      const url = `ws://127.0.0.1:${server.addr.port}/room?x=1`;
      const [open] = ofType("open");
      assert.equal(open.url, url);
      assert.equal(open.protocol, "chat");
      assert.equal(open.remoteAddr.port, client.port);
      const [close] = ofType("close");
      assert.deepEqual(
        { ...close, remoteAddr: close.remoteAddr.port },
        {
          type: "close",
          url,
          remoteAddr: client.port,
          code: 4000,
          reason: "bye",
          wasClean: true,
        },
      );
    }

    // protocol-error, before its connection's close event.
    {
      using peer = await rawHandshake(server.addr);
      await peer.write(frame(0x3, "reserved"));
      const { code } = await peer.readClose();
      assert.equal(code, 1002);
      await peer.readToEof();
      await waitUntil(() => ofType("close").length === 2, "a close event");
      const [error] = ofType("protocol-error");
      assert.equal(error.code, "RESERVED_OPCODE");
      assert.equal(error.closeCode, 1002);
      assert.equal(error.remoteAddr.port, peer.port);
      assert.equal(typeof error.message, "string");
      const close = ofType("close")[1];
      assert.equal(close.code, 1002);
      assert.ok(events.indexOf(error) < events.indexOf(close));
    }

    // handshake-rejected, with its status.
    {
      const { peer, response } = await rawUpgrade(server.addr, [[
        "Origin",
        "https://bad.example",
      ]]);
      using _ = peer;
      assert.equal(response.status, 403);
      const [rejected] = ofType("handshake-rejected");
      assert.equal(rejected.status, 403);
      assert.equal(rejected.remoteAddr.port, peer.port);
      assert.match(rejected.message, /bad\.example/);
    }

    // handler-error, with the error itself; the peer sees 1011.
    {
      await using client = await NpmClient.connect(
        wsUrl(server.addr, "/throw"),
      );
      const seen = await withTimeout(client.closed, DEADLINE, "the 1011 close");
      assert.deepEqual(seen, { code: 1011, reason: "" });
      await tracker.closed(client.port);
      await waitUntil(() => ofType("close").length === 3, "a close event");
      const [handlerError] = ofType("handler-error");
      assert.equal(handlerError.error, failure);
      assert.equal(
        handlerError.url,
        `ws://127.0.0.1:${server.addr.port}/throw`,
      );
      assert.equal(ofType("close")[2].code, 1011);
    }

    assert.deepEqual(
      events.map((e) => e.type),
      [
        "listen",
        "open",
        "close",
        "open",
        "protocol-error",
        "close",
        "handshake-rejected",
        "open",
        "handler-error",
        "close",
      ],
    );
  },
);

Deno.test("server.connections and stats() count a socket as closed once it is, while its handler still runs; its close is counted and logged then", async () => {
  const events: ServerLogEvent[] = [];
  const handlerDone = Promise.withResolvers<void>();
  const closedSeen = Promise.withResolvers<void>();
  await using server = serve(
    { ...LOCAL, logger: (event) => events.push(event) },
    async (socket) => {
      await socket.closed;
      closedSeen.resolve();
      await handlerDone.promise; // slow cleanup after the close
    },
  );
  await using client = await NpmClient.connect(wsUrl(server.addr));
  await waitUntil(() => server.connections === 1, "the connection counted");
  await client.close(4000, "done");
  await withTimeout(closedSeen.promise, DEADLINE, "the socket to close");
  assert.equal(server.connections, 0);
  assert.equal(server.stats().openConnections, 0);
  assert.equal(server.stats().closeCodes[4000], 1);
  assert.ok(events.some((e) => e.type === "close" && e.code === 4000));
  handlerDone.resolve();
});

Deno.test("serve() without a logger prints a handler's error with console.error, and nothing for a peer's protocol error", async () => {
  const printed: unknown[][] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => printed.push(args);
  try {
    const failure = new Error("handler bug");
    await using server = serve(LOCAL, async (socket) => {
      for await (const message of socket) {
        if (message === "throw") throw failure;
      }
    });
    await using client = await NpmClient.connect(wsUrl(server.addr));
    client.send("throw");
    assert.equal((await client.closed).code, 1011);
    // A peer that breaks the protocol is its problem, not a server bug.
    using peer = await rawHandshake(server.addr);
    await peer.write(frame(0x3, "reserved opcode"));
    assert.equal((await peer.readClose()).code, 1002);
    await waitUntil(() => server.connections === 0, "both to close");
    assert.deepEqual(printed, [["duplex: handler-error:", failure]]);
  } finally {
    console.error = original;
  }
});

Deno.test("serve() without a logger prints a pub/sub adapter's errors once, not every time they repeat", async () => {
  const printed: unknown[][] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => printed.push(args);
  try {
    const broker = new Error("broker down");
    await using _server = serve({
      ...LOCAL,
      pubsub: {
        start(_deliver, onError) {
          for (let i = 0; i < 5; i++) onError?.(broker); // reconnect attempts
        },
        publish() {},
        close() {},
      },
    }, echo);
    await waitUntil(() => printed.length > 0, "the error printed");
    assert.deepEqual(printed, [["duplex: pubsub-error:", broker]]);
  } finally {
    console.error = original;
  }
});

Deno.test("stats().transportConnections counts every open TCP connection, a handshake still arriving included, as maxConnections does; metrics() has it", async () => {
  await using server = serve({ ...LOCAL, maxConnections: 1 }, echo);
  using partial = await RawPeer.connect(server.addr);
  await partial.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  await waitUntil(
    () => server.stats().transportConnections === 1,
    "the connection counted",
  );
  assert.equal(server.stats().openConnections, 0);
  assert.match(server.metrics(), /^duplex_transport_connections_open 1$/m);
  // What maxConnections saw: the next one is refused.
  using refused = await RawPeer.connect(server.addr);
  await refused.write(
    encodeRequest("GET / HTTP/1.1", upgradeHeaders(server.addr)),
  );
  assert.equal((await refused.readResponse()).status, 503);
  partial.close();
  refused.close();
  await waitUntil(
    () => server.stats().transportConnections === 0,
    "both connections gone",
  );
});

Deno.test("stats().timeouts and duplex_timeouts_total count a WebSocket's own deadlines by phase: idle, message, pong, write", async (t) => {
  const cases: {
    phase: string;
    options: ServeOptions;
    code: number;
    // What the peer does after the handshake, the handler, if not a drain.
    peer?: (peer: RawPeer) => Promise<void>;
    handler?: (socket: Socket) => Promise<void>;
  }[] = [
    {
      phase: "idle",
      options: { idleTimeout: 100 },
      code: 1001,
      peer: async (peer) => {
        assert.equal((await peer.readClose()).code, 1001);
        await peer.write(frame(OP.close, closePayload(1001)));
      },
    },
    {
      phase: "message",
      options: { messageTimeout: 100 },
      code: 1008,
      // The first fragment of a message, and nothing more.
      peer: (peer) => peer.write(frame(OP.text, "x", { fin: false })),
    },
    // The raw peer never answers pings.
    {
      phase: "pong",
      options: { pingInterval: 50, pongTimeout: 100 },
      code: 1011,
    },
    {
      phase: "write",
      options: { pingInterval: 50, pongTimeout: 100 },
      code: 1011,
      // The raw peer never reads what it is sent.
      handler: async (socket) => {
        const chunk = new Uint8Array(1024 * 1024);
        while (socket.state === "open") {
          await socket.send(chunk).catch(() => {});
        }
      },
    },
  ];
  for (const { phase, options, code, peer: act, handler } of cases) {
    await t.step(phase, async () => {
      const closed = Promise.withResolvers<number>();
      await using server = serve({ ...LOCAL, ...options }, async (socket) => {
        if (handler) await handler(socket);
        else for await (const _ of socket);
        closed.resolve((await socket.closed).code);
      });
      using peer = await rawHandshake(server.addr);
      await act?.(peer);
      assert.equal(await withTimeout(closed.promise, DEADLINE, "close"), code);
      assert.deepEqual(server.stats().timeouts, { [phase]: 1 });
      const metrics = parseExposition(server.metrics());
      assert.equal(valueOf(metrics, "duplex_timeouts_total", { phase }), 1);
    });
  }
});
