import assert from "node:assert/strict";
import {
  type CloseInfo,
  connect,
  ConnectionClosedError,
  serve,
  type ServerLogEvent,
  type Socket,
} from "../../mod.ts";
import {
  assertBytes,
  type ClientClose,
  closePayload,
  concat,
  DEADLINE,
  delay,
  DenoClient,
  echo,
  frame,
  LOCAL,
  NpmClient,
  OP,
  pattern,
  rawHandshake,
  type Received,
  SocketTracker,
  withTimeout,
  wsUrl,
} from "./_helpers.ts";

for (
  const [code, reason] of [[1000, "done"], [4000, "app says bye ✓"], [
    3000,
    "r".repeat(123),
  ]] as const
) {
  Deno.test(
    `Socket.closed resolves {${code}, reason, wasClean} when npm:ws closes with ${code}`,
    async () => {
      const tracker = new SocketTracker();
      await using server = serve(LOCAL, tracker.wrap(echo));
      await using client = await NpmClient.connect(wsUrl(server.addr));
      const port = client.port;
      const seen = await client.close(code, reason);
      // The server echoes the code (RFC 6455 §5.5.1); the reason is optional.
      assert.equal(seen.code, code);
      assert.deepEqual(await tracker.closed(port), {
        code,
        reason,
        wasClean: true,
      });
    },
  );
}

Deno.test(
  "Socket.closed resolves {4000, reason, wasClean} when Deno's WebSocket closes",
  async () => {
    const closed = Promise.withResolvers<CloseInfo>();
    await using server = serve(LOCAL, async (socket) => {
      await echo(socket);
      closed.resolve(await socket.closed);
    });
    await using client = await DenoClient.connect(wsUrl(server.addr));
    const seen = await client.close(4000, "see you");
    assert.equal(seen.code, 4000);
    assert.equal(seen.wasClean, true);
    assert.deepEqual(
      await withTimeout(closed.promise, DEADLINE, "the server socket to close"),
      { code: 4000, reason: "see you", wasClean: true },
    );
  },
);

Deno.test("serve() closes the TCP connection first, at once, when the closing handshake it began is complete (RFC 6455 §7.1.1: the server closes it first), not after closeTimeout", async () => {
  const tracker = new SocketTracker();
  await using server = serve(
    { ...LOCAL, closeTimeout: 60_000 },
    tracker.wrap(async (socket) => {
      await socket.close(4001, "done");
    }),
  );
  using peer = await rawHandshake(server.addr);
  const close = await withTimeout(peer.readClose(), DEADLINE, "the close");
  assert.deepEqual([close.code, close.reason], [4001, "done"]);
  await peer.write(frame(OP.close, closePayload(4001)));
  // A client waits for the server's EOF (§7.1.1); it comes at once.
  assert.equal(
    (await withTimeout(peer.readToEof(), DEADLINE, "the server's EOF")).length,
    0,
  );
  assert.deepEqual(await tracker.closed(peer.port), {
    code: 4001,
    reason: "",
    wasClean: true,
  });
});

Deno.test(
  "Socket.closed resolves 1005 for an empty close frame (RFC 6455 §7.1.5)",
  async () => {
    const tracker = new SocketTracker();
    await using server = serve(LOCAL, tracker.wrap(echo));
    using peer = await rawHandshake(server.addr, frame(OP.close));
    const { code } = await peer.readClose();
    assert.equal(code, 1005, "an empty close frame is echoed empty");
    await peer.readToEof();
    assert.deepEqual(await tracker.closed(peer.port), {
      code: 1005,
      reason: "",
      wasClean: true,
    });
  },
);

for (
  const [name, connect] of [
    ["npm:ws", (url: string) => NpmClient.connect(url)],
    ["Deno WebSocket", (url: string) => DenoClient.connect(url)],
  ] as const
) {
  Deno.test(
    `Socket.close(4001, "bye") reaches ${name} and resolves wasClean`,
    async () => {
      const result = Promise.withResolvers<CloseInfo>();
      await using server = serve(LOCAL, async (socket) => {
        result.resolve(await socket.close(4001, "bye"));
      });
      await using client = await connect(wsUrl(server.addr));
      const seen = await withTimeout(client.closed, DEADLINE, "close event");
      assert.equal(seen.code, 4001);
      assert.equal(seen.reason, "bye");
      const info = await withTimeout(result.promise, DEADLINE, "close()");
      assert.equal(info.code, 4001, "the peer echoes the code");
      assert.equal(info.wasClean, true);
    },
  );
}

Deno.test(
  "Socket.close() throws RangeError for a code or reason it may not send, open, closing or closed",
  async () => {
    const checked = Promise.withResolvers<void>();
    await using server = serve(LOCAL, async (socket) => {
      try {
        for (const code of [0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 1.5]) {
          assert.throws(() => socket.close(code), {
            name: "RangeError",
            message:
              `Cannot close: "code" must be 1000-1003, 1007-1014 or 3000-4999, got ${code}`,
          }, `code ${code}`);
        }
        assert.throws(() => socket.close(4000, "é".repeat(62)), {
          name: "RangeError",
          message: /^Cannot close: "reason" must be at most 123 bytes/,
        });
        assert.equal(socket.state, "open", "a rejected close() sends nothing");
        // Whatever the state: a bad code is a bug in the caller.
        socket.close(4000).catch(() => {});
        assert.throws(() => socket.close(999), { name: "RangeError" });
        await socket.closed;
        assert.throws(() => socket.close(1006), { name: "RangeError" });
        checked.resolve();
      } catch (error) {
        checked.reject(error);
      }
      await echo(socket);
    });
    await using client = await NpmClient.connect(wsUrl(server.addr));
    await withTimeout(checked.promise, DEADLINE, "the close() checks");
    assert.equal((await client.closed).code, 4000);
  },
);

Deno.test(
  "Socket.close() sends every message queued before it first",
  async () => {
    const sent: Received[] = [];
    for (let i = 0; i < 300; i++) {
      // Mix small text, small binary and binary above the 16 KiB copy limit.
      sent.push(
        i % 3 === 0 ? `message ${i}` : pattern(i % 3 === 1 ? i : 40_000 + i, i),
      );
    }
    await using server = serve(LOCAL, async (socket) => {
      for (const message of sent) socket.send(message);
      await socket.close(4001, "that is all");
    });
    await using client = await NpmClient.connect(wsUrl(server.addr));
    const seen = await withTimeout(client.closed, DEADLINE, "close event");
    assert.equal(seen.code, 4001);
    for (const [i, message] of sent.entries()) {
      const received = await client.next(`message ${i} of ${sent.length}`);
      if (typeof message === "string") assert.equal(received, message);
      else assertBytes(received, message);
    }
  },
);

Deno.test(
  "Socket delivers the messages the peer sent before its close frame",
  async () => {
    const received = Promise.withResolvers<Received[]>();
    await using server = serve(LOCAL, async (socket) => {
      const messages: Received[] = [];
      for await (const message of socket) messages.push(message);
      received.resolve(messages);
    });
    using peer = await rawHandshake(
      server.addr,
      concat(
        frame(OP.text, "a"),
        frame(OP.binary, new Uint8Array([2])),
        frame(OP.text, "c"),
        frame(OP.close, closePayload(1000)),
      ),
    );
    assert.equal((await peer.readClose()).code, 1000);
    await peer.readToEof();
    const messages = await withTimeout(received.promise, DEADLINE, "messages");
    assert.deepEqual(messages, ["a", new Uint8Array([2]), "c"]);
  },
);

Deno.test("Socket.send() after close() rejects with ConnectionClosedError", async () => {
  const result = Promise.withResolvers<unknown>();
  await using server = serve(LOCAL, async (socket) => {
    const closing = socket.close(4002);
    result.resolve(await socket.send("too late").then(() => "sent", (e) => e));
    await closing;
  });
  await using client = await NpmClient.connect(wsUrl(server.addr));
  assert.equal(
    (await withTimeout(client.closed, DEADLINE, "close")).code,
    4002,
  );
  const error = await withTimeout(result.promise, DEADLINE, "send() to settle");
  assert.ok(error instanceof ConnectionClosedError, String(error));
  assert.match(
    error.message,
    /^Cannot send: the WebSocket is closing or closed/,
  );
});

Deno.test(
  "Socket.close() closes the transport after closeTimeout when the peer never answers",
  async () => {
    const result = Promise.withResolvers<CloseInfo>();
    await using server = serve(
      { ...LOCAL, closeTimeout: 200 },
      async (socket) => {
        result.resolve(await socket.close(4001, "bye"));
      },
    );
    using peer = await rawHandshake(server.addr);
    const { code, reason } = await peer.readClose();
    assert.deepEqual([code, reason], [4001, "bye"]);
    // Never answer: the server gives up and closes the connection.
    await peer.readToEof();
    const info = await withTimeout(result.promise, DEADLINE, "close()");
    assert.deepEqual(info, { code: 1006, reason: "", wasClean: false });
  },
);

Deno.test(
  "Socket.close() gives up after closeTimeout on a peer that pings but never answers the close frame (our pongs are not progress)",
  async () => {
    let closed = false;
    const result = Promise.withResolvers<CloseInfo>();
    await using server = serve(
      { ...LOCAL, closeTimeout: 200 },
      async (socket) => {
        result.resolve(await socket.close(4001, "bye"));
        closed = true;
      },
    );
    using peer = await rawHandshake(server.addr);
    assert.equal((await peer.readClose()).code, 4001);
    // A ping every 60 ms, each answered: the pongs are written, but the
    // closing handshake goes no further.
    const stopAt = performance.now() + DEADLINE;
    while (!closed && performance.now() < stopAt) {
      try {
        await peer.write(frame(OP.ping, "still there?"));
        assert.equal((await peer.readFrame()).opcode, OP.pong);
      } catch {
        break; // the server closed the connection
      }
      await delay(60);
    }
    assert.ok(performance.now() < stopAt, "close() still pending");
    const info = await withTimeout(result.promise, DEADLINE, "close()");
    assert.deepEqual(info, { code: 1006, reason: "", wasClean: false });
  },
);
/**
 * A server that sends `messages` messages of 64 KiB (message i filled with
 * i) and then closes with 1000 "done"; `closed` is what close() resolved to.
 */
function backlogThenClose(messages: number, closeTimeout: number) {
  const result = Promise.withResolvers<CloseInfo>();
  const server = serve({ ...LOCAL, closeTimeout }, async (socket) => {
    for (let i = 0; i < messages; i++) {
      await socket.send(new Uint8Array(64 * 1024).fill(i));
    }
    result.resolve(await socket.close(1000, "done"));
  });
  return {
    server,
    closed: withTimeout(result.promise, 3 * DEADLINE, "close()"),
  };
}

/**
 * Has an npm:ws client read in bursts (50 ms in every 250, pinging with
 * each when `ping`), checks that it gets `messages` messages of 64 KiB
 * (message i filled with i), then reads on to its close event.
 */
async function readSlowly(
  client: NpmClient,
  messages: number,
  ping: boolean,
): Promise<ClientClose> {
  client.ws.pause();
  const reading = setInterval(() => {
    client.ws.resume();
    if (ping) client.ws.ping();
    setTimeout(() => client.ws.pause(), 50);
  }, 250);
  try {
    for (let i = 0; i < messages; i++) {
      const message = await withTimeout(client.next(), DEADLINE, `${i}`);
      assert.ok(message instanceof Uint8Array, `message ${i}`);
      assert.ok(message.every((byte) => byte === i), `message ${i}`);
    }
    client.ws.resume();
    return await client.closed;
  } finally {
    clearInterval(reading);
  }
}

Deno.test(
  "Socket.close() after a large backlog lets an npm:ws client that reads slowly and keeps sending read all of it: no reset when the close timeout passes, and the closing handshake completes",
  async () => {
    const MESSAGES = 128; // 8 MiB: more than the kernel's buffers hold
    const { server, closed } = backlogThenClose(MESSAGES, 200);
    await using _ = server;
    await using client = await NpmClient.connect(wsUrl(server.addr));
    // The client reads in bursts and pings all along: a reset would make
    // its kernel discard what it has not read yet, and what the kernel
    // holds when the server's last write is done takes it longer than the
    // close timeout to read.
    assert.deepEqual(await readSlowly(client, MESSAGES, true), {
      code: 1000,
      reason: "done",
    });
    assert.deepEqual(await closed, {
      code: 1000,
      reason: "done",
      wasClean: true,
    });
  },
);

Deno.test(
  "Socket.close() after a large backlog to Duplex's own client reading slowly: the client answers the close frame before it reads the server's FIN, and both sides close cleanly",
  async () => {
    const MESSAGES = 128;
    const { server, closed } = backlogThenClose(MESSAGES, 500);
    await using _ = server;
    await using client = await connect(wsUrl(server.addr));
    let i = 0;
    for await (const message of client) {
      assert.ok(message instanceof Uint8Array);
      assert.ok(message.every((byte) => byte === i), `message ${i}`);
      if (++i % 16 === 0) await delay(150);
    }
    assert.equal(i, MESSAGES);
    assert.deepEqual(await client.closed, {
      code: 1000,
      reason: "done",
      wasClean: true,
    });
    assert.deepEqual(await closed, {
      code: 1000,
      reason: "done",
      wasClean: true,
    });
  },
);

Deno.test(
  "A peer that closes first while a large backlog is still being written to it, and reads it slowly, gets all of it and the close answer behind it",
  async () => {
    const MESSAGES = 128;
    const closed = Promise.withResolvers<CloseInfo>();
    await using server = serve(
      { ...LOCAL, closeTimeout: 200 },
      async (socket) => {
        for (let i = 0; i < MESSAGES; i++) {
          socket.trySend(new Uint8Array(64 * 1024).fill(i));
        }
        closed.resolve(await socket.closed);
      },
    );
    await using client = await NpmClient.connect(wsUrl(server.addr));
    client.ws.close(1000, "client done");
    assert.deepEqual(await readSlowly(client, MESSAGES, false), {
      code: 1000,
      reason: "client done",
    });
    assert.deepEqual(await withTimeout(closed.promise, DEADLINE, "closed"), {
      code: 1000,
      reason: "client done",
      wasClean: true,
    });
  },
);

Deno.test(
  "Socket.close() after a large backlog still lets go of a peer that reads it all but never answers, after at most four close timeouts more",
  async () => {
    const { server, closed } = backlogThenClose(32, 100);
    await using _ = server;
    using peer = await rawHandshake(server.addr);
    const close = await peer.readClose();
    assert.equal(close.before.length, 32);
    assert.deepEqual([close.code, close.reason], [1000, "done"]);
    // Never answer: our side ended (FIN) first, then the connection.
    await peer.readToEof();
    assert.deepEqual(await closed, { code: 1006, reason: "", wasClean: false });
  },
);

Deno.test("serve() closes with 1000 when the handler returns", async () => {
  const tracker = new SocketTracker();
  await using server = serve(
    LOCAL,
    tracker.wrap(async (socket: Socket) => {
      await socket.send("only this");
    }),
  );
  await using client = await NpmClient.connect(wsUrl(server.addr));
  const port = client.port;
  assert.equal(await client.next(), "only this");
  const seen = await withTimeout(client.closed, DEADLINE, "close event");
  assert.equal(seen.code, 1000);
  assert.deepEqual(await tracker.closed(port), {
    code: 1000,
    reason: "",
    wasClean: true,
  });
});

Deno.test(
  "serve() closes with 1011 and an empty reason when the handler throws, and logs it",
  async () => {
    const events: ServerLogEvent[] = [];
    const failure = new Error("handler exploded");
    await using server = serve(
      { ...LOCAL, logger: (e) => events.push(e) },
      () => {
        throw failure;
      },
    );
    await using client = await NpmClient.connect(wsUrl(server.addr));
    const seen = await withTimeout(client.closed, DEADLINE, "close event");
    assert.deepEqual(seen, { code: 1011, reason: "" });
    const logged = events.filter((event) => event.type === "handler-error");
    assert.equal(logged.length, 1);
    assert.equal(
      logged[0].type === "handler-error" && logged[0].error,
      failure,
    );
  },
);

Deno.test("serve() closes with 1011 and logs a handler that throws what instanceof cannot look at (a revoked Proxy), without an unhandled rejection, and serves on", async () => {
  const events: ServerLogEvent[] = [];
  await using server = serve(
    { ...LOCAL, logger: (event) => events.push(event) },
    async (socket) => {
      if (socket.url.pathname === "/echo") return await echo(socket);
      const { proxy, revoke } = Proxy.revocable({}, {});
      revoke();
      throw proxy;
    },
  );
  await using client = await NpmClient.connect(wsUrl(server.addr));
  const seen = await withTimeout(client.closed, DEADLINE, "close event");
  assert.equal(seen.code, 1011);
  assert.deepEqual(
    events.filter((event) => event.type === "handler-error").length,
    1,
  );
  await using other = await NpmClient.connect(wsUrl(server.addr, "/echo"));
  assert.equal(await other.roundTrip("still serving"), "still serving");
});

Deno.test("serve()'s default logger says a handler threw what cannot be shown (a revoked Proxy), rather than that the logger threw", async () => {
  const printed: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => void printed.push(args.join(" "));
  try {
    await using server = serve(LOCAL, () => {
      const { proxy, revoke } = Proxy.revocable({}, {});
      revoke();
      throw proxy;
    });
    await using client = await NpmClient.connect(wsUrl(server.addr));
    assert.equal(
      (await withTimeout(client.closed, DEADLINE, "close event")).code,
      1011,
    );
  } finally {
    console.error = original;
  }
  assert.equal(printed.length, 1, printed.join("\n"));
  assert.match(
    printed[0],
    /^duplex: handler-error: a value that cannot be shown/,
  );
});

Deno.test(
  "serve() closes with 1011 when an async handler rejects",
  async () => {
    const events: ServerLogEvent[] = [];
    await using server = serve(
      { ...LOCAL, logger: (e) => events.push(e) },
      async (socket) => {
        await socket.send("before");
        throw new TypeError("later");
      },
    );
    await using client = await NpmClient.connect(wsUrl(server.addr));
    assert.equal(await client.next(), "before");
    const seen = await withTimeout(client.closed, DEADLINE, "close event");
    assert.equal(seen.code, 1011);
    assert.ok(events.some((event) => event.type === "handler-error"));
  },
);

Deno.test(
  "Socket.closed resolves 1005 when Deno's WebSocket closes without a code",
  async () => {
    const tracker = new SocketTracker();
    const port = Promise.withResolvers<number>();
    await using server = serve(
      LOCAL,
      tracker.wrap(async (socket) => {
        port.resolve(socket.remoteAddr.port);
        await echo(socket);
      }),
    );
    await using client = await DenoClient.connect(wsUrl(server.addr));
    const seen = await client.close();
    assert.equal(seen.wasClean, true);
    const info = await tracker.closed(
      await withTimeout(port.promise, DEADLINE, "the handler"),
    );
    assert.deepEqual(info, { code: 1005, reason: "", wasClean: true });
  },
);

Deno.test(
  "Socket.close() and a peer close at the same moment both end cleanly",
  async () => {
    const result = Promise.withResolvers<CloseInfo>();
    const go = Promise.withResolvers<void>();
    await using server = serve(LOCAL, async (socket) => {
      await go.promise;
      result.resolve(await socket.close(4001, "server"));
    });
    await using client = await NpmClient.connect(wsUrl(server.addr));
    client.ws.close(4000, "client");
    go.resolve();
    const seen = await withTimeout(client.closed, DEADLINE, "close event");
    const info = await withTimeout(result.promise, DEADLINE, "close()");
    assert.ok([4000, 4001].includes(seen.code), `client saw ${seen.code}`);
    assert.ok([4000, 4001].includes(info.code), `server saw ${info.code}`);
    assert.equal(info.wasClean, true);
  },
);

for (const last of ["a close frame", "a protocol error"] as const) {
  Deno.test(
    `serve() closes the TCP connection within closeTimeout after ${last} from a peer that stopped reading (RFC 6455 §7.1.1, §7.1.7)`,
    async () => {
      const tracker = new SocketTracker();
      await using server = serve(
        { ...LOCAL, closeTimeout: 200 },
        tracker.wrap(async (socket) => {
          // More than the kernel's buffers hold for a peer that never
          // reads: the write stalls.
          socket.send(new Uint8Array(32 * 1024 * 1024)).catch(() => {});
          await socket.closed;
        }),
      );
      using peer = await rawHandshake(server.addr);
      const socket = await tracker.socket(peer.port);
      await withTimeout(
        (async () => {
          while (socket.bufferedAmount === 0) {
            await new Promise((resolve) => setTimeout(resolve, 10));
          }
        })(),
        DEADLINE,
        "the large write to start",
      );
      await peer.write(
        last === "a close frame"
          ? frame(OP.close, closePayload(1000, "bye"))
          : frame(OP.text, "unmasked", { mask: false }),
      );
      // The close echo (or the 1002) waits behind the stalled write; the
      // connection must not.
      const info = await withTimeout(
        socket.closed,
        DEADLINE,
        "the socket to close while its write is stalled",
      );
      assert.equal(info.wasClean, false, "our close frame never left");
      await withTimeout(
        (async () => {
          while (server.connections > 0) {
            await new Promise((resolve) => setTimeout(resolve, 10));
          }
        })(),
        DEADLINE,
        "the server to drop the connection",
      );
    },
  );
}

Deno.test("close() from a loop that is busy for a moment loses none of the messages the peer sent before its close frame", async () => {
  const count = 3000; // several times maxQueuedMessages (1024)
  const received: string[] = [];
  const done = Promise.withResolvers<CloseInfo>();
  await using server = serve(LOCAL, async (socket) => {
    for await (const message of socket) {
      received.push(message as string);
      if (received.length === 1) {
        socket.close(1000, "enough").catch(() => {});
        await new Promise((resolve) => setTimeout(resolve, 50)); // busy
      }
    }
    done.resolve(await socket.closed);
  });
  await using client = await NpmClient.connect(wsUrl(server.addr));
  for (let i = 0; i < count; i++) client.send(`m${i}`);
  const info = await withTimeout(done.promise, DEADLINE, "the close");
  assert.equal(received.length, count);
  assert.equal(received.at(-1), `m${count - 1}`);
  assert.equal(info.wasClean, true);
});

Deno.test("close() from a loop that then stops taking messages still completes the closing handshake, long before closeTimeout", async () => {
  const closed = Promise.withResolvers<CloseInfo>();
  await using server = serve(
    // Waiting for the close timeout would outlast the test's deadline.
    { ...LOCAL, closeTimeout: 60_000 },
    async (socket) => {
      socket.closed.then(closed.resolve);
      let taken = 0;
      for await (const _ of socket) {
        if (++taken === 1) socket.close(4000, "stop").catch(() => {});
        else break; // one more after close(), then no more
      }
    },
  );
  await using client = await NpmClient.connect(wsUrl(server.addr));
  for (let i = 0; i < 5000; i++) client.send(`m${i}`);
  const info = await withTimeout(closed.promise, DEADLINE, "the close");
  assert.equal(info.code, 4000);
  assert.equal(info.wasClean, true, "the peer's close frame was read");
});

Deno.test("the answers to messages that arrive with the peer's close frame go out before the server's close frame (npm:ws sends, then closes at once)", async () => {
  await using server = serve(LOCAL, echo);
  for (let round = 0; round < 5; round++) {
    await using client = await NpmClient.connect(wsUrl(server.addr));
    client.send("hello");
    client.send(Uint8Array.of(1, 2, 3));
    const closing = client.close(4000, "done");
    assert.equal(await client.next(), "hello", `round ${round}`);
    assertBytes(await client.next(), Uint8Array.of(1, 2, 3));
    // The echo carries the reason too (RFC 6455 §5.5.1 asks for the code).
    assert.deepEqual(await closing, { code: 4000, reason: "done" });
  }
});

Deno.test("the answers to messages that arrive with a protocol error go out before the failing close frame (Autobahn 5.15), and nothing after the error is taken", async () => {
  const closed = Promise.withResolvers<CloseInfo>();
  const received: unknown[] = [];
  await using server = serve(LOCAL, async (socket) => {
    socket.closed.then(closed.resolve);
    for await (const message of socket) {
      received.push(message);
      await socket.send(message);
    }
  });
  const peer = await rawHandshake(server.addr);
  // One write: two messages, a fragmented one among them, then a
  // continuation with nothing to continue, then a message after the error.
  await peer.write(concat(
    frame(OP.text, "Hello, world!"),
    frame(OP.text, "fragment1", { fin: false }),
    frame(OP.continuation, "fragment2"),
    frame(OP.continuation, "fragment3"),
    frame(OP.text, "after the error"),
  ));
  const close = await withTimeout(peer.readClose(), DEADLINE, "the close");
  assert.deepEqual(
    close.before.map((f) => [f.opcode, new TextDecoder().decode(f.payload)]),
    [[OP.text, "Hello, world!"], [OP.text, "fragment1fragment2"]],
  );
  assert.equal(close.code, 1002);
  assert.equal(close.reason, "UNEXPECTED_CONTINUATION");
  // The server closes the TCP connection without waiting for our answer.
  assert.equal(
    (await withTimeout(peer.readToEof(), DEADLINE, "EOF")).length,
    0,
  );
  const info = await withTimeout(closed.promise, DEADLINE, "closed");
  assert.equal(info.code, 1002);
  assert.equal(info.wasClean, false);
  assert.deepEqual(received, ["Hello, world!", "fragment1fragment2"]);
  peer.close();
});

Deno.test("after a protocol error nothing more is read while the failing close frame waits, and close() meanwhile sends that 1002, not its own code", async () => {
  const closed = Promise.withResolvers<CloseInfo>();
  await using server = serve(LOCAL, async (socket) => {
    socket.closed.then(closed.resolve);
    for await (const _ of socket) {
      await delay(300); // a slow handler: the close frame waits for it
      await socket.close(1000, "bye");
    }
  });
  const peer = await rawHandshake(server.addr);
  await peer.write(concat(
    frame(OP.text, "a"),
    frame(OP.text, "b"),
    frame(0x3, "reserved opcode"),
  ));
  // A flood after the error: 64 MiB that the server must not read.
  const flood = new Uint8Array(1 << 20);
  const flooding = (async () => {
    for (let i = 0; i < 64; i++) await peer.write(flood).catch(() => {});
  })();
  const close = await withTimeout(peer.readClose(), DEADLINE, "the close");
  assert.equal(close.code, 1002);
  assert.equal(close.reason, "RESERVED_OPCODE");
  const info = await withTimeout(closed.promise, DEADLINE, "closed");
  assert.equal(info.code, 1002);
  const read = server.stats().bytesReceived;
  assert.ok(read < 4 << 20, `read ${read} bytes after the error`);
  peer.close();
  await flooding;
});

Deno.test("a peer that half-closes after its protocol error still gets the answers to its messages, then the failing close frame", async () => {
  await using server = serve(LOCAL, async (socket) => {
    for await (const message of socket) {
      await delay(50);
      await socket.send(`re: ${message}`);
    }
  });
  const peer = await rawHandshake(server.addr);
  await peer.write(concat(frame(OP.text, "a"), frame(0x3, "reserved")));
  await peer.conn.closeWrite();
  const close = await withTimeout(peer.readClose(), DEADLINE, "the close");
  assert.deepEqual(
    close.before.map((f) => new TextDecoder().decode(f.payload)),
    ["re: a"],
  );
  assert.equal(close.code, 1002);
  peer.close();
});

Deno.test("a handler that takes a while over each message still answers all of them before the close handshake ends", async () => {
  const closed = Promise.withResolvers<CloseInfo>();
  await using server = serve(LOCAL, async (socket) => {
    socket.closed.then(closed.resolve);
    for await (const message of socket) {
      await new Promise((resolve) => setTimeout(resolve, 30));
      await socket.send(`re: ${message}`);
    }
  });
  await using client = await NpmClient.connect(wsUrl(server.addr));
  for (const message of ["a", "b", "c"]) client.send(message);
  const closing = client.close(1000);
  for (const message of ["a", "b", "c"]) {
    assert.equal(await client.next(), `re: ${message}`);
  }
  assert.equal((await closing).code, 1000);
  assert.deepEqual(await closed.promise, {
    code: 1000,
    reason: "",
    wasClean: true,
  });
});

Deno.test("a handler that never takes messages does not hold the answer to the peer's close frame beyond a moment", async () => {
  const closed = Promise.withResolvers<CloseInfo>();
  await using server = serve(
    { ...LOCAL, closeTimeout: 60_000 },
    async (socket) => {
      await socket.send("welcome");
      closed.resolve(await socket.closed);
    },
  );
  await using client = await NpmClient.connect(wsUrl(server.addr));
  assert.equal(await client.next(), "welcome");
  client.send("ignored");
  const started = performance.now();
  assert.equal((await client.close(1000)).code, 1000);
  // At most a second of patience, far from the close timeout.
  const waited = performance.now() - started;
  assert.ok(waited < 5_000, `answered after ${waited} ms`);
  assert.equal((await closed.promise).wasClean, true);
});

Deno.test("connect(): a client answers what the server sent before its close frame, and the server receives it", async () => {
  const received = Promise.withResolvers<unknown[]>();
  await using server = serve(LOCAL, async (socket) => {
    await socket.send("question");
    socket.close(1000).catch(() => {});
    // Messages keep arriving until the client's close frame.
    const got: unknown[] = [];
    for await (const message of socket) got.push(message);
    received.resolve(got);
  });
  const client = await connect(wsUrl(server.addr));
  for await (const message of client) await client.send(`answer to ${message}`);
  assert.deepEqual(
    await withTimeout(received.promise, DEADLINE, "the answer"),
    ["answer to question"],
  );
  assert.equal((await client.closed).wasClean, true);
});

Deno.test("Socket.terminate() drops the connection at once without a closing handshake: the peer sees 1006, and so does closed", async () => {
  const info = Promise.withResolvers<unknown>();
  let buffered = -1;
  let after: unknown[] = [];
  await using server = serve(LOCAL, async (socket) => {
    for await (const _ of socket) {
      socket.send("never sent"); // queued, then dropped with the connection
      socket.terminate();
      socket.terminate(); // again: nothing more happens
      // Closing: a send now is refused, not queued for nothing.
      after = [
        socket.state,
        socket.trySend("late"),
        await socket.send("late").catch((error) => error.constructor),
      ];
    }
    info.resolve(await socket.closed);
    buffered = socket.bufferedAmount;
  });
  await using client = await NpmClient.connect(wsUrl(server.addr));
  client.send("go");
  const closed = await withTimeout(client.closed, DEADLINE, "the drop");
  assert.equal(closed.code, 1006);
  assert.deepEqual(await info.promise, {
    code: 1006,
    reason: "",
    wasClean: false,
  });
  assert.equal(buffered, 0, "what was dropped is not counted as queued");
  assert.deepEqual(after, ["closing", "closed", ConnectionClosedError]);
});

Deno.test("bufferedAmount is 0 once the socket has closed, though it was cut off (backpressure) with output still queued for a peer that reads nothing", async () => {
  const after = Promise.withResolvers<[number, CloseInfo]>();
  await using server = serve({
    ...LOCAL,
    sendHighWaterMark: 16 * 1024,
    maxBackpressure: 64 * 1024,
    backpressurePolicy: "close",
  }, async (socket) => {
    while (socket.trySend(new Uint8Array(256 * 1024)) !== "dropped") {
      await delay(1);
    }
    const info = await socket.closed;
    after.resolve([socket.bufferedAmount, info]);
  });
  using _peer = await rawHandshake(server.addr); // reads nothing
  const [buffered, info] = await withTimeout(after.promise, DEADLINE, "closed");
  assert.equal(info.code, 1008);
  assert.equal(buffered, 0);
});

Deno.test("a handler ended by a ConnectionClosedError from another socket's send is logged and its socket closed with 1011", async () => {
  const events: ServerLogEvent[] = [];
  const sockets: Socket[] = [];
  await using server = serve(
    { ...LOCAL, logger: (e) => events.push(e) },
    async (socket) => {
      sockets.push(socket);
      for await (const message of socket) {
        for (const other of sockets) {
          if (other !== socket) await other.send(message);
        }
      }
    },
  );
  await using leaving = await NpmClient.connect(wsUrl(server.addr));
  await using sender = await NpmClient.connect(wsUrl(server.addr));
  await leaving.close(1000);
  await withTimeout(sockets[0].closed, DEADLINE, "the first socket closed");
  sender.send("hello");
  const seen = await withTimeout(sender.closed, DEADLINE, "close event");
  assert.equal(seen.code, 1011);
  const logged = events.filter((event) => event.type === "handler-error");
  assert.equal(logged.length, 1);
  assert.ok(logged[0].type === "handler-error");
  // It says what happened and what to do; the original is its cause.
  const error = logged[0].error as Error;
  assert.ok(error.cause instanceof ConnectionClosedError);
  assert.equal(
    error.message,
    `The handler ended on a ConnectionClosedError from another socket (peer 127.0.0.1:${leaving.port}): "Cannot send: the WebSocket is closing or closed (code 1000)"; its own socket closes with 1011. To reach other sockets without failing this one, use trySend() or publish(), or catch the error`,
  );
});

Deno.test("a handler whose own streamed message the peer's close cut short ends quietly: no handler-error, the close is answered with the peer's code", async () => {
  const events: ServerLogEvent[] = [];
  const ended = Promise.withResolvers<unknown>();
  await using server = serve(
    { ...LOCAL, streamMessages: true, logger: (e) => events.push(e) },
    async (socket) => {
      try {
        for await (const { readable } of socket.streams()) {
          for await (const _ of readable) { /* read on */ }
        }
      } catch (error) {
        ended.resolve(error);
        throw error;
      }
    },
  );
  using peer = await rawHandshake(server.addr);
  await peer.write(frame(OP.binary, new Uint8Array(10), { fin: false }));
  await peer.write(frame(OP.close, closePayload(1000)));
  assert.ok(
    await withTimeout(ended.promise, DEADLINE, "the handler") instanceof
      ConnectionClosedError,
  );
  assert.equal((await peer.readClose()).code, 1000);
  assert.deepEqual(
    events.filter((event) => event.type === "handler-error"),
    [],
  );
});
