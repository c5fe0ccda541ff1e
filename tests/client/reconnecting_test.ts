import assert from "node:assert/strict";
import {
  ClientHandshakeError,
  type Message,
  reconnecting,
  serve,
  type Socket,
} from "../../mod.ts";
import { closePayload, deadline, frame, rawServer } from "./_helpers.ts";

async function nextMessage(socket: Socket): Promise<Message> {
  const { value, done } = await deadline(
    socket[Symbol.asyncIterator]().next(),
    5_000,
    "a message",
  );
  assert.equal(done, false);
  return value as Message;
}

const FAST = { initialDelay: 5, maxDelay: 20, random: () => 0 };

function echoServer() {
  return serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
    for await (const message of socket) await socket.send(message);
  });
}

Deno.test("reconnecting connects again after the server drops the connection", async () => {
  let accepted = 0;
  const server = rawServer(async (peer) => {
    accepted++;
    await peer.accept();
    if (accepted === 1) return; // Dropped: TCP closed, no close frame.
    const message = await peer.readFrame();
    await peer.write(frame(1, message.payload));
    await peer.write(frame(8, closePayload(1000)));
    await peer.readFrame();
  });
  const closes: number[] = [];
  let echo: Message | undefined;
  await deadline(
    (async () => {
      for await (const socket of reconnecting(server.url, FAST)) {
        if (accepted === 1) {
          closes.push((await socket.closed).code);
          continue;
        }
        await socket.send("after the drop");
        echo = await nextMessage(socket);
        closes.push((await socket.closed).code);
        break;
      }
    })(),
    5_000,
    "reconnection",
  );
  await server.close();
  assert.deepEqual(server.errors, []);
  assert.equal(accepted, 2);
  assert.deepEqual(closes, [1006, 1000]);
  assert.equal(echo, "after the drop");
});

Deno.test("reconnecting retries failed attempts until one succeeds", async () => {
  let attempts = 0;
  const server = rawServer(async (peer) => {
    attempts++;
    if (attempts < 3) {
      await peer.readHead();
      await peer.write(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy",
      );
      return;
    }
    await peer.accept();
    await peer.write(frame(8, closePayload(1000)));
    await peer.readFrame();
  });
  let sockets = 0;
  const retries: [unknown, number][] = [];
  const options = {
    ...FAST,
    onRetry: (error: unknown, delay: number) => retries.push([error, delay]),
  };
  await deadline(
    (async () => {
      for await (const socket of reconnecting(server.url, options)) {
        sockets++;
        await socket.closed;
        break;
      }
    })(),
    5_000,
    "retries",
  );
  await server.close();
  assert.equal(attempts, 3);
  assert.equal(sockets, 1);
  assert.equal(retries.length, 2, "onRetry heard of both failures");
  for (const [error, delay] of retries) {
    assert.ok(error instanceof ClientHandshakeError && error.status === 503);
    assert.ok(delay >= 0 && delay <= FAST.maxDelay, String(delay));
  }
});

Deno.test("reconnecting ends at once when onRetry aborts its signal, rather than wait out the delay it was told", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close(); // refused from now on
  const controller = new AbortController();
  const delays: number[] = [];
  await deadline(
    (async () => {
      for await (
        const _ of reconnecting(`ws://127.0.0.1:${port}/`, {
          initialDelay: 60_000,
          maxDelay: 60_000,
          signal: controller.signal,
          onRetry: (_error, delay) => {
            delays.push(delay);
            controller.abort(); // the user's own give-up rule
          },
        })
      ) {
        assert.fail("nothing listens");
      }
    })(),
    5_000,
    "the end of the iteration",
  );
  assert.equal(delays.length, 1);
  assert.ok(delays[0] >= 30_000, String(delays[0])); // told to wait long
});

Deno.test("reconnecting waits as long as a 429 or 503 rejection's Retry-After asks, up to maxDelay, and ignores it on other statuses", async () => {
  const answers = [
    "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n",
    "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3600\r\n",
    "HTTP/1.1 500 Internal Server Error\r\nRetry-After: 3600\r\n",
  ];
  const times: number[] = [];
  const server = rawServer(async (peer) => {
    times.push(performance.now());
    const answer = answers[times.length - 1];
    if (answer === undefined) {
      await peer.accept();
      await peer.write(frame(8, closePayload(1000)));
      await peer.readFrame();
      return;
    }
    await peer.readHead();
    await peer.write(`${answer}Content-Length: 0\r\n\r\n`);
  });
  await deadline(
    (async () => {
      const options = { initialDelay: 5, maxDelay: 1500, random: () => 0 };
      for await (const socket of reconnecting(server.url, options)) {
        await socket.closed;
        break;
      }
    })(),
    10_000,
    "the retries",
  );
  await server.close();
  assert.equal(times.length, 4);
  const waits = times.slice(1).map((time, i) => time - times[i]);
  // Timers never fire early: Retry-After: 1 is a second at least; 3600 is
  // cut to maxDelay; a 500's Retry-After is not the server asking for time.
  assert.ok(waits[0] >= 990, `waited ${waits[0]} ms after Retry-After: 1`);
  assert.ok(waits[1] >= 1490, `waited ${waits[1]} ms after Retry-After: 3600`);
  assert.ok(waits[2] < 1490, `waited ${waits[2]} ms after a 500`);
});

// A server that accepts and closes at once is backed off from as from failed
// attempts; with initialDelay 0, from 50 ms. random() = 0 halves each wait,
// so they are at least first, 2 × first, 4 × first...; without backoff each
// would be about the first.
for (
  const [initialDelay, first] of [[20, 10], [0, 50]] as const
) {
  Deno.test(`reconnecting with initialDelay ${initialDelay} backs off from a server that accepts and closes at once: waits from ${first} ms, doubling`, async () => {
    const times: number[] = [];
    const server = rawServer(async (peer) => {
      times.push(performance.now());
      await peer.accept();
      await peer.write(frame(8, closePayload(4000)));
      await peer.readFrame().catch(() => {});
    });
    let sockets = 0;
    await deadline(
      (async () => {
        const options = { initialDelay, maxDelay: 5_000, random: () => 0 };
        for await (const socket of reconnecting(server.url, options)) {
          await socket.closed;
          if (++sockets === 5) break;
        }
      })(),
      10_000,
      "five connections",
    );
    await server.close();
    const waits = times.slice(1).map((time, i) => time - times[i]);
    waits.forEach((wait, i) => {
      assert.ok(wait >= first * 2 ** i - 1, `wait ${i}: ${wait} ms`);
    });
  });
}

Deno.test("reconnecting gives up after maxRetries consecutive failures", async () => {
  let attempts = 0;
  const server = rawServer(async (peer) => {
    attempts++;
    await peer.readHead();
    await peer.write("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
  });
  await assert.rejects(
    deadline(
      (async () => {
        for await (
          const _ of reconnecting(server.url, { ...FAST, maxRetries: 2 })
        ) {
          assert.fail("no connection should open");
        }
      })(),
      5_000,
      "giving up",
    ),
    { name: "ClientHandshakeError", status: 502 },
  );
  await server.close();
  assert.equal(attempts, 3);
});

Deno.test("reconnecting does not retry a 4xx rejection", async () => {
  let attempts = 0;
  const server = rawServer(async (peer) => {
    attempts++;
    await peer.readHead();
    await peer.write("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  });
  await assert.rejects(
    (async () => {
      for await (const _ of reconnecting(server.url, FAST)) { /* never */ }
    })(),
    (error) => error instanceof ClientHandshakeError && error.status === 404,
  );
  await server.close();
  assert.equal(attempts, 1);
});

Deno.test("reconnecting does not retry what retrying cannot fix: a 200 page, a redirect, a server that is not a WebSocket server (or not HTTP, with or without a line feed), a status past 599; it retries a connection closed mid-handshake", async () => {
  const answers: [string, string][] = [
    ["200", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"],
    [
      "302",
      "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n",
    ],
    [
      "INVALID_ACCEPT",
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n",
    ],
    ["MALFORMED_RESPONSE", "SSH-2.0-OpenSSH_9.6\r\n"],
    ["MALFORMED_RESPONSE", "not a web server"], // then closed, no line feed
    ["MALFORMED_RESPONSE", "HTTP/1.1 700 Odd\r\nContent-Length: 0\r\n\r\n"],
  ];
  for (const [expected, answer] of answers) {
    let attempts = 0;
    const server = rawServer(async (peer) => {
      attempts++;
      await peer.readHead();
      await peer.write(answer);
      // (An answer with no line feed is closed at once: the client waits.)
      if (answer.includes("\n")) await peer.readEof().catch(() => {});
    });
    await assert.rejects(
      deadline(
        (async () => {
          for await (const _ of reconnecting(server.url, FAST)) { /* never */ }
        })(),
        5_000,
        expected,
      ),
      (error) =>
        error instanceof ClientHandshakeError &&
        (error.code === expected || String(error.status) === expected),
    );
    await server.close();
    assert.equal(attempts, 1, expected);
  }
  let attempts = 0;
  const server = rawServer(async (peer) => {
    if (++attempts < 3) return; // closed before any answer
    await peer.accept();
    await peer.write(frame(8, closePayload(1000)));
    await peer.readFrame();
  });
  for await (const socket of reconnecting(server.url, FAST)) {
    await socket.closed;
    break;
  }
  await server.close();
  assert.equal(attempts, 3);
});

Deno.test("reconnecting does not retry TLS that cannot work: a ws:// URL to a wss:// server (malformed response), a wss:// URL to a ws:// server, an untrusted certificate (Deno.errors.InvalidData)", async () => {
  const fixtures = new URL("../fixtures/", import.meta.url);
  const tls = {
    cert: await Deno.readTextFile(new URL("cert.pem", fixtures)),
    key: await Deno.readTextFile(new URL("key.pem", fixtures)),
  };
  await using secure = serve(
    { port: 0, hostname: "127.0.0.1", ...tls },
    () => {},
  );
  await using plain = serve({ port: 0, hostname: "127.0.0.1" }, () => {});
  const cases: [string, (error: unknown) => boolean][] = [
    [
      `ws://127.0.0.1:${secure.addr.port}/`,
      (error) =>
        error instanceof ClientHandshakeError &&
        error.code === "MALFORMED_RESPONSE" &&
        /is it a wss:\/\/ server\?/.test(error.message),
    ],
    [
      `wss://127.0.0.1:${plain.addr.port}/`,
      (error) =>
        error instanceof Deno.errors.InvalidData &&
        /InvalidContentType/.test(error.message),
    ],
    // The test certificate, not trusted without caCerts.
    [
      `wss://127.0.0.1:${secure.addr.port}/`,
      (error) =>
        error instanceof Deno.errors.InvalidData &&
        /invalid peer certificate/.test(error.message),
    ],
  ];
  for (const [url, expected] of cases) {
    const retried: unknown[] = [];
    await assert.rejects(
      deadline(
        (async () => {
          for await (
            const _ of reconnecting(url, {
              ...FAST,
              onRetry: (error) => void retried.push(error),
            })
          ) { /* never */ }
        })(),
        5_000,
        url,
      ),
      expected,
    );
    assert.deepEqual(retried, [], url);
  }
});

Deno.test("reconnecting retries a fatal TLS alert from the server (internal_error, as from an overloaded terminator): it may pass next time", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const alerts = (async () => {
    for await (const conn of listener) {
      try {
        await conn.read(new Uint8Array(4096)); // the ClientHello
        await conn.write(new Uint8Array([0x15, 0x03, 0x03, 0x00, 0x02, 2, 80]));
      } catch {
        /* the client left */
      } finally {
        conn.close();
      }
    }
  })();
  const retried: unknown[] = [];
  try {
    await assert.rejects(
      deadline(
        (async () => {
          for await (
            const _ of reconnecting(
              `wss://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/`,
              {
                ...FAST,
                maxRetries: 2,
                onRetry: (error) => void retried.push(error),
              },
            )
          ) { /* never */ }
        })(),
        5_000,
        "the retries",
      ),
      (error) =>
        error instanceof Deno.errors.InvalidData &&
        /fatal alert: InternalError/.test(error.message),
    );
  } finally {
    listener.close();
    await alerts.catch(() => {});
  }
  assert.equal(retried.length, 2);
});

Deno.test("reconnecting waits for the close of a socket whose loop aborted in its body, then ends: the loop sees it closed", async () => {
  await using server = echoServer();
  const controller = new AbortController();
  let last: Socket | undefined;
  await deadline(
    (async () => {
      for await (
        const socket of reconnecting(`ws://127.0.0.1:${server.addr.port}`, {
          ...FAST,
          signal: controller.signal,
        })
      ) {
        last = socket;
        controller.abort(); // and on to the next socket, without iterating
      }
    })(),
    5_000,
    "the end",
  );
  assert.equal(last?.state, "closed");
  assert.deepEqual(await last?.closed, {
    code: 1000,
    reason: "",
    wasClean: true,
  });
});

Deno.test("reconnecting ends at once when its signal aborts while the socket the loop left is still closing (a server that never answers the close)", async () => {
  const release = Promise.withResolvers<void>();
  const server = rawServer(async (peer) => {
    await peer.accept();
    await peer.readFrame(); // our close, never answered
    await release.promise; // then the connection is dropped
  });
  const controller = new AbortController();
  const sockets = reconnecting(server.url, {
    ...FAST,
    closeTimeout: 60_000,
    signal: controller.signal,
  })[Symbol.asyncIterator]();
  const first = await deadline(sockets.next(), 5_000, "the first socket");
  assert.equal(first.done, false);
  const next = sockets.next(); // closes the first: no answer comes
  setTimeout(() => controller.abort(), 100);
  assert.deepEqual(
    await deadline(next, 5_000, "the end, not the close timeout"),
    { value: undefined, done: true },
  );
  // The close goes on by itself; ended here by the server.
  release.resolve();
  await server.close();
  assert.equal((await first.value!.closed).code, 1006);
});

Deno.test("reconnecting stops and closes the open socket when its signal aborts", async () => {
  await using server = echoServer();
  const controller = new AbortController();
  let connections = 0;
  let info;
  await deadline(
    (async () => {
      for await (
        const socket of reconnecting(`ws://127.0.0.1:${server.addr.port}`, {
          ...FAST,
          signal: controller.signal,
        })
      ) {
        connections++;
        controller.abort();
        // The socket closes, so iterating it ends.
        for await (const _ of socket) { /* nothing */ }
        info = await socket.closed;
      }
    })(),
    5_000,
    "abort",
  );
  assert.equal(connections, 1);
  assert.deepEqual(info, { code: 1000, reason: "", wasClean: true });
});

Deno.test("reconnecting() throws for bad options when called, not at the first next()", () => {
  const url = "ws://127.0.0.1:1";
  const mistakes: [unknown, Error][] = [
    [
      { initialDelay: -1 },
      new RangeError(
        'Cannot reconnect: "initialDelay" must be a non-negative number, got -1',
      ),
    ],
    [
      { maxRetries: 1.5 },
      new RangeError(
        'Cannot reconnect: "maxRetries" must be a whole number (or Infinity), got 1.5',
      ),
    ],
    [
      { maxRetries: "3" },
      new TypeError(
        'Cannot reconnect: "maxRetries" must be a non-negative number, got string "3"',
      ),
    ],
    // What connect() would refuse on every attempt.
    [
      { maxPayload: -1 },
      new RangeError(
        'Cannot reconnect: "maxPayload" must be a positive integer, got -1',
      ),
    ],
    [
      { backpressurePolicy: "drop" },
      new TypeError(
        'Cannot reconnect: "backpressurePolicy" "drop" applies at "maxBackpressure", which a client leaves unbounded by default: set "maxBackpressure" too',
      ),
    ],
    [
      { protocols: ["a b"] },
      new TypeError(
        'Cannot reconnect: "protocols" must hold HTTP tokens, got "a b"',
      ),
    ],
    [
      { random: 5 },
      new TypeError(
        'Cannot reconnect: "random" must be a function, got number 5',
      ),
    ],
    [
      { onRetry: "log" },
      new TypeError(
        'Cannot reconnect: "onRetry" must be a function, got string "log"',
      ),
    ],
    [
      { signal: {} },
      new TypeError(
        'Cannot reconnect: "signal" must be an AbortSignal, got Object',
      ),
    ],
    [
      null,
      new TypeError(
        "Cannot reconnect: the options must be an object, got null",
      ),
    ],
    [
      { maxDelays: 5 },
      new TypeError(
        'Cannot reconnect: unknown option "maxDelays" (did you mean "maxDelay"?)',
      ),
    ],
  ];
  for (const [options, error] of mistakes) {
    // deno-lint-ignore no-explicit-any
    assert.throws(() => reconnecting(url, options as any), error);
  }
  assert.throws(
    () => reconnecting("ftp://127.0.0.1/"),
    new TypeError(
      'Cannot reconnect: "url" must use ws: or wss: (or http: or https:), got ftp:',
    ),
  );
});

Deno.test("reconnecting asks a headers function before each attempt, so an expired token is replaced", async () => {
  const seen: (string | null)[] = [];
  await using server = serve({
    port: 0,
    hostname: "127.0.0.1",
    onUpgrade: (request) => {
      seen.push(request.headers.get("authorization"));
    },
  }, async (socket) => {
    await socket.close(4000, "token expired");
  });
  let issued = 0;
  const url = `ws://127.0.0.1:${server.addr.port}`;
  const options = {
    ...FAST,
    headers: async () => {
      await Promise.resolve();
      return { authorization: `Bearer token-${++issued}` };
    },
  };
  let connections = 0;
  for await (const socket of reconnecting(url, options)) {
    await socket.closed;
    if (++connections === 3) break;
  }
  assert.deepEqual(seen, [
    "Bearer token-1",
    "Bearer token-2",
    "Bearer token-3",
  ]);
  const failing = reconnecting(url, {
    headers: () => {
      throw new Error("no token");
    },
  });
  await assert.rejects(failing.next(), /no token/);
});

Deno.test("reconnecting retries a 401 once with headers fetched anew when headers is a function; a second 401 in a row, or a 401 with fixed headers, ends it", async () => {
  const seen: (string | null)[] = [];
  let valid = "token-2";
  await using server = serve({
    port: 0,
    hostname: "127.0.0.1",
    onUpgrade: (request) => {
      const token = request.headers.get("authorization");
      seen.push(token);
      if (token !== `Bearer ${valid}`) {
        return new Response("expired", { status: 401 });
      }
    },
  }, async (socket) => {
    await socket.close(4000, "done");
  });
  const url = `ws://127.0.0.1:${server.addr.port}`;
  let issued = 0;
  const headers = () => ({ authorization: `Bearer token-${++issued}` });
  for await (const socket of reconnecting(url, { ...FAST, headers })) {
    assert.equal((await socket.closed).code, 4000);
    break;
  }
  assert.deepEqual(seen, ["Bearer token-1", "Bearer token-2"]);

  // A token source that keeps failing does not loop.
  seen.length = 0;
  valid = "never";
  await assert.rejects(
    (async () => {
      for await (const _ of reconnecting(url, { ...FAST, headers })) {
        // never
      }
    })(),
    (error) => error instanceof ClientHandshakeError && error.status === 401,
  );
  assert.deepEqual(seen, ["Bearer token-3", "Bearer token-4"]);

  // Fixed headers cannot change: the first 401 ends it.
  seen.length = 0;
  await assert.rejects(
    (async () => {
      for await (
        const _ of reconnecting(url, {
          ...FAST,
          headers: { authorization: "Bearer fixed" },
        })
      ) {
        // never
      }
    })(),
    (error) => error instanceof ClientHandshakeError && error.status === 401,
  );
  assert.deepEqual(seen, ["Bearer fixed"]);
});

Deno.test("reconnecting ends when its signal aborts while the headers function is still running", async () => {
  const controller = new AbortController();
  const iterator = reconnecting("ws://127.0.0.1:9/", {
    signal: controller.signal,
    headers: () => new Promise<HeadersInit>(() => {}), // never settles
  });
  const next = iterator.next();
  controller.abort();
  assert.deepEqual(await deadline(next, 5_000, "the iteration to end"), {
    done: true,
    value: undefined,
  });
});

Deno.test("reconnecting asks a URL function before each attempt, so a token in the query string is replaced; a 401 is retried once with the next URL", async () => {
  const seen: (string | null)[] = [];
  let valid = "token-1";
  await using server = serve({
    port: 0,
    hostname: "127.0.0.1",
    onUpgrade: (request) => {
      const token = new URL(request.url).searchParams.get("token");
      seen.push(token);
      if (token !== valid) return new Response(null, { status: 401 });
    },
  }, async (socket) => {
    await socket.close(4000, "token expired");
  });
  let issued = 0;
  const url = async () => {
    await Promise.resolve();
    return `ws://127.0.0.1:${server.addr.port}/?token=token-${++issued}`;
  };
  let connections = 0;
  for await (const socket of reconnecting(url, FAST)) {
    await socket.closed;
    // The next connection needs the token after the one the URL gives
    // next: that attempt gets a 401, and the one after it gets in.
    valid = `token-${issued + 2}`;
    if (++connections === 2) break;
  }
  assert.deepEqual(seen, ["token-1", "token-2", "token-3"]);
  const failing = reconnecting(() => {
    throw new Error("no token");
  });
  await assert.rejects(failing.next(), /no token/);
  assert.throws(
    // deno-lint-ignore no-explicit-any
    () => reconnecting(42 as any),
    new TypeError(
      "Cannot reconnect: the URL must be a string, a URL or a function returning one, got number 42",
    ),
  );
});
