import assert from "node:assert/strict";
import {
  HandshakeError,
  serve,
  type ServerLogEvent,
  type Socket,
  type UpgradeInfo,
} from "../../mod.ts";
import {
  DEADLINE,
  DenoClient,
  echo,
  encodeRequest,
  LOCAL,
  NpmClient,
  npmRejection,
  RawPeer,
  rawUpgrade,
  upgradeHeaders,
  waitUntil,
  withTimeout,
  wsUrl,
} from "./_helpers.ts";

/** Collects the server's log events. */
function logSink(): {
  events: ServerLogEvent[];
  logger: (event: ServerLogEvent) => void;
} {
  const events: ServerLogEvent[] = [];
  return { events, logger: (event) => events.push(event) };
}

/** Asserts the server still completes a handshake and echoes. */
async function assertStillServing(addr: Deno.NetAddr): Promise<void> {
  await using client = await NpmClient.connect(wsUrl(addr));
  assert.equal(await client.roundTrip("still here"), "still here");
}

// --- onUpgrade: rejecting -------------------------------------------------

for (const status of [401, 403] as const) {
  Deno.test(
    `serve({onUpgrade}) rejects with the hook's ${status} response, body and headers`,
    async () => {
      let handled = 0;
      await using server = serve({
        ...LOCAL,
        onUpgrade: () =>
          new Response("no", {
            status,
            headers: { "www-authenticate": 'Bearer realm="duplex"' },
          }),
      }, () => {
        handled++;
      });
      // A client we did not write.
      const seen = await npmRejection(wsUrl(server.addr));
      assert.equal(seen.status, status);
      assert.equal(seen.body, "no");
      assert.equal(seen.headers["www-authenticate"], 'Bearer realm="duplex"');
      assert.equal(seen.headers["content-length"], "2");
      // And byte for byte.
      const { peer, response } = await rawUpgrade(server.addr);
      using _ = peer;
      assert.equal(response.status, status);
      // The hook gave no statusText: the standard reason phrase is used.
      assert.equal(
        response.statusLine,
        `HTTP/1.1 ${status} ${status === 401 ? "Unauthorized" : "Forbidden"}`,
      );
      assert.equal(response.body, "no");
      assert.equal(response.headers.get("connection"), "close");
      await peer.readToEof();
      assert.equal(handled, 0, "the handler never runs for a rejection");
      assert.equal(server.stats().handshakeRejections[status], 2);
    },
  );
}

Deno.test("serve({onUpgrade}) accepts with any object of accept keys: a literal, a class instance, one made with Object.create", async () => {
  class Accepted {
    data = { user: "ann" };
  }
  const defaults = { data: { user: "bob" } };
  const decisions = [
    { data: { user: "eve" } },
    new Accepted(),
    Object.create(defaults),
    Object.freeze({ data: { user: "zoe" } }),
  ];
  let next = 0;
  const users: string[] = [];
  await using server = serve<{ user: string }>({
    ...LOCAL,
    onUpgrade: () => decisions[next++],
  }, async (socket) => {
    users.push(socket.data.user);
    await echo(socket);
  });
  for (let i = 0; i < decisions.length; i++) {
    await using client = await NpmClient.connect(wsUrl(server.addr));
    assert.equal(await client.roundTrip("hi"), "hi");
  }
  assert.deepEqual(users, ["eve", "ann", "bob", "zoe"]);
});

Deno.test("serve({onUpgrade}) that returns neither a Response, an accept object nor nothing lets nobody in: 500, and the logger says what it returned", async () => {
  const decisions: [unknown, RegExp][] = [
    [false, /onUpgrade must return a Response to reject, .* got boolean false/],
    [null, /got null/],
    [0, /got number 0/],
    ["deny", /got string "deny"/],
    [Promise.resolve(false), /got boolean false/],
    [{ status: 401 }, /unknown property "status"/],
    // Objects with no property of their own beyond an accept's: not one.
    [new Error("unauthorized"), /got Error/],
    [new Headers({ "x-reason": "no" }), /got Headers/],
    [[], /got Array/],
    // A Response of another implementation (npm:undici's): its headers
    // would have gone out with a 101.
    [
      new (class Response {
        get status() {
          return 401;
        }
        get headers() {
          return new Headers({ "www-authenticate": "Bearer" });
        }
      })(),
      /returned Response\d* with a status, but not this runtime's Response/,
    ],
    [
      new Response(null, { status: 101 }),
      /a Response with status 101: a rejection needs a final status/,
    ],
  ];
  let next = 0;
  let handled = 0;
  const log = logSink();
  await using server = serve({
    ...LOCAL,
    logger: log.logger,
    // As a JavaScript hook (or one typed `any`) could.
    onUpgrade: (() => decisions[next++][0]) as () => undefined,
  }, (socket) => {
    handled++;
    return echo(socket);
  });
  for (const [decision, message] of decisions) {
    const { peer, response } = await rawUpgrade(server.addr);
    using _ = peer;
    assert.equal(response.status, 500, String(decision));
    await peer.readToEof();
    const error = log.events.findLast((e) => e.type === "handler-error");
    assert.ok(error && "error" in error);
    assert.match((error.error as Error).message, message);
  }
  assert.equal(handled, 0);
});

Deno.test(
  "serve({onUpgrade}) sees the request and the handshake info",
  async () => {
    const seen: { url: string; auth: string | null; info: UpgradeInfo }[] = [];
    await using server = serve({
      ...LOCAL,
      protocols: ["chat"],
      onUpgrade: (request, info) => {
        seen.push({
          url: request.url,
          auth: request.headers.get("authorization"),
          info,
        });
      },
    }, echo);
    await using client = await NpmClient.connectWith(
      wsUrl(server.addr, "/room/7?x=1"),
      ["other", "chat"],
      { headers: { authorization: "Bearer t0k3n" } },
    );
    assert.equal(await client.roundTrip("hi"), "hi");
    assert.equal(seen.length, 1);
    const [{ url, auth, info }] = seen;
    assert.equal(url, `ws://127.0.0.1:${server.addr.port}/room/7?x=1`);
    assert.equal(auth, "Bearer t0k3n");
    assert.deepEqual(info.protocols, ["other", "chat"]);
    assert.equal(info.protocol, "chat", "the protocols option's choice");
    assert.equal(info.remoteAddr.port, client.port);
    assert.equal(info.remoteAddr.hostname, "127.0.0.1");
  },
);

// --- onUpgrade: accepting -------------------------------------------------

Deno.test(
  "serve({onUpgrade}) passes {data} to the handler as a typed socket.data",
  async () => {
    interface Session {
      user: string;
      roles: string[];
    }
    let handlerSocket: Socket<Session> | undefined;
    await using server = serve<Session>({
      ...LOCAL,
      onUpgrade: (request) => ({
        data: {
          user: new URL(request.url).searchParams.get("user") ?? "anonymous",
          roles: ["reader"],
        },
      }),
    }, async (socket) => {
      handlerSocket = socket;
      // Typed: `user` is a string, `roles` an array, without casts.
      const user: string = socket.data.user;
      await socket.send(`${user}:${socket.data.roles.join(",")}`);
      await socket.closed;
    });
    await using ann = await NpmClient.connect(wsUrl(server.addr, "/?user=ann"));
    assert.equal(await ann.next(), "ann:reader");
    await using bob = await NpmClient.connect(wsUrl(server.addr, "/?user=bob"));
    assert.equal(await bob.next(), "bob:reader");
    assert.deepEqual(handlerSocket?.data, { user: "bob", roles: ["reader"] });
  },
);

Deno.test("serve({onUpgrade}) sends a header value's bytes 0x80-0xFF as themselves, as npm:ws reads them (obs-text, not UTF-8)", async () => {
  await using server = serve({
    ...LOCAL,
    onUpgrade: () => ({ headers: [["x-name", "caf\u00e9"]] }),
  }, echo);
  await using client = await NpmClient.connectWith(wsUrl(server.addr), []);
  assert.equal(client.upgradeHeaders["x-name"], "caf\u00e9");
});

Deno.test("serve({onUpgrade}) sends a rejecting Response's header bytes 0x80-0xFF as themselves (obs-text, not UTF-8)", async () => {
  await using server = serve({
    ...LOCAL,
    onUpgrade: () =>
      new Response("no", { status: 403, headers: { "x-name": "caf\u00e9" } }),
  }, echo);
  const rejection = await npmRejection(wsUrl(server.addr));
  assert.equal(rejection.status, 403);
  assert.equal(rejection.headers["x-name"], "caf\u00e9");
});

Deno.test("serve({onUpgrade}) frames a rejecting Response by its body alone: a Transfer-Encoding of the hook's does not go out with a Content-Length", async () => {
  await using server = serve({
    ...LOCAL,
    onUpgrade: () =>
      new Response("not allowed", {
        status: 403,
        headers: { "transfer-encoding": "chunked", "x-kept": "yes" },
      }),
  }, echo);
  using peer = await RawPeer.connect(server.addr);
  await peer.write(
    encodeRequest("GET / HTTP/1.1", upgradeHeaders(server.addr)),
  );
  const response = await peer.readResponse();
  assert.equal(response.status, 403);
  assert.equal(response.headers.get("transfer-encoding"), null);
  assert.equal(response.headers.get("content-length"), "11");
  assert.equal(response.headers.get("x-kept"), "yes");
  assert.equal(response.body, "not allowed");
});

Deno.test("serve({onUpgrade}) answers 500 and logs a handler-error for a rejecting Response whose body fails before anything of it is written", async () => {
  const log = logSink();
  const broken = new Error("broken body");
  await using server = serve({
    ...LOCAL,
    logger: log.logger,
    onUpgrade: (request) =>
      new URL(request.url).pathname === "/broken"
        ? new Response(
          new ReadableStream({
            pull: (controller) => controller.error(broken),
          }),
          { status: 401 },
        )
        : undefined,
  }, echo);
  const { peer, response } = await rawUpgrade(server.addr, [], "/broken");
  using _ = peer;
  assert.equal(response.status, 500);
  const errors = log.events.filter((e) => e.type === "handler-error");
  assert.deepEqual(
    errors.map((e) => (e as { error: unknown }).error),
    [broken],
  );
  // The 500 went out, not the 401: counted and logged once, as a 500.
  assert.deepEqual(server.stats().handshakeRejections, { 500: 1 });
  assert.deepEqual(
    log.events.filter((e) => e.type === "handshake-rejected").map((e) =>
      (e as { status: number }).status
    ),
    [500],
  );
  await assertStillServing(server.addr);
});

Deno.test("serve({onUpgrade}) answers 500 and logs a handler-error for a rejecting Response with a control character in a header value, as for an accepting one (RFC 9110 §5.5)", async () => {
  const log = logSink();
  await using server = serve({
    ...LOCAL,
    logger: log.logger,
    // Headers refuses CR, LF and NUL, not \x01.
    onUpgrade: () =>
      new Response("no", { status: 401, headers: { "x-a": "a\x01b" } }),
  }, echo);
  const { peer, response } = await rawUpgrade(server.addr, [], "/");
  using _ = peer;
  assert.equal(response.status, 500);
  const errors = log.events.filter((e) => e.type === "handler-error");
  assert.equal(errors.length, 1);
  assert.match(
    (errors[0] as { error: Error }).error.message,
    /^Cannot send response: the value of x-a has a control character/,
  );
  assert.equal(response.headers.get("x-a"), null);
  assert.deepEqual(server.stats().handshakeRejections, { 500: 1 });
});

for (
  const [what, body] of [
    ["whose body never ends", () => new ReadableStream()],
    // More than loopback buffers hold, to a client that reads none of it.
    [
      "whose 64 MiB body the client does not read",
      () => new Uint8Array(64 * 1024 * 1024),
    ],
  ] as const
) {
  Deno.test(`serve({onUpgrade}) cuts a rejecting Response ${what} at handshakeTimeout, as another rejection`, async () => {
    await using server = serve({
      ...LOCAL,
      handshakeTimeout: 300,
      onUpgrade: () => new Response(body(), { status: 401 }),
    }, echo);
    using peer = await RawPeer.connect(server.addr);
    await peer.write(
      encodeRequest("GET / HTTP/1.1", upgradeHeaders(server.addr)),
    );
    await waitUntil(
      () => server.stats().transportConnections === 0,
      "the connection closed",
    );
    assert.deepEqual(server.stats().timeouts, { rejection: 1 });
  });
}

Deno.test(
  "serve({onUpgrade}) adds the hook's {headers} (set-cookie) to the 101",
  async () => {
    await using server = serve({
      ...LOCAL,
      onUpgrade: () => ({
        headers: [["set-cookie", "a=1"], ["set-cookie", "b=2; HttpOnly"], [
          "x-served-by",
          "duplex",
        ]],
      }),
    }, echo);
    await using client = await NpmClient.connectWith(wsUrl(server.addr), []);
    assert.deepEqual(client.upgradeHeaders["set-cookie"], [
      "a=1",
      "b=2; HttpOnly",
    ]);
    assert.equal(client.upgradeHeaders["x-served-by"], "duplex");
    assert.equal(await client.roundTrip("hi"), "hi");

    const { peer, response } = await rawUpgrade(server.addr);
    using _ = peer;
    assert.equal(response.status, 101);
    assert.equal(response.headers.get("set-cookie"), "a=1, b=2; HttpOnly");
  },
);

Deno.test(
  "serve({onUpgrade}) with a {protocol} the client did not offer answers 500 and logs a handler-error",
  async () => {
    const log = logSink();
    await using server = serve({
      ...LOCAL,
      logger: log.logger,
      onUpgrade: () => ({ protocol: "v9" }),
    }, echo);
    const seen = await npmRejection(wsUrl(server.addr), {}, ["v1"]);
    assert.equal(seen.status, 500);
    const errors = log.events.filter((e) => e.type === "handler-error");
    assert.equal(errors.length, 1);
    const [event] = errors as Extract<
      ServerLogEvent,
      { type: "handler-error" }
    >[];
    assert.ok(event.error instanceof TypeError, String(event.error));
    assert.match(event.error.message, /"v9"/);
    // Internal details stay inside: the body does not carry the message.
    assert.doesNotMatch(seen.body, /v9/);
    assert.deepEqual(server.stats().handshakeRejections, { 500: 1 });
  },
);

Deno.test(
  "serve({onUpgrade}) can pick one of the offered protocols itself",
  async () => {
    await using server = serve({
      ...LOCAL,
      protocols: ["v1", "v2"],
      onUpgrade: (_request, info) => ({ protocol: info.protocols.at(-1) }),
    }, (socket) => socket.send(socket.protocol));
    await using client = await NpmClient.connectWith(wsUrl(server.addr), [
      "v1",
      "v2",
    ]);
    assert.equal(client.ws.protocol, "v2");
    assert.equal(await client.next(), "v2");
  },
);

Deno.test("serve({onUpgrade}) awaits an async hook", async () => {
  await using server = serve<{ user: string }>({
    ...LOCAL,
    onUpgrade: async (request) => {
      // A lookup that takes a few turns of the event loop.
      await new Promise((resolve) => setTimeout(resolve, 20));
      const token = new URL(request.url).searchParams.get("token");
      if (token !== "good") return new Response("bad token", { status: 401 });
      return { data: { user: "ann" } };
    },
  }, (socket) => socket.send(socket.data.user));
  await using client = await NpmClient.connect(
    wsUrl(server.addr, "/?token=good"),
  );
  assert.equal(await client.next(), "ann");
  const seen = await npmRejection(wsUrl(server.addr, "/?token=bad"));
  assert.equal(seen.status, 401);
  assert.equal(seen.body, "bad token");
});

for (const kind of ["throws", "rejects"] as const) {
  Deno.test(
    `serve({onUpgrade}) that ${kind} answers 500, logs the error and keeps serving`,
    async () => {
      const log = logSink();
      const boom = new Error("hook exploded");
      let calls = 0;
      await using server = serve({
        ...LOCAL,
        logger: log.logger,
        onUpgrade: kind === "throws"
          ? () => {
            if (calls++ === 0) throw boom;
          }
          : async () => {
            await Promise.resolve();
            if (calls++ === 0) throw boom;
          },
      }, echo);
      const { peer, response } = await rawUpgrade(server.addr);
      using _ = peer;
      assert.equal(response.status, 500);
      assert.doesNotMatch(response.body, /exploded/);
      await peer.readToEof();
      const errors = log.events.filter((e) => e.type === "handler-error");
      assert.deepEqual(errors.map((e) => "error" in e && e.error), [boom]);
      await assertStillServing(server.addr);
    },
  );
}

Deno.test({
  name: "Server.shutdown() completes while an onUpgrade hook has not settled",
  fn: async () => {
    const hook = Promise.withResolvers<void>();
    const entered = Promise.withResolvers<AbortSignal>();
    let handled = 0;
    const server = serve({
      ...LOCAL,
      onUpgrade: async (_request, info) => {
        entered.resolve(info.signal);
        await hook.promise;
      },
    }, () => {
      handled++;
    });
    using peer = await RawPeer.connect(server.addr);
    try {
      await peer.write(
        encodeRequest("GET / HTTP/1.1", upgradeHeaders(server.addr)),
      );
      const signal = await withTimeout(
        entered.promise,
        DEADLINE,
        "the hook to run",
      );
      assert.equal(signal.aborted, false);
      await withTimeout(server.shutdown(), DEADLINE, "shutdown()");
      assert.equal(signal.aborted, true, "the hook learns of the shutdown");
      // The hook settling late changes nothing: the answer was a 503.
      hook.resolve();
      const response = new TextDecoder().decode(await peer.readToEof());
      assert.match(response, /^HTTP\/1\.1 503 /);
      assert.doesNotMatch(response, /101/);
      assert.equal(handled, 0);
    } finally {
      hook.resolve();
      peer.close();
      await server.shutdown();
    }
  },
});

// --- origins --------------------------------------------------------------

Deno.test(
  "serve({origins}) accepts listed and matching origins, 403s others, and allows no Origin",
  async () => {
    const log = logSink();
    const hooked: (string | null)[] = [];
    await using server = serve({
      ...LOCAL,
      logger: log.logger,
      origins: [
        "https://good.example",
        /\.trusted\.example$/,
        "chrome-extension://abcdefgh", // no URL origin: scheme://host
      ],
      onUpgrade: (request) => {
        hooked.push(request.headers.get("origin"));
      },
    }, echo);
    const url = wsUrl(server.addr);
    for (
      const origin of [
        "https://good.example",
        "https://api.trusted.example",
        "chrome-extension://abcdefgh",
      ]
    ) {
      await using client = await NpmClient.connect(url, { origin });
      assert.equal(await client.roundTrip(origin), origin);
    }
    // No Origin header: not a browser, allowed.
    {
      await using client = await NpmClient.connect(url);
      assert.equal(await client.roundTrip("no origin"), "no origin");
    }
    for (
      const origin of [
        "https://evil.example",
        "https://good.example.evil",
        "http://good.example",
        "https://trusted.example.evil",
      ]
    ) {
      const seen = await npmRejection(url, { origin });
      assert.equal(seen.status, 403, origin);
    }
    // Byte for byte, too.
    const { peer, response } = await rawUpgrade(server.addr, [[
      "Origin",
      "https://evil.example",
    ]]);
    using _ = peer;
    assert.equal(response.status, 403);
    assert.deepEqual(hooked, [
      "https://good.example",
      "https://api.trusted.example",
      "chrome-extension://abcdefgh",
      null,
    ], "rejected origins never reach onUpgrade");
    assert.equal(server.stats().handshakeRejections[403], 5);
    const rejected = log.events.filter((e) => e.type === "handshake-rejected");
    assert.equal(rejected.length, 5);
    assert.ok(rejected.every((e) => "status" in e && e.status === 403));
  },
);

// --- subprotocols ---------------------------------------------------------

Deno.test(
  "serve({protocols}) answers with its own first preference among the offer",
  async () => {
    await using server = serve(
      { ...LOCAL, protocols: ["v2", "v1"] },
      (socket) => socket.send(`server chose ${socket.protocol}`),
    );
    await using client = await NpmClient.connectWith(wsUrl(server.addr), [
      "v1",
      "v2",
    ]);
    assert.equal(client.ws.protocol, "v2");
    assert.equal(client.upgradeHeaders["sec-websocket-protocol"], "v2");
    assert.equal(await client.next(), "server chose v2");
    await using deno = await DenoClient.connect(wsUrl(server.addr), {
      protocols: ["v1"],
    });
    assert.equal(deno.ws.protocol, "v1");
  },
);

Deno.test(
  "serve({protocols}) sends no Sec-WebSocket-Protocol when it speaks none of the offer",
  async () => {
    const protocols: string[] = [];
    await using server = serve(
      { ...LOCAL, protocols: ["v2", "v1"] },
      (socket) => {
        protocols.push(socket.protocol);
      },
    );
    // Byte for byte: no header at all (not an empty one).
    const { peer, response } = await rawUpgrade(server.addr, [[
      "Sec-WebSocket-Protocol",
      "v3",
    ]]);
    using _ = peer;
    assert.equal(response.status, 101);
    assert.equal(response.headers.has("sec-websocket-protocol"), false);
    // A browser-like client accepts that and sees "".
    {
      await using deno = await DenoClient.connect(wsUrl(server.addr), {
        protocols: ["v3"],
      });
      assert.equal(deno.ws.protocol, "");
    }
    // npm:ws insists on an answer when it offered protocols: it fails the
    // connection with "Server sent no subprotocol", proving none was sent.
    await assert.rejects(
      NpmClient.connectWith(wsUrl(server.addr), ["v3"]),
      /Server sent no subprotocol/,
    );
    // Offering none gets none.
    await using client = await NpmClient.connectWith(wsUrl(server.addr), []);
    assert.equal(client.ws.protocol, "");
    assert.equal(client.upgradeHeaders["sec-websocket-protocol"], undefined);
    await withTimeout(client.closed, DEADLINE, "the handler to close");
    assert.deepEqual(protocols.slice(-1), [""]);
    assert.ok(protocols.every((p) => p === ""), protocols.join());
  },
);

Deno.test(
  "serve({protocols: selector}) answers with the selector's choice, given the offer and the request",
  async () => {
    const calls: { offered: string[]; path: string }[] = [];
    await using server = serve({
      ...LOCAL,
      protocols: (offered, request) => {
        calls.push({ offered, path: new URL(request.url).pathname });
        return offered.find((p) => p.startsWith("chat."));
      },
    }, (socket) => socket.send(socket.protocol));
    await using client = await NpmClient.connectWith(
      wsUrl(server.addr, "/a"),
      ["json", "chat.v2", "chat.v1"],
    );
    assert.equal(client.ws.protocol, "chat.v2");
    assert.equal(await client.next(), "chat.v2");
    // The selector returns undefined: no header.
    const { peer, response } = await rawUpgrade(server.addr, [[
      "Sec-WebSocket-Protocol",
      "json",
    ]], "/b");
    using _ = peer;
    assert.equal(response.status, 101);
    assert.equal(response.headers.has("sec-websocket-protocol"), false);
    assert.deepEqual(calls, [
      { offered: ["json", "chat.v2", "chat.v1"], path: "/a" },
      { offered: ["json"], path: "/b" },
    ]);
  },
);

Deno.test(
  "serve({protocols: selector}) never echoes a protocol the client did not offer (500 instead)",
  async () => {
    const log = logSink();
    await using server = serve({
      ...LOCAL,
      logger: log.logger,
      protocols: () => "made-up",
    }, echo);
    const seen = await npmRejection(wsUrl(server.addr), {}, ["v1"]);
    assert.equal(seen.status, 500);
    assert.equal(seen.headers["sec-websocket-protocol"], undefined);
    assert.equal(
      log.events.filter((e) => e.type === "handler-error").length,
      1,
    );
    await assertStillServing(server.addr);
  },
);

Deno.test("serve({protocols: selector}) that is async (JavaScript) gets a 500 whose log says the selector must return a string at once", async () => {
  const log = logSink();
  await using server = serve({
    ...LOCAL,
    logger: log.logger,
    protocols: (() => Promise.resolve("v1")) as unknown as () => string,
  }, echo);
  const seen = await npmRejection(wsUrl(server.addr), {}, ["v1"]);
  assert.equal(seen.status, 500);
  const errors = log.events.filter((e) => e.type === "handler-error");
  assert.equal(errors.length, 1);
  assert.match(
    (errors[0] as { error: Error }).error.message,
    /the protocols selector must return a string at once \(not a Promise\), got Promise/,
  );
});

for (
  const name of [
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Accept",
    "Sec-WebSocket-Extensions",
    "Upgrade",
    "Connection",
    // A 101 has no body to frame (RFC 9110 §8.6).
    "Content-Length",
    "Transfer-Encoding",
  ]
) {
  Deno.test(
    `serve({onUpgrade}) may not set the handshake header ${name} (500, handler-error)`,
    async () => {
      const log = logSink();
      await using server = serve({
        ...LOCAL,
        logger: log.logger,
        onUpgrade: (request) =>
          new URL(request.url).pathname === "/evil"
            ? { headers: { [name]: "evil" } }
            : undefined,
      }, echo);
      // Never a 101 carrying a protocol the client did not offer.
      const { peer, response } = await rawUpgrade(server.addr, [[
        "Sec-WebSocket-Protocol",
        "v1",
      ]], "/evil");
      using _ = peer;
      assert.equal(response.status, 500);
      assert.equal(response.headers.has("sec-websocket-protocol"), false);
      const errors = log.events.filter((e) => e.type === "handler-error");
      assert.equal(errors.length, 1);
      const [event] = errors as Extract<
        ServerLogEvent,
        { type: "handler-error" }
      >[];
      assert.ok(event.error instanceof TypeError, String(event.error));
      assert.match(event.error.message, new RegExp(name, "i"));
      await assertStillServing(server.addr);
    },
  );
}

/** A hook that answers `/slow` only when its signal aborts, with `settle`. */
function slowHook(
  settle: () => Response | undefined,
  aborted: PromiseWithResolvers<void>,
) {
  return (request: Request, info: UpgradeInfo) => {
    if (new URL(request.url).pathname !== "/slow") return;
    return new Promise<Response | undefined>((resolve) => {
      info.signal.addEventListener("abort", () => {
        aborted.resolve();
        if (settle !== undefined) resolve(settle());
      });
    });
  };
}

for (
  const [what, settle] of [
    ["never settles", undefined],
    ["rejects after the abort", () => new Response("late", { status: 401 })],
  ] as const
) {
  Deno.test(
    `serve({onUpgrade}) past handshakeTimeout: a hook that ${what} is abandoned, info.signal aborts`,
    async () => {
      const aborted = Promise.withResolvers<void>();
      const events: ServerLogEvent[] = [];
      let handled = 0;
      await using server = serve({
        ...LOCAL,
        handshakeTimeout: 100,
        logger: (event) => events.push(event),
        onUpgrade: slowHook(settle!, aborted),
      }, async (socket) => {
        handled++;
        await echo(socket);
      });
      using peer = await RawPeer.connect(server.addr);
      await peer.write(
        encodeRequest("GET /slow HTTP/1.1", upgradeHeaders(server.addr)),
      );
      await withTimeout(aborted.promise, DEADLINE, "the hook's signal");
      assert.equal((await peer.readToEof()).length, 0, "no response");
      await assertStillServing(server.addr);
      assert.equal(handled, 1, "the handler ran for the second client only");
      // Counted and logged under its own phase.
      assert.deepEqual(server.stats().timeouts, { "upgrade-hook": 1 });
      assert.deepEqual(
        events.flatMap((e) => e.type === "timeout" ? [e.phase] : []),
        ["upgrade-hook"],
      );
    },
  );
}

Deno.test({
  name:
    "serve({onUpgrade}) past handshakeTimeout: a hook accepting after the abort does not open a socket",
  fn: async () => {
    const aborted = Promise.withResolvers<void>();
    const events: ServerLogEvent[] = [];
    let handled = 0;
    await using server = serve({
      ...LOCAL,
      handshakeTimeout: 100,
      logger: (event) => events.push(event),
      onUpgrade: slowHook(() => undefined, aborted),
    }, async (socket) => {
      handled++;
      await echo(socket);
    });
    using peer = await RawPeer.connect(server.addr);
    await peer.write(
      encodeRequest("GET /slow HTTP/1.1", upgradeHeaders(server.addr)),
    );
    await withTimeout(aborted.promise, DEADLINE, "the hook's signal");
    assert.equal((await peer.readToEof()).length, 0, "no response");
    await assertStillServing(server.addr);
    assert.equal(handled, 1, "the handler ran for the second client only");
    assert.equal(server.stats().totalConnections, 1);
    assert.equal(events.filter((e) => e.type === "open").length, 1);
  },
});

Deno.test("serve({onUpgrade}) gets what is left of handshakeTimeout, not a fresh one: a head sent slowly leaves the hook less time", async () => {
  let hookCalled = false;
  let hookEnded = false;
  const aborted = Promise.withResolvers<void>();
  await using server = serve({
    ...LOCAL,
    handshakeTimeout: 1000,
    onUpgrade: async (_request, { signal }) => {
      hookCalled = true;
      signal.addEventListener("abort", () => aborted.resolve());
      // Well under handshakeTimeout, but more than is left of it.
      await new Promise((resolve) => setTimeout(resolve, 700));
      hookEnded = true;
    },
  }, echo);
  using peer = await RawPeer.connect(server.addr);
  const request = encodeRequest("GET / HTTP/1.1", upgradeHeaders(server.addr));
  // The head in pieces, over about 600 ms of the 1000.
  const step = Math.ceil(request.length / 6);
  for (let at = 0; at < request.length; at += step) {
    await peer.write(request.subarray(at, at + step));
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const response = await withTimeout(peer.readToEof(), DEADLINE, "the end");
  assert.ok(hookCalled, "the head arrived whole within its deadline");
  assert.equal(response.length, 0, "no 101");
  assert.equal(hookEnded, false, "abandoned before it ended");
});

Deno.test("an onUpgrade hook that throws a HandshakeError with a header no response may carry gets a 500 and a handler-error, and the server goes on", async () => {
  const events: ServerLogEvent[] = [];
  await using server = serve({
    ...LOCAL,
    logger: (event) => events.push(event),
    onUpgrade: () => {
      throw new HandshakeError(401, "who are you?", {
        "WWW-Authenticate": 'Bearer realm="café ✓"',
      });
    },
  }, echo);
  const { peer, response } = await rawUpgrade(server.addr);
  peer.close();
  assert.equal(response.status, 500);
  const logged = events.find((event) => event.type === "handler-error");
  assert.ok(logged?.type === "handler-error");
  assert.match(String(logged.error), /WWW-Authenticate/);
  assert.deepEqual(server.stats().handshakeRejections, { 500: 1 });
});

Deno.test("an onUpgrade hook that throws a HandshakeError with a status that is not a final one, or framing headers of its own, gets a 500 and a handler-error: no 101, NaN or doubled Content-Length goes out", async () => {
  const thrown: HandshakeError[] = [
    new HandshakeError(101, "switching?"),
    new HandshakeError(204, "nothing"),
    new HandshakeError(NaN, "not a number"),
    new HandshakeError(1234, "too long"),
    new HandshakeError(403, "framed", { "Content-Length": "0" }),
    new HandshakeError(403, "chunked", { "Transfer-Encoding": "chunked" }),
    new HandshakeError(403, "kept", { Connection: "keep-alive" }),
  ];
  const events: ServerLogEvent[] = [];
  let next = 0;
  await using server = serve({
    ...LOCAL,
    logger: (event) => events.push(event),
    onUpgrade: () => {
      throw thrown[next++];
    },
  }, echo);
  for (const error of thrown) {
    const { peer, response } = await rawUpgrade(server.addr);
    peer.close();
    assert.equal(response.status, 500, `${error.status} ${error.message}`);
  }
  assert.equal(
    events.filter((event) => event.type === "handler-error").length,
    thrown.length,
  );
  assert.deepEqual(server.stats().handshakeRejections, { 500: thrown.length });
  // A final status with headers of its own (but these) goes out as it is.
  next = 0;
  thrown.splice(
    0,
    thrown.length,
    new HandshakeError(429, "slow down", {
      "Retry-After": "3",
      Connection: "upgrade",
    }),
  );
  const { peer, response } = await rawUpgrade(server.addr);
  peer.close();
  assert.equal(response.status, 429);
  assert.equal(response.headers.get("retry-after"), "3");
});
