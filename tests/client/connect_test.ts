import assert from "node:assert/strict";
import {
  ClientHandshakeError,
  computeAcceptKey,
  connect,
  type ConnectOptions,
  type Message,
  reconnecting,
  serve,
  type Socket,
} from "../../mod.ts";
import { closePayload, deadline, frame, rawServer } from "./_helpers.ts";

const OPCODE = { Text: 1, Binary: 2, Close: 8, Ping: 9, Pong: 10 } as const;

function echoServer() {
  return serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
    for await (const message of socket) await socket.send(message);
  });
}

async function nextMessage(socket: Socket): Promise<Message> {
  const iterator = socket[Symbol.asyncIterator]();
  const { value, done } = await deadline(iterator.next(), 5_000, "a message");
  assert.equal(done, false, "the socket closed before a message arrived");
  return value as Message;
}

function bytes(length: number): Uint8Array {
  const data = new Uint8Array(length);
  for (let i = 0; i < length; i++) data[i] = (i * 31 + 7) & 0xff;
  return data;
}

Deno.test("connect echoes text and binary through this project's server", async () => {
  await using server = echoServer();
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}/echo?x=1`);
  assert.equal(socket.url.href, `ws://127.0.0.1:${server.addr.port}/echo?x=1`);
  assert.equal(socket.remoteAddr.port, server.addr.port);
  assert.equal(socket.protocol, "");
  assert.ok(socket.headers.get("sec-websocket-accept"));
  for (
    const message of [
      "hello",
      "",
      "ünïcødé ✓",
      bytes(0),
      bytes(125),
      bytes(126),
      bytes(20_000),
      bytes(70_000),
      "x".repeat(100_000),
    ]
  ) {
    await socket.send(message);
    const echo = await nextMessage(socket);
    assert.deepEqual(echo, message);
  }
  const info = await deadline(socket.close(), 5_000, "close");
  assert.deepEqual(info, { code: 1000, reason: "", wasClean: true });
  assert.equal(socket.state, "closed");
});

Deno.test("connect closes from the client: the server sees 1000 and a clean close", async () => {
  let serverSide: Promise<unknown> = Promise.resolve();
  await using server = serve(
    { port: 0, hostname: "127.0.0.1" },
    async (socket) => {
      serverSide = socket.closed;
      for await (const _ of socket) { /* drain */ }
    },
  );
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}`);
  const info = await deadline(socket.close(1000, "done"), 5_000, "close");
  assert.equal(info.code, 1000);
  assert.equal(info.wasClean, true);
  assert.deepEqual(
    await deadline(serverSide as Promise<unknown>, 5_000, "server close"),
    { code: 1000, reason: "done", wasClean: true },
  );
});

Deno.test("connect ends iteration when the server closes, with its code and reason", async () => {
  await using server = serve(
    { port: 0, hostname: "127.0.0.1" },
    async (socket) => {
      await socket.send("last words");
      await socket.close(4001, "bye");
    },
  );
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}`);
  const received: Message[] = [];
  await deadline(
    (async () => {
      for await (const message of socket) received.push(message);
    })(),
    5_000,
    "iteration",
  );
  assert.deepEqual(received, ["last words"]);
  assert.deepEqual(await socket.closed, {
    code: 4001,
    reason: "bye",
    wasClean: true,
  });
  await assert.rejects(socket.send("too late"), /Cannot send/);
});

Deno.test("connect answers pings and measures its own", async () => {
  await using server = echoServer();
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}`);
  await deadline(socket.ping(new Uint8Array([1, 2, 3])), 5_000, "pong");
  await deadline(socket.close(), 5_000, "close");
});

Deno.test("connect masks every frame with a fresh key (RFC 6455 §5.3)", async () => {
  const keys = new Set<string>();
  const server = rawServer(async (peer) => {
    const request = await peer.accept();
    assert.equal(request.get("sec-websocket-version"), "13");
    for (let i = 0; i < 8; i++) {
      const frame = await peer.readFrame();
      assert.equal(frame.masked, true, "a client frame must be masked");
      assert.equal(frame.opcode, i % 2 === 0 ? OPCODE.Text : OPCODE.Binary);
      const expected = i % 2 === 0
        ? new TextEncoder().encode(`message ${i}`)
        : bytes(i * 100);
      assert.deepEqual(frame.payload, expected);
      keys.add(frame.maskKey.join(","));
    }
    // Close from the server: the client must echo the code (and here the
    // reason), masked.
    await peer.write(frame(OPCODE.Close, closePayload(1000, "enough")));
    const echo = await peer.readFrame();
    assert.equal(echo.masked, true);
    assert.equal(echo.opcode, OPCODE.Close);
    assert.deepEqual(echo.payload, closePayload(1000, "enough"));
    // The server closes the TCP connection first (RFC 6455 §7.1.1).
  });
  const socket = await connect(server.url);
  for (let i = 0; i < 8; i++) {
    await socket.send(i % 2 === 0 ? `message ${i}` : bytes(i * 100));
  }
  const info = await deadline(socket.closed, 5_000, "server close");
  await server.close();
  assert.deepEqual(server.errors, []);
  assert.equal(keys.size, 8, "every frame gets a fresh masking key");
  assert.deepEqual(info, { code: 1000, reason: "enough", wasClean: true });
});

Deno.test("connect answers a close frame that comes with the server's FIN (a half-close) while its loop waits: the answer is written before the EOF is read", async () => {
  const server = rawServer(async (peer) => {
    await peer.accept();
    await peer.write(frame(OPCODE.Close, closePayload(1000, "bye")));
    await (peer.conn as Deno.TcpConn).closeWrite();
    const echo = await peer.readFrame();
    assert.equal(echo.opcode, OPCODE.Close);
    assert.deepEqual(echo.payload, closePayload(1000, "bye"));
  });
  const socket = await connect(server.url);
  for await (const _ of socket) assert.fail("no message was sent");
  const info = await deadline(socket.closed, 5_000, "close");
  await server.close();
  assert.deepEqual(server.errors, []);
  assert.deepEqual(info, { code: 1000, reason: "bye", wasClean: true });
});

Deno.test("connect negotiates a subprotocol with this project's server", async () => {
  await using server = serve(
    { port: 0, hostname: "127.0.0.1", protocols: ["v2", "v1"] },
    async (socket) => {
      await socket.send(`server chose ${socket.protocol || "none"}`);
    },
  );
  const url = `ws://127.0.0.1:${server.addr.port}`;
  const both = await connect(url, { protocols: ["v1", "v2"] });
  assert.equal(both.protocol, "v2");
  assert.equal(await nextMessage(both), "server chose v2");
  await deadline(both.closed, 5_000, "close");
  const unknown = await connect(url, { protocols: ["v3"] });
  assert.equal(unknown.protocol, "");
  assert.equal(await nextMessage(unknown), "server chose none");
  await deadline(unknown.closed, 5_000, "close");
});

Deno.test("connect sends subprotocols and extra headers, and reads the choice", async () => {
  let seen: Headers | undefined;
  const server = rawServer(async (peer) => {
    seen = await peer.accept("Sec-WebSocket-Protocol: v2.chat\r\n");
    await peer.write(frame(OPCODE.Close, closePayload(1000)));
    await peer.readFrame();
  });
  const socket = await connect(`${server.url}/room`, {
    protocols: ["v1.chat", "v2.chat"],
    headers: { Origin: "https://example.com", Authorization: "Bearer t" },
  });
  assert.equal(socket.protocol, "v2.chat");
  await deadline(socket.closed, 5_000, "close");
  await server.close();
  assert.deepEqual(server.errors, []);
  assert.equal(seen?.get("sec-websocket-protocol"), "v1.chat, v2.chat");
  assert.equal(seen?.get("origin"), "https://example.com");
  assert.equal(seen?.get("authorization"), "Bearer t");
  assert.equal(seen?.get("host"), `127.0.0.1:${server.port}`);
});

Deno.test("connect rejects a wrong Sec-WebSocket-Accept and sends no frame (RFC 6455 §4.1)", async () => {
  let sentAfter: boolean | undefined;
  const server = rawServer(async (peer) => {
    await peer.readHead();
    const wrong = computeAcceptKey("AAAAAAAAAAAAAAAAAAAAAA==");
    await peer.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
        `Connection: Upgrade\r\nSec-WebSocket-Accept: ${wrong}\r\n\r\n`,
    );
    sentAfter = !(await peer.readEof());
  });
  await assert.rejects(
    connect(server.url),
    (error) => {
      assert.ok(error instanceof ClientHandshakeError);
      assert.equal(error.code, "INVALID_ACCEPT");
      assert.match(error.message, /Sec-WebSocket-Accept must be/);
      return true;
    },
  );
  await server.close();
  assert.deepEqual(server.errors, []);
  assert.equal(sentAfter, false, "the client closed without sending a frame");
});

Deno.test("connect reports a rejection whose body was still arriving at handshakeTimeout as the rejection, not a timeout", async () => {
  const server = rawServer(async (peer) => {
    await peer.readHead();
    // No Content-Length, and the connection stays open: the body never ends.
    await peer.write("HTTP/1.1 401 Unauthorized\r\n\r\nToken expi");
    await peer.readEof();
  });
  await assert.rejects(
    deadline(connect(server.url, { handshakeTimeout: 300 }), 5_000, "connect"),
    (error) => {
      assert.ok(error instanceof ClientHandshakeError, String(error));
      assert.equal(error.code, "UNEXPECTED_STATUS");
      assert.equal(error.status, 401);
      assert.equal(error.body, "Token expi");
      return true;
    },
  );
  await server.close();
});

Deno.test("connect rejects a non-101 response with its status and body", async () => {
  const server = rawServer(async (peer) => {
    await peer.readHead();
    const body = "Token expired; log in again\n";
    // Content-Length ends the body; the connection stays open.
    await peer.write(
      "HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\n" +
        `Content-Length: ${body.length}\r\n\r\n${body}`,
    );
    await peer.readEof();
  });
  await assert.rejects(
    deadline(connect(server.url), 5_000, "connect"),
    (error) => {
      assert.ok(error instanceof ClientHandshakeError);
      assert.equal(error.code, "UNEXPECTED_STATUS");
      assert.equal(error.status, 401);
      assert.equal(error.body, "Token expired; log in again\n");
      assert.equal(
        error.message,
        `Cannot connect to ${server.url}/: the server answered 401 Unauthorized instead of 101 Switching Protocols: Token expired; log in again`,
      );
      return true;
    },
  );
  await server.close();
  assert.deepEqual(server.errors, []);
});

/** A node:net server that answers each request with `response` (if any), then resets. */
async function resettingServer(
  response: string,
): Promise<{ url: string; connections: () => number } & AsyncDisposable> {
  const net = await import("node:net");
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    socket.on("error", () => {});
    socket.once("data", () => {
      if (response === "") return socket.resetAndDestroy();
      // The client reads the response long before the reset comes.
      socket.write(response, () => {
        setTimeout(() => socket.resetAndDestroy(), 200);
      });
    });
  });
  await new Promise<void>((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve())
  );
  const { port } = server.address() as { port: number };
  return {
    url: `ws://127.0.0.1:${port}`,
    connections: () => connections,
    async [Symbol.asyncDispose]() {
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

Deno.test("connect reports a rejection that a reset ends (a proxy's 401) as the rejection; a reset before any answer as CONNECTION_CLOSED, with the reset as its cause", async () => {
  {
    await using server = await resettingServer(
      "HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\n\r\ninvalid token",
    );
    await assert.rejects(
      deadline(connect(server.url), 5_000, "connect"),
      (error) => {
        assert.ok(error instanceof ClientHandshakeError, String(error));
        assert.equal(error.code, "UNEXPECTED_STATUS");
        assert.equal(error.status, 401);
        assert.equal(error.body, "invalid token");
        return true;
      },
    );
    // And so reconnecting() stops at the 401 instead of retrying it.
    await assert.rejects(
      (async () => {
        for await (
          const _ of reconnecting(server.url, { initialDelay: 1 })
        ) { /* never */ }
      })(),
      (error) => error instanceof ClientHandshakeError && error.status === 401,
    );
    assert.equal(server.connections(), 2);
  }
  await using server = await resettingServer("");
  await assert.rejects(
    deadline(connect(server.url), 5_000, "connect"),
    (error) => {
      assert.ok(error instanceof ClientHandshakeError, String(error));
      assert.equal(error.code, "CONNECTION_CLOSED");
      assert.ok(error.cause instanceof Deno.errors.ConnectionReset);
      assert.match(error.message, /reset the connection/);
      return true;
    },
  );
});

Deno.test("connect reads a rejection's body until the server closes", async () => {
  const server = rawServer(async (peer) => {
    await peer.readHead();
    await peer.write("HTTP/1.1 503 Service Unavailable\r\n\r\n");
    await peer.write("overloaded");
  });
  await assert.rejects(deadline(connect(server.url), 5_000, "connect"), {
    name: "ClientHandshakeError",
    status: 503,
    body: "overloaded",
  });
  await server.close();
});

Deno.test("connect times out a server that never answers", async () => {
  const server = rawServer(async (peer) => {
    await peer.readHead();
    await peer.readEof();
  });
  await assert.rejects(
    connect(server.url, { handshakeTimeout: 100 }),
    (error) => {
      assert.ok(error instanceof Deno.errors.TimedOut);
      assert.equal(
        error.message,
        `Cannot connect to ${server.url}/: the handshake did not complete within 100 ms`,
      );
      return true;
    },
  );
  await server.close();
});

Deno.test("connect stops when its signal is aborted", async () => {
  const server = rawServer(async (peer) => {
    await peer.readHead();
    await peer.readEof();
  });
  const controller = new AbortController();
  const attempt = connect(server.url, { signal: controller.signal });
  setTimeout(() => controller.abort(new Error("user gave up")), 50);
  await assert.rejects(deadline(attempt, 5_000, "connect"), /user gave up/);
  await assert.rejects(
    connect(server.url, { signal: AbortSignal.abort() }),
    { name: "AbortError" },
  );
  await server.close();
});

/**
 * A listener whose accept queue is full, never accepting: the kernel drops
 * further SYNs, and a connect to it stays pending (retransmitting).
 */
async function stallingListener() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  const queued: Deno.Conn[] = [];
  for (let i = 0; i < 5000; i++) {
    try {
      queued.push(
        await Deno.connect({
          hostname: "127.0.0.1",
          port,
          signal: AbortSignal.timeout(200),
        }),
      );
    } catch {
      break; // this one stalled: the queue is full
    }
  }
  return {
    port,
    close() {
      for (const conn of queued) conn.close();
      listener.close();
    },
  };
}

async function waitFor(condition: () => Promise<boolean>): Promise<void> {
  for (let i = 0; !await condition(); i++) {
    assert.ok(i < 100, "the condition never held");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Sockets of this machine still connecting (SYN-SENT) to `port`. */
async function connectingTo(port: number): Promise<number> {
  const table = await Deno.readTextFile("/proc/net/tcp");
  const remote = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  return table.split("\n").filter((line) => {
    const fields = line.trim().split(/\s+/);
    return fields[2]?.endsWith(remote) && fields[3] === "02";
  }).length;
}

Deno.test({
  name:
    "connect, given up while its TCP connect is pending (signal or handshakeTimeout), cancels it: no socket stays connecting",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const stalled = await stallingListener();
    try {
      for (
        const [url, options] of [
          [`ws://127.0.0.1:${stalled.port}/`, () => ({
            signal: AbortSignal.timeout(300),
          })],
          [
            `ws://127.0.0.1:${stalled.port}/`,
            () => ({ handshakeTimeout: 300 }),
          ],
          [`wss://127.0.0.1:${stalled.port}/`, () => ({
            signal: AbortSignal.timeout(300),
          })],
        ] as const
      ) {
        const attempt = connect(url, options());
        attempt.catch(() => {});
        await waitFor(async () => await connectingTo(stalled.port) === 1);
        await assert.rejects(deadline(attempt, 5_000, url));
        // Closed with the rejection, or within a turn of it.
        await new Promise((resolve) => setTimeout(resolve, 50));
        assert.equal(await connectingTo(stalled.port), 0, url);
      }
    } finally {
      stalled.close();
    }
  },
});

Deno.test("connect fails with the network error, naming the URL, when nothing listens", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  const error = await connect(`ws://127.0.0.1:${port}`).catch((e) => e);
  // The runtime's error, same class and code, saying where it went.
  assert.ok(error instanceof Deno.errors.ConnectionRefused, String(error));
  assert.match(
    error.message,
    new RegExp(`^Cannot connect to ws://127\\.0\\.0\\.1:${port}/: `),
  );
  assert.equal((error as { code?: string }).code, "ECONNREFUSED");
  assert.ok(error.cause instanceof Deno.errors.ConnectionRefused);
});

Deno.test("connect rejects caller mistakes with TypeError and RangeError", async () => {
  await assert.rejects(
    connect("ftp://127.0.0.1/"),
    new TypeError(
      'Cannot connect: "url" must use ws: or wss: (or http: or https:), got ftp:',
    ),
  );
  await assert.rejects(
    connect("ws://127.0.0.1/", { handshakeTimeout: -1 }),
    new RangeError(
      'Cannot connect: "handshakeTimeout" must be a positive integer, got -1',
    ),
  );
  await assert.rejects(
    connect("ws://127.0.0.1/", { maxPayload: 1.5 }),
    /"maxPayload" must be a positive integer, got 1.5/,
  );
  await assert.rejects(
    connect("ws://127.0.0.1/", { maxFragments: 0 }),
    /"maxFragments" must be a positive integer, got 0/,
  );
  // From JavaScript, or options typed `any`.
  const mistakes: [unknown, string][] = [
    [null, "Cannot connect: the options must be an object, got null"],
    [
      { signal: {} },
      'Cannot connect: "signal" must be an AbortSignal, got Object',
    ],
    [
      { perMessageDeflate: "yes" },
      'Cannot connect: "perMessageDeflate" must be a boolean or an object, got string "yes"',
    ],
    [
      { streamMessages: 1 },
      'Cannot connect: "streamMessages" must be a boolean, got number 1',
    ],
    [
      { caCerts: "-----BEGIN CERTIFICATE-----" },
      'Cannot connect: "caCerts" must be an array of PEM certificates (the text, "-----BEGIN CERTIFICATE-----...", not file names), got string',
    ],
    [{ caCerts: ["ca.pem"] }, "got an array holding something else"],
    [
      { handshakeTimeout: "5000" },
      'Cannot connect: "handshakeTimeout" must be a positive integer, got string "5000"',
    ],
  ];
  mistakes.push([
    { handshakeTimout: 5 },
    'Cannot connect: unknown option "handshakeTimout" (did you mean "handshakeTimeout"?)',
  ]);
  for (const [options, message] of mistakes) {
    await assert.rejects(
      connect("ws://127.0.0.1/", options as ConnectOptions),
      (error: Error) =>
        (error instanceof TypeError || error instanceof RangeError) &&
        error.message.includes(message),
      JSON.stringify(options),
    );
  }
});

Deno.test("connect checks its flow-control and timeout options with serve()'s messages", async () => {
  const mistakes: [ConnectOptions, Error][] = [
    [
      { sendHighWaterMark: 0 },
      new RangeError(
        'Cannot connect: "sendHighWaterMark" must be a positive integer, got 0',
      ),
    ],
    [
      { receiveHighWaterMark: 1.5 },
      new RangeError(
        'Cannot connect: "receiveHighWaterMark" must be a positive integer, got 1.5',
      ),
    ],
    [
      { maxQueuedMessages: -1 },
      new RangeError(
        'Cannot connect: "maxQueuedMessages" must be a positive integer, got -1',
      ),
    ],
    [
      { maxBackpressure: "16MB" as unknown as number },
      new TypeError(
        'Cannot connect: "maxBackpressure" must be a positive integer, got string "16MB"',
      ),
    ],
    [
      { idleTimeout: -1 },
      new RangeError(
        'Cannot connect: "idleTimeout" must be a non-negative integer, got -1',
      ),
    ],
    [
      { messageTimeout: 2 ** 31 },
      new RangeError(
        'Cannot connect: "messageTimeout" must be at most 2147483647 ms, got 2147483648',
      ),
    ],
    [
      { backpressurePolicy: "block" as "wait" },
      new RangeError(
        'Cannot connect: "backpressurePolicy" must be "close", "drop" or "wait", got string "block"',
      ),
    ],
    [
      { backpressurePolicy: Symbol("close") as unknown as "wait" },
      new TypeError(
        'Cannot connect: "backpressurePolicy" must be "close", "drop" or "wait", got symbol Symbol(close)',
      ),
    ],
    [
      { perMessageDeflate: { level: "6" as unknown as number } },
      new TypeError(
        'Cannot use permessage-deflate: "level" must be an integer from 0 to 9, got string "6"',
      ),
    ],
    [
      { maxBackpressure: 1024 },
      new RangeError(
        'Cannot connect: "maxBackpressure" (1024) must be at least "sendHighWaterMark" (1048576), or send() never waits before the backpressure policy applies; lower "sendHighWaterMark" too',
      ),
    ],
    [
      { backpressurePolicy: "drop" },
      new TypeError(
        'Cannot connect: "backpressurePolicy" "drop" applies at "maxBackpressure", which a client leaves unbounded by default: set "maxBackpressure" too',
      ),
    ],
    [
      { idleTimout: 1000 } as ConnectOptions,
      new TypeError(
        'Cannot connect: unknown option "idleTimout" (did you mean "idleTimeout"?)',
      ),
    ],
    [
      { sendHighWatermark: 1024 } as ConnectOptions,
      new TypeError(
        'Cannot connect: unknown option "sendHighWatermark" (did you mean "sendHighWaterMark"?)',
      ),
    ],
  ];
  for (const [options, error] of mistakes) {
    await assert.rejects(
      connect("ws://127.0.0.1:1/", options),
      error,
      JSON.stringify(options),
    );
  }
  // Both bounds at once, and "wait" alone (the default behaviour), are fine.
  await using server = echoServer();
  for (
    const options of [
      { sendHighWaterMark: 1024, maxBackpressure: 1024 },
      { backpressurePolicy: "wait" },
    ] satisfies ConnectOptions[]
  ) {
    const socket = await connect(`ws://127.0.0.1:${server.addr.port}`, options);
    await socket.close();
  }
});

Deno.test("connect delivers frames that arrive together with the 101 response", async () => {
  const server = rawServer(async (peer) => {
    const { headers } = await peer.readHead();
    const accept = computeAcceptKey(headers.get("sec-websocket-key")!);
    const head = new TextEncoder().encode(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
        `Connection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    const first = frame(OPCODE.Text, "early");
    await peer.write(new Uint8Array([...head, ...first]));
    await peer.write(frame(OPCODE.Close, closePayload(1000)));
    await peer.readFrame();
  });
  const socket = await connect(server.url);
  assert.equal(await nextMessage(socket), "early");
  assert.equal((await deadline(socket.closed, 5_000, "close")).code, 1000);
  await server.close();
  assert.deepEqual(server.errors, []);
});

Deno.test("connect fails a masked frame from the server with 1002 (RFC 6455 §5.1)", async () => {
  let closeCode: number | undefined;
  const server = rawServer(async (peer) => {
    await peer.accept();
    // "A client MUST close a connection if it detects a masked frame."
    await peer.write(
      new Uint8Array([0x81, 0x82, 1, 2, 3, 4, 0x68 ^ 1, 0x69 ^ 2]),
    );
    const close = await peer.readFrame();
    closeCode = (close.payload[0] << 8) | close.payload[1];
  });
  const socket = await connect(server.url);
  const info = await deadline(socket.closed, 5_000, "close");
  assert.equal(info.code, 1002);
  assert.equal(info.error?.code, "MASKED_FRAME");
  await server.close();
  assert.deepEqual(server.errors, []);
  assert.equal(closeCode, 1002);
});

Deno.test("connect closes the TCP connection itself after a protocol error, without waiting for a server that floods and never closes it (RFC 6455 §7.1.7)", async () => {
  const sawEof = Promise.withResolvers<boolean>();
  const server = rawServer(async (peer) => {
    await peer.accept();
    await peer.write(
      new Uint8Array([0x81, 0x82, 1, 2, 3, 4, 0x68 ^ 1, 0x69 ^ 2]),
    );
    // Keep sending, never close: only the client can end this.
    const flooding = (async () => {
      const garbage = new Uint8Array(64 * 1024);
      for (let i = 0; i < 4096; i++) await peer.write(garbage);
    })().catch(() => {});
    const close = await peer.readFrame();
    assert.equal(close.opcode, 0x8);
    try {
      await peer.readFrame();
      sawEof.resolve(false);
    } catch {
      sawEof.resolve(true); // the connection ended
    }
    await flooding;
  });
  const socket = await connect(server.url, { closeTimeout: 60_000 });
  const info = await deadline(socket.closed, 5_000, "close");
  assert.equal(info.code, 1002);
  assert.equal(await deadline(sawEof.promise, 5_000, "the client's EOF"), true);
  await server.close();
  assert.deepEqual(server.errors, []);
});

Deno.test("connect takes a response with more header fields than the default 100 when maxHeaders allows, and refuses it otherwise", async () => {
  const many = Array.from({ length: 150 }, (_, i) => `X-Proxy-${i}: ${i}\r\n`)
    .join("");
  const server = rawServer(async (peer) => {
    await peer.accept(many);
    await peer.readFrame().catch(() => {}); // the close, or the end
  });
  await assert.rejects(
    connect(server.url),
    (error) =>
      error instanceof ClientHandshakeError &&
      error.code === "RESPONSE_TOO_LARGE",
  );
  const socket = await connect(server.url, { maxHeaders: 200 });
  assert.equal(socket.headers.get("x-proxy-149"), "149");
  await socket.close();
  await assert.rejects(
    connect(server.url, { maxHeaders: 0 }),
    {
      name: "RangeError",
      message: /"maxHeaders" must be a positive integer, got 0/,
    },
  );
  await server.close();
});

Deno.test("connect enforces maxPayload with 1009", async () => {
  await using server = serve(
    { port: 0, hostname: "127.0.0.1" },
    async (socket) => {
      await socket.send(bytes(2048)).catch(() => {});
      for await (const _ of socket) { /* drain */ }
    },
  );
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}`, {
    maxPayload: 1024,
  });
  const info = await deadline(socket.closed, 5_000, "close");
  assert.equal(info.code, 1009);
  assert.equal(info.error?.code, "MESSAGE_TOO_BIG");
});

Deno.test("connect takes maxFragments: a message sent as more frames than it fails with 1009, one within it arrives whole", async () => {
  const pieces = 5000; // past the default 4096
  await using server = serve(
    { port: 0, hostname: "127.0.0.1" },
    async (socket) => {
      await socket.sendStream(
        Array.from({ length: pieces }, (_, i) => new Uint8Array([i & 0xff])),
      ).catch(() => {});
      for await (const _ of socket) { /* drain */ }
    },
  );
  const url = `ws://127.0.0.1:${server.addr.port}`;
  const strict = await connect(url);
  const info = await deadline(strict.closed, 5_000, "close");
  assert.equal(info.code, 1009);
  assert.equal(info.error?.code, "TOO_MANY_FRAGMENTS");
  const roomy = await connect(url, { maxFragments: pieces });
  const iterator = roomy[Symbol.asyncIterator]();
  const { value } = await deadline(iterator.next(), 5_000, "the message");
  assert.deepEqual(
    value,
    Uint8Array.from({ length: pieces }, (_, i) => i & 0xff),
  );
  await roomy.close();
});

Deno.test("connect reports 1006 when the server drops the connection", async () => {
  const server = rawServer(async (peer) => {
    await peer.accept();
  });
  const socket = await connect(server.url);
  assert.deepEqual(await deadline(socket.closed, 5_000, "close"), {
    code: 1006,
    reason: "",
    wasClean: false,
  });
  await server.close();
});

const CERT_FILE = new URL("../fixtures/cert.pem", import.meta.url);
const KEY_FILE = new URL("../fixtures/key.pem", import.meta.url);

Deno.test("connect to a wss:// server with a ws:// URL says the server answered with TLS: a malformed response, not a connection closed (which a retry could fix)", async () => {
  const cert = await Deno.readTextFile(CERT_FILE);
  const key = await Deno.readTextFile(KEY_FILE);
  await using server = serve(
    { port: 0, hostname: "127.0.0.1", cert, key },
    () => {},
  );
  await assert.rejects(
    deadline(connect(`ws://127.0.0.1:${server.addr.port}/`), 5_000, "connect"),
    (error) => {
      assert.ok(error instanceof ClientHandshakeError, String(error));
      assert.equal(error.code, "MALFORMED_RESPONSE");
      assert.match(
        error.message,
        /answered with TLS: is it a wss:\/\/ server\?/,
      );
      return true;
    },
  );
});

Deno.test("connect speaks wss: with the test certificate", async () => {
  const cert = await Deno.readTextFile(CERT_FILE);
  const key = await Deno.readTextFile(KEY_FILE);
  await using server = serve(
    { port: 0, hostname: "127.0.0.1", cert, key },
    async (socket) => {
      for await (const message of socket) await socket.send(message);
    },
  );
  for (const host of ["localhost", "127.0.0.1"]) {
    const socket = await connect(`wss://${host}:${server.addr.port}/tls`, {
      caCerts: [cert],
    });
    await socket.send("over TLS");
    assert.equal(await nextMessage(socket), "over TLS");
    await socket.send(bytes(100_000));
    assert.deepEqual(await nextMessage(socket), bytes(100_000));
    assert.equal((await deadline(socket.close(), 5_000, "close")).code, 1000);
  }
  // Without the certificate the server is not trusted.
  await assert.rejects(
    connect(`wss://localhost:${server.addr.port}/`, {
      handshakeTimeout: 5_000,
    }),
    /certificate/i,
  );
});

Deno.test("socket.send() of something that is not a message throws, saying what it got", async () => {
  await using server = serve(
    { port: 0, hostname: "127.0.0.1" },
    async (socket) => {
      for await (const _ of socket) { /* drain */ }
    },
  );
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}`);
  for (
    const [value, got] of [
      [42, "number 42"],
      [undefined, "undefined"],
      [{ text: "hi" }, "Object"],
      [new Map(), "Map"],
      [[1, 2], "Array"],
    ] as const
  ) {
    assert.throws(
      () => socket.send(value as unknown as string),
      {
        name: "TypeError",
        message:
          `Cannot send: a message must be a string, Uint8Array, ArrayBuffer or PreparedMessage, got ${got}`,
      },
    );
  }
  await socket.send("still open");
  await socket.close();
});

Deno.test("close() while the loop still takes messages loses none of those the peer sent before its close frame, beyond the receive queue's size", async () => {
  const count = 5000; // several times maxQueuedMessages (1024)
  await using server = serve(
    { port: 0, hostname: "127.0.0.1" },
    async (socket) => {
      for (let i = 0; i < count; i++) socket.send(`m${i}`);
      await socket.closed;
    },
  );
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}`);
  let received = 0;
  let closing: Promise<unknown> | undefined;
  for await (const message of socket) {
    assert.equal(message, `m${received}`);
    received++;
    // Close early, then keep taking what arrives, slowly.
    closing ??= socket.close(1000);
    if (received % 100 === 0) await new Promise((r) => setTimeout(r, 1));
  }
  assert.equal(received, count);
  await closing;
  assert.equal((await socket.closed).wasClean, true);
});

Deno.test("connect() knows every option it declares by name", async () => {
  // The type makes this list complete.
  const declared: Record<keyof Required<ConnectOptions>, true> = {
    protocols: true,
    headers: true,
    signal: true,
    handshakeTimeout: true,
    closeTimeout: true,
    maxPayload: true,
    maxFragments: true,
    maxHeadSize: true,
    maxHeaders: true,
    caCerts: true,
    perMessageDeflate: true,
    streamMessages: true,
    pingInterval: true,
    pongTimeout: true,
    idleTimeout: true,
    messageTimeout: true,
    sendHighWaterMark: true,
    maxBackpressure: true,
    backpressurePolicy: true,
    receiveHighWaterMark: true,
    maxQueuedMessages: true,
  };
  const unset = Object.fromEntries(
    Object.keys(declared).map((name) => [name, undefined]),
  );
  await using server = serve({ port: 0, hostname: "127.0.0.1" }, () => {});
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}`, unset);
  await socket.close();
});
