import assert from "node:assert/strict";
import { serve, type ServerLogEvent } from "../../mod.ts";
import { RawHttp, request } from "./_http_helpers.ts";
import {
  DEADLINE,
  delay,
  DenoClient,
  echo,
  encodeRequest,
  frame,
  LOCAL,
  NpmClient,
  OP,
  rawHandshake,
  RawPeer,
  SocketTracker,
  upgradeHeaders,
  withTimeout,
  wsUrl,
} from "./_helpers.ts";

Deno.test(
  "Server.shutdown() sends 1001 to every socket and waits for the closing handshakes",
  async () => {
    const tracker = new SocketTracker();
    const server = serve(LOCAL, tracker.wrap(echo));
    try {
      const npm = await Promise.all(
        [1, 2, 3].map(() => NpmClient.connect(wsUrl(server.addr))),
      );
      const deno = await DenoClient.connect(wsUrl(server.addr));
      for (const client of npm) {
        assert.equal(await client.roundTrip("hi"), "hi");
      }
      assert.equal(await deno.roundTrip("hi"), "hi");
      assert.equal(server.connections, 4);

      await withTimeout(server.shutdown(), DEADLINE, "shutdown()");
      await withTimeout(server.finished, DEADLINE, "server.finished");
      assert.equal(server.connections, 0);

      for (const client of npm) {
        const seen = await withTimeout(client.closed, DEADLINE, "close event");
        assert.deepEqual(seen, { code: 1001, reason: "server shutting down" });
        const info = await tracker.closed(client.port);
        assert.equal(info.code, 1001, "the client echoed 1001");
        assert.equal(info.wasClean, true);
      }
      const seen = await withTimeout(deno.closed, DEADLINE, "close event");
      assert.equal(seen.code, 1001);
      assert.equal(seen.wasClean, true);
    } finally {
      await server.shutdown();
    }
  },
);

Deno.test(
  "Server.shutdown({ code, reason }) sends that close code and reason to every socket (1012: come back soon)",
  async () => {
    await using server = serve(LOCAL, echo);
    await using npm = await NpmClient.connect(wsUrl(server.addr));
    await using deno = await DenoClient.connect(wsUrl(server.addr));
    await withTimeout(
      server.shutdown({ code: 1012, reason: "restarting, back in 5 s" }),
      DEADLINE,
      "shutdown()",
    );
    assert.deepEqual(await npm.closed, {
      code: 1012,
      reason: "restarting, back in 5 s",
    });
    assert.equal((await deno.closed).code, 1012);
  },
);

Deno.test("Server.shutdown() rejects a close code or reason that may not be sent, and stays able to shut down", async () => {
  await using server = serve(LOCAL, echo);
  await assert.rejects(() => server.shutdown({ code: 1006 }), {
    name: "RangeError",
    message:
      'Cannot shut down: "code" must be 1000-1003, 1007-1014 or 3000-4999, got 1006',
  });
  await assert.rejects(
    () => server.shutdown({ code: 1001, reason: "x".repeat(124) }),
    { name: "RangeError", message: /^Cannot shut down: .*123 bytes/ },
  );
  assert.equal(server.connections, 0);
  await using client = await NpmClient.connect(wsUrl(server.addr));
  assert.equal(await client.roundTrip("still serving"), "still serving");
});

Deno.test("Server.sockets() lists the open sockets, a snapshot", async () => {
  const tracker = new SocketTracker();
  await using server = serve(LOCAL, tracker.wrap(echo));
  assert.deepEqual(server.sockets(), []);
  await using first = await NpmClient.connect(wsUrl(server.addr));
  await using second = await NpmClient.connect(wsUrl(server.addr));
  const sockets = server.sockets();
  assert.deepEqual(
    new Set(sockets),
    new Set([
      await tracker.socket(first.port),
      await tracker.socket(second.port),
    ]),
  );
  // Closing one of them from the list.
  const leaving = await tracker.socket(first.port);
  await leaving.close(4000, "kicked");
  assert.deepEqual(await first.closed, { code: 4000, reason: "kicked" });
  assert.deepEqual(server.sockets(), [await tracker.socket(second.port)]);
  assert.equal(sockets.length, 2, "the snapshot did not change");
});

Deno.test("Server.shutdown() returns the same promise when called again", async () => {
  const server = serve(LOCAL, echo);
  const first = server.shutdown();
  assert.equal(server.shutdown(), first);
  await withTimeout(first, DEADLINE, "shutdown()");
});

Deno.test("Server.shutdown() stops accepting connections", async () => {
  const server = serve(LOCAL, echo);
  const addr = server.addr;
  await withTimeout(server.shutdown(), DEADLINE, "shutdown()");
  await assert.rejects(
    () => Deno.connect({ hostname: "127.0.0.1", port: addr.port }),
    Deno.errors.ConnectionRefused,
  );
});

Deno.test(
  "Server.shutdown() closes connections still in their handshake",
  async () => {
    const server = serve(LOCAL, echo);
    try {
      using peer = await RawPeer.connect(server.addr);
      const request = encodeRequest(
        "GET / HTTP/1.1",
        upgradeHeaders(server.addr),
      );
      await peer.write(request.subarray(0, 10));
      // Make sure the server has the connection before shutting down.
      await using witness = await NpmClient.connect(wsUrl(server.addr));
      await withTimeout(server.shutdown(), DEADLINE, "shutdown()");
      await peer.readToEof();
      assert.equal((await witness.closed).code, 1001);
    } finally {
      await server.shutdown();
    }
  },
);

Deno.test(
  "Server.shutdown() closes a socket whose peer never answers once closeTimeout passes, checked by a timer or on the server's tick",
  async () => {
    // By a timer: the tick (a second) is too coarse for 200 ms. On the
    // tick: a pong timeout of 400 ms ticks every 100 ms, four times per
    // close timeout.
    for (
      const options of [
        { closeTimeout: 200 },
        { closeTimeout: 400, pingInterval: 60_000, pongTimeout: 400 },
      ]
    ) {
      const tracker = new SocketTracker();
      const server = serve({ ...LOCAL, ...options }, tracker.wrap(echo));
      using peer = await rawHandshake(server.addr);
      try {
        // Only the close timeout can end it before the deadline.
        await withTimeout(
          server.shutdown({ timeout: 60_000 }),
          DEADLINE,
          `shutdown({timeout: 60_000}) with ${JSON.stringify(options)}`,
        );
        assert.equal((await peer.readClose()).code, 1001);
        await peer.readToEof();
        assert.deepEqual(await tracker.closed(peer.port), {
          code: 1006,
          reason: "",
          wasClean: false,
        });
      } finally {
        peer.close();
        await server.shutdown({ timeout: 0 });
      }
    }
  },
);

Deno.test({
  name:
    "Server.shutdown({timeout}) force-closes a socket whose peer never answers",

  async fn() {
    const server = serve({ ...LOCAL, closeTimeout: 60_000 }, echo);
    using peer = await rawHandshake(server.addr);
    try {
      await withTimeout(
        server.shutdown({ timeout: 200 }),
        DEADLINE,
        "shutdown({timeout: 200}) with a silent peer",
      );
      assert.equal((await peer.readClose()).code, 1001);
      await peer.readToEof();
    } finally {
      peer.close();
      await server.shutdown();
    }
  },
});

Deno.test({
  name: "Server.shutdown() finishes a socket whose handler stopped reading",
  async fn() {
    const server = serve(
      { ...LOCAL, closeTimeout: 200, receiveHighWaterMark: 1024 },
      async (socket) => {
        await socket.closed;
      },
    );
    using peer = await rawHandshake(server.addr);
    try {
      // Far more than the receive high-water mark: the server stops reading.
      const chunk = frame(OP.binary, new Uint8Array(4096));
      for (let i = 0; i < 64; i++) await peer.write(chunk);
      await withTimeout(
        server.shutdown(),
        DEADLINE,
        "shutdown() with a backpressured socket",
      );
    } finally {
      peer.close();
      await server.shutdown();
    }
  },
});

Deno.test("serve({signal}) shuts down when the signal aborts", async () => {
  const controller = new AbortController();
  const server = serve({ ...LOCAL, signal: controller.signal }, echo);
  try {
    await using client = await NpmClient.connect(wsUrl(server.addr));
    assert.equal(await client.roundTrip("hi"), "hi");
    controller.abort();
    await withTimeout(server.finished, DEADLINE, "server.finished");
    const seen = await withTimeout(client.closed, DEADLINE, "close event");
    assert.equal(seen.code, 1001);
  } finally {
    await server.shutdown();
  }
});

Deno.test("serve({signal}) with an aborted signal shuts down at once", async () => {
  const server = serve({ ...LOCAL, signal: AbortSignal.abort() }, echo);
  await withTimeout(server.finished, DEADLINE, "server.finished");
  await withTimeout(server.shutdown(), DEADLINE, "shutdown()");
});

Deno.test("await using shuts the server down at the end of the block", async () => {
  let finished: Promise<void>;
  let client: NpmClient;
  {
    await using server = serve(LOCAL, echo);
    finished = server.finished;
    client = await NpmClient.connect(wsUrl(server.addr));
    assert.equal(await client.roundTrip("hi"), "hi");
  }
  await withTimeout(finished, DEADLINE, "server.finished");
  const seen = await withTimeout(client.closed, DEADLINE, "close event");
  assert.equal(seen.code, 1001);
});

Deno.test("await using on a Socket closes it with 1000", async () => {
  await using server = serve(LOCAL, async (socket) => {
    await using _socket = socket;
    await socket.send("bye soon");
  });
  await using client = await NpmClient.connect(wsUrl(server.addr));
  assert.equal(await client.next(), "bye soon");
  assert.equal(
    (await withTimeout(client.closed, DEADLINE, "close")).code,
    1000,
  );
});

Deno.test("server.finished waits for handlers still at work after their socket closed", async () => {
  let cleanedUp = 0;
  const server = serve(LOCAL, async (socket) => {
    for await (const message of socket) await socket.send(message);
    await new Promise((resolve) => setTimeout(resolve, 50));
    cleanedUp++;
  });
  try {
    const clients = await Promise.all(
      [1, 2].map(() => NpmClient.connect(wsUrl(server.addr))),
    );
    for (const client of clients) {
      assert.equal(await client.roundTrip("hi"), "hi");
    }
    await withTimeout(server.shutdown(), DEADLINE, "shutdown()");
    assert.equal(cleanedUp, 2, "finished before the handlers returned");
  } finally {
    await server.shutdown();
  }
});

Deno.test("Server.shutdown() lets an HTTP exchange under way finish within its timeout, answered with Connection: close; idle keep-alive connections close at once", async () => {
  const inHandler = Promise.withResolvers<void>();
  let answered = false;
  const server = serve({
    ...LOCAL,
    fetch: async (request) => {
      if (new URL(request.url).pathname !== "/slow") return new Response("hi");
      inHandler.resolve();
      await delay(300);
      answered = true;
      return new Response("done");
    },
  }, echo);
  try {
    const host: [string, string][] = [[
      "Host",
      `127.0.0.1:${server.addr.port}`,
    ]];
    using idle = await RawHttp.connect(server.addr);
    await idle.write(request("GET / HTTP/1.1", host));
    assert.equal((await idle.readResponse()).text, "hi"); // now idle, kept alive
    using busy = await RawHttp.connect(server.addr);
    await busy.write(request("GET /slow HTTP/1.1", host));
    await withTimeout(inHandler.promise, DEADLINE, "the slow handler");

    const shutdown = server.shutdown({ timeout: 5_000 });
    await withTimeout(idle.readToEof(), DEADLINE, "the idle connection closed");
    assert.equal(answered, false, "the idle connection waited for nothing");
    const response = await withTimeout(
      busy.readResponse(),
      DEADLINE,
      "the slow answer",
    );
    assert.equal(response.status, 200);
    assert.equal(response.text, "done");
    assert.equal(response.headers.get("connection"), "close");
    await withTimeout(shutdown, DEADLINE, "shutdown()");
  } finally {
    await server.shutdown();
  }
});

Deno.test("Server.shutdown() resolves after its timeout though a handler never returns, and logs shutdown-timeout", async () => {
  const events: ServerLogEvent[] = [];
  const server = serve(
    { ...LOCAL, logger: (event) => events.push(event) },
    () => new Promise<void>(() => {}), // stuck, say on a database call
  );
  await using client = await NpmClient.connect(wsUrl(server.addr));
  await withTimeout(server.shutdown({ timeout: 200 }), DEADLINE, "shutdown()");
  await withTimeout(server.finished, DEADLINE, "server.finished");
  assert.deepEqual(
    events.filter((event) => event.type === "shutdown-timeout"),
    [{ type: "shutdown-timeout", pending: 1 }],
  );
  assert.equal((await client.closed).code, 1001);
});

Deno.test("Server.shutdown() closes a keep-alive connection once the response it was streaming when shutdown began has ended", async () => {
  const streaming = Promise.withResolvers<void>();
  const finish = Promise.withResolvers<void>();
  const server = serve({
    ...LOCAL,
    fetch: () =>
      new Response(
        new ReadableStream({
          async start(controller) {
            controller.enqueue(new TextEncoder().encode("data: 1\n\n"));
            streaming.resolve();
            await finish.promise;
            controller.close();
          },
        }),
      ),
  }, echo);
  try {
    using client = await RawHttp.connect(server.addr);
    await client.write(
      request("GET / HTTP/1.1", [["Host", `127.0.0.1:${server.addr.port}`]]),
    );
    await withTimeout(streaming.promise, DEADLINE, "the stream");
    // The head said keep-alive before shutdown began.
    const shutdown = server.shutdown({ timeout: 60_000 });
    finish.resolve();
    const response = await withTimeout(
      client.readResponse(),
      DEADLINE,
      "the response",
    );
    assert.equal(response.text, "data: 1\n\n");
    // Long before shutdown's timeout (it used to wait for the client).
    await withTimeout(client.readToEof(), DEADLINE, "the connection closed");
    await withTimeout(shutdown, DEADLINE, "shutdown()");
    assert.equal(
      server.shutdown({ timeout: -1 }),
      shutdown,
      "a second call returns the first's promise, whatever its options",
    );
  } finally {
    await server.shutdown();
  }
});

Deno.test("Server.shutdown() answers a handshake whose onUpgrade hook is still deciding with 503 and Retry-After", async () => {
  const inHook = Promise.withResolvers<AbortSignal>();
  const server = serve({
    ...LOCAL,
    onUpgrade: async (_request, { signal }) => {
      inHook.resolve(signal);
      await new Promise((resolve) => setTimeout(resolve, 60_000).unref?.());
    },
  }, echo);
  try {
    await using peer = await RawPeer.connect(server.addr);
    await peer.write(
      encodeRequest("GET / HTTP/1.1", upgradeHeaders(server.addr)),
    );
    const signal = await withTimeout(inHook.promise, DEADLINE, "the hook");
    const shutdown = server.shutdown({ timeout: 2_000 });
    const response = await withTimeout(peer.readResponse(), DEADLINE, "503");
    assert.equal(response.status, 503, response.statusLine);
    assert.equal(response.headers.get("retry-after"), "1");
    assert.equal(response.headers.get("connection"), "close");
    assert.match(response.body, /shutting down/);
    assert.equal(signal.aborted, true, "the hook was told to stop");
    peer.close();
    await withTimeout(shutdown, DEADLINE, "shutdown()");
  } finally {
    await server.shutdown();
  }
});

Deno.test("Server.shutdown() in the turn a socket's 101 went out (called from another socket's handler) still sends that socket its close frame", async () => {
  for (let run = 0; run < 5; run++) {
    const server = serve({ ...LOCAL, logger: () => {} }, async (socket) => {
      for await (const message of socket) {
        if (message === "shutdown") server.shutdown({ timeout: 2_000 });
      }
    });
    try {
      await using admin = await NpmClient.connect(wsUrl(server.addr));
      await using victim = await RawPeer.connect(server.addr);
      await delay(5);
      // The victim's handshake and the admin's command arrive together.
      await victim.write(
        encodeRequest("GET / HTTP/1.1", upgradeHeaders(server.addr)),
      );
      admin.send("shutdown");
      const response = await withTimeout(
        victim.readResponse(),
        DEADLINE,
        "the answer",
      );
      // Refused (503), or closed while waiting for its request, is fine; a
      // 101 must be followed by the closing handshake.
      if (response.status === 101) {
        const close = await withTimeout(victim.readClose(), DEADLINE, "close");
        assert.deepEqual([close.code, close.reason], [
          1001,
          "server shutting down",
        ], `run ${run}`);
        await victim.write(frame(OP.close, new Uint8Array([0x03, 0xe9])));
      }
    } finally {
      await server.shutdown();
    }
  }
});

Deno.test("serve() that cannot listen starts no pub/sub adapter: nothing of it is left to hold the process", () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let started = 0;
  assert.throws(
    () =>
      serve({
        hostname: "127.0.0.1",
        port: taken.addr.port,
        pubsub: {
          start() {
            started++;
          },
          publish() {},
          subscribe() {},
          unsubscribe() {},
          close() {},
        },
      }, echo),
    Deno.errors.AddrInUse,
  );
  assert.equal(started, 0);
});

Deno.test("a server stopped by shutdown() lets go of its signal: no abort listener is left on it", async () => {
  const controller = new AbortController();
  const signal = controller.signal;
  let listeners = 0;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = (...args: Parameters<typeof add>) => {
    listeners++;
    add(...args);
  };
  signal.removeEventListener = (...args: Parameters<typeof remove>) => {
    listeners--;
    remove(...args);
  };
  for (let i = 0; i < 3; i++) {
    const server = serve({ ...LOCAL, signal }, echo);
    await server.shutdown();
    await server.finished;
  }
  assert.equal(listeners, 0);
});

Deno.test("serve() whose pub/sub adapter fails to start throws and leaves its port free", () => {
  const port = (() => {
    using probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    return probe.addr.port;
  })();
  assert.throws(
    () =>
      serve({
        hostname: "127.0.0.1",
        port,
        pubsub: {
          start() {
            throw new Error("bad adapter config");
          },
          publish() {},
          subscribe() {},
          unsubscribe() {},
          close() {},
        },
      }, echo),
    /bad adapter config/,
  );
  using again = Deno.listen({ hostname: "127.0.0.1", port });
  assert.equal(again.addr.port, port);
});
