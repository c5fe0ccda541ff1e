import assert from "node:assert/strict";
import {
  serve,
  type ServeOptions,
  type Server,
  type ServerLogEvent,
} from "../../mod.ts";
import {
  closePayload,
  concat,
  DEADLINE,
  delay,
  echo,
  frame,
  LOCAL,
  NpmClient,
  npmRejection,
  OP,
  rawHandshake,
  RawPeer,
  rawUpgrade,
  SocketTracker,
  waitUntil,
  withTimeout,
  wsUrl,
} from "./_helpers.ts";
import { NUMERIC_DEFAULTS } from "../../src/server/serve_options.ts";

/** The numeric options that must be positive integers. */
const POSITIVE = [
  "maxPayload",
  "maxFragments",
  "maxHeadSize",
  "maxHeaders",
  "maxBodySize",
  "maxConnections",
  "handshakeTimeout",
  "requestTimeout",
  "closeTimeout",
  "sendHighWaterMark",
  "maxBackpressure",
  "receiveHighWaterMark",
  "maxQueuedMessages",
] as const;

/** The timeouts where 0 means "disabled". */
const MAY_BE_ZERO = [
  "pingInterval",
  "pongTimeout",
  "idleTimeout",
  "messageTimeout",
] as const;

/**
 * The limits where Infinity means "no limit" (tested in
 * per_address_limit_test.ts).
 */
const MAY_BE_INFINITE = [
  "maxConnectionsPerAddress",
  "maxBufferedBytes",
] as const;

type NumericOption =
  | typeof POSITIVE[number]
  | typeof MAY_BE_ZERO[number]
  | typeof MAY_BE_INFINITE[number];

/** Calls serve() expecting a throw; shuts down a server that started anyway. */
async function serveMustThrow(
  options: ServeOptions,
  check: (error: unknown) => boolean,
  what: string,
): Promise<void> {
  let server: Server | undefined;
  try {
    server = serve({ ...LOCAL, ...options }, echo);
  } catch (error) {
    assert.ok(check(error), `${what}: unexpected ${error}`);
    return;
  }
  await server.shutdown();
  assert.fail(`${what}: serve() accepted it`);
}

// --- maxConnections -------------------------------------------------------

/** Opens a raw WebSocket, retrying while the server answers 503. */
async function connectOnceFree(addr: Deno.NetAddr): Promise<RawPeer> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const { peer, response } = await rawUpgrade(addr);
    if (response.status === 101) return peer;
    peer.close();
    assert.equal(response.status, 503, response.statusLine);
    await delay(10);
  }
  throw new Error("the server never freed a connection slot");
}

Deno.test(
  "serve({maxConnections: 2}) answers the third connection 503 with Retry-After and accepts again after one closes",
  async () => {
    const events: ServerLogEvent[] = [];
    const tracker = new SocketTracker();
    await using server = serve({
      ...LOCAL,
      maxConnections: 2,
      logger: (event) => events.push(event),
    }, tracker.wrap(echo));
    const first = await NpmClient.connect(wsUrl(server.addr));
    await using second = await NpmClient.connect(wsUrl(server.addr));
    assert.equal(await first.roundTrip("1"), "1");
    assert.equal(await second.roundTrip("2"), "2");

    // npm:ws sees the 503...
    const seen = await npmRejection(wsUrl(server.addr));
    assert.equal(seen.status, 503);
    // ...and so does a raw request, before sending anything else.
    {
      const { peer, response } = await rawUpgrade(server.addr);
      using _ = peer;
      assert.equal(response.status, 503);
      assert.equal(response.headers.get("connection"), "close");
      assert.equal(response.headers.get("retry-after"), "1");
    }
    assert.equal(await second.roundTrip("still fine"), "still fine");
    assert.equal(server.stats().handshakeRejections[503], 2);

    await first.close(1000);
    await tracker.closed(first.port);
    using third = await connectOnceFree(server.addr);
    await third.write(frame(OP.text, "three"));
    const echoed = await third.readFrame();
    assert.equal(new TextDecoder().decode(echoed.payload), "three");
    await third.write(frame(OP.close, closePayload(1000)));
    assert.equal((await tracker.closed(third.port)).code, 1000);
    assert.ok(
      events.some((e) => e.type === "handshake-rejected" && e.status === 503),
    );
  },
);

Deno.test(
  "serve({maxConnections}) counts connections still in their handshake",
  async () => {
    await using server = serve({ ...LOCAL, maxConnections: 1 }, echo);
    // Connected, but no request yet.
    using idle = await RawPeer.connect(server.addr);
    const seen = await npmRejection(wsUrl(server.addr));
    assert.equal(seen.status, 503);
    idle.close();
    using peer = await connectOnceFree(server.addr);
    await peer.write(frame(OP.close, closePayload(1000)));
    assert.equal((await peer.readClose()).code, 1000);
  },
);

// --- option validation ----------------------------------------------------

Deno.test("the option tables below cover every numeric option", () => {
  assert.deepEqual(
    [...POSITIVE, ...MAY_BE_ZERO, ...MAY_BE_INFINITE].sort(),
    Object.keys(NUMERIC_DEFAULTS).sort(),
  );
});

const BAD_VALUES: Record<"positive" | "mayBeZero", unknown[]> = {
  positive: [0, -1, 1.5, NaN, Infinity, 2 ** 53],
  mayBeZero: [-1, -0.5, 2.5, NaN, -Infinity, 2 ** 53],
};

for (
  const [kind, names] of [
    ["positive", POSITIVE],
    ["mayBeZero", MAY_BE_ZERO],
  ] as const
) {
  for (const name of names) {
    Deno.test(
      `serve({${name}}) rejects ${
        BAD_VALUES[kind].map(String).join(", ")
      } with a RangeError naming the option and the value`,
      async () => {
        for (const value of BAD_VALUES[kind]) {
          await serveMustThrow(
            { [name]: value } as ServeOptions,
            (error) =>
              error instanceof RangeError &&
              error.message.includes(`"${name}"`) &&
              error.message.includes(String(value)),
            `${name}: ${value}`,
          );
        }
      },
    );
  }
}

Deno.test(
  "serve() accepts the smallest valid value of every numeric option",
  async () => {
    const all: [NumericOption, number][] = [
      ...[...POSITIVE, ...MAY_BE_INFINITE].map((name) =>
        [name, 1] as [NumericOption, number]
      ),
      ...MAY_BE_ZERO.map((name) => [name, 0] as [NumericOption, number]),
    ];
    for (const [name, value] of all) {
      // maxBackpressure may not be below sendHighWaterMark (next test).
      const options = name === "maxBackpressure"
        ? { sendHighWaterMark: value, maxBackpressure: value }
        : { [name]: value };
      const server = serve({ ...LOCAL, ...options }, echo);
      await withTimeout(server.shutdown(), DEADLINE, `shutdown (${name})`);
    }
  },
);

Deno.test("serve() rejects a maxBackpressure below sendHighWaterMark, where send() could never wait", async () => {
  await serveMustThrow(
    { maxBackpressure: 512 * 1024 },
    (error) =>
      error instanceof RangeError &&
      error.message ===
        'Cannot serve: "maxBackpressure" (524288) must be at least "sendHighWaterMark" (1048576), or send() never waits before the backpressure policy applies; lower "sendHighWaterMark" too',
    "maxBackpressure: 512 KiB",
  );
});

Deno.test(
  "serve() rejects a string where a number is expected",
  async () => {
    await serveMustThrow(
      { maxPayload: "1024" as unknown as number },
      (error) =>
        (error instanceof RangeError || error instanceof TypeError) &&
        error.message.includes('"maxPayload"'),
      "maxPayload: '1024'",
    );
  },
);

Deno.test(
  'serve({backpressurePolicy: "bogus"}) throws a RangeError naming the option and value',
  async () => {
    await serveMustThrow(
      { backpressurePolicy: "bogus" as "close" },
      (error) =>
        error instanceof RangeError &&
        error.message.includes('"backpressurePolicy"') &&
        error.message.includes('"bogus"'),
      "backpressurePolicy: bogus",
    );
  },
);

Deno.test({
  name:
    "serve({closeTimeout: 2 ** 31}) either rejects the value or really waits for the peer's close",
  fn: async () => {
    let server: Server | undefined;
    const tracker = new SocketTracker();
    try {
      server = serve(
        { ...LOCAL, closeTimeout: 2 ** 31 },
        tracker.wrap(async (socket) => {
          await socket.closed;
        }),
      );
    } catch (error) {
      assert.ok(error instanceof RangeError, String(error));
      return;
    }
    try {
      using peer = await rawHandshake(server.addr);
      const socket = await tracker.socket(peer.port);
      const closing = socket.close(1000, "bye");
      const { code } = await peer.readClose();
      assert.equal(code, 1000);
      // Answer a little later than a 1 ms timer would wait.
      await delay(50);
      await peer.write(frame(OP.close, closePayload(1000)));
      const info = await withTimeout(closing, DEADLINE, "close()");
      assert.deepEqual(info, { code: 1000, reason: "", wasClean: true });
    } finally {
      await server.shutdown();
    }
  },
});

Deno.test(
  "serve({maxPayload}) closes with 1009 beyond it and logs MESSAGE_TOO_BIG",
  async () => {
    const events: ServerLogEvent[] = [];
    const tracker = new SocketTracker();
    await using server = serve({
      ...LOCAL,
      maxPayload: 1024,
      logger: (event) => events.push(event),
    }, tracker.wrap(echo));
    await using client = await NpmClient.connect(wsUrl(server.addr));
    assert.equal((await client.roundTrip("x".repeat(1024))).length, 1024);
    client.send("x".repeat(1025));
    const seen = await withTimeout(client.closed, DEADLINE, "the 1009 close");
    assert.equal(seen.code, 1009);
    await tracker.closed(client.port);
    await waitUntil(
      () => events.some((e) => e.type === "close"),
      "the close log event",
    );
    const error = events.find((e) => e.type === "protocol-error");
    assert.ok(error && error.type === "protocol-error");
    assert.equal(error.code, "MESSAGE_TOO_BIG");
    assert.equal(error.closeCode, 1009);
  },
);

// --- options that are not numbers -------------------------------------------

/** Options of the wrong type or shape, and what the error must name. */
const BAD_OPTIONS: [Record<string, unknown>, string][] = [
  [{ hostname: 127 }, '"hostname" must be a string, got number 127'],
  [{ reusePort: "yes" }, '"reusePort" must be a boolean, got string "yes"'],
  [{ onListen: "x" }, '"onListen" must be a function, got string "x"'],
  [{ logger: 1 }, '"logger" must be a function, got number 1'],
  [{ onUpgrade: "x" }, '"onUpgrade" must be a function'],
  [{ fetch: 5 }, '"fetch" must be a function, got number 5'],
  [{ streamMessages: 1 }, '"streamMessages" must be a boolean'],
  [
    { origins: "https://example.com" },
    '"origins" must be an array of origin strings and RegExps, got string "https://example.com"',
  ],
  [{ origins: [42] }, '"origins" must be an array'],
  // Strings that are not origins as browsers send them would never match.
  [
    { origins: ["http://localhost:8000/"] },
    '"origins" entries must be origins as browsers send them (scheme://host[:port], no path), got "http://localhost:8000/": use "http://localhost:8000"',
  ],
  [{ origins: ["https://Example.com"] }, 'use "https://example.com"'],
  [{ origins: ["https://example.com:443"] }, 'use "https://example.com"'],
  [{ origins: ["https://example.com/app"] }, 'use "https://example.com"'],
  [{ origins: ["example.com"] }, 'got "example.com"'],
  // test() with g or y goes on from the last match: every other request
  // from an allowed origin would be refused.
  [
    { origins: [/^https:\/\/a\.example$/g] },
    '"origins" RegExps may not have the g or y flag',
  ],
  [{ origins: [/^https:\/\/a\.example$/y] }, "may not have the g or y flag"],
  [
    { origins: ["chrome-extension://abcdef/"] },
    'use "chrome-extension://abcdef"',
  ],
  [
    { origins: ["moz-extension://ABCDEF-12"] },
    'use "moz-extension://abcdef-12"',
  ],
  [
    { protocols: "chat" },
    '"protocols" must be an array of strings or a function, got string "chat"',
  ],
  [{ protocols: ["chat", 2] }, '"protocols" must be an array'],
  [{ signal: {} }, '"signal" must be an AbortSignal, got Object'],
  [{ pubsub: {} }, '"pubsub" must be an adapter with start, publish and close'],
  [
    { perMessageDeflate: "yes" },
    '"perMessageDeflate" must be a boolean or an object',
  ],
  [{ perMessageDeflate: { bogus: 1 } }, 'unknown setting "bogus"'],
  [
    { perMessageDeflate: { serverNoContextTakeover: "no" } },
    '"serverNoContextTakeover" must be a boolean, got string "no"',
  ],
  [
    { perMessageDeflate: { clientNoContextTakeover: 0 } },
    '"clientNoContextTakeover" must be a boolean, got number 0',
  ],
  [{ backpressurePolicy: null }, '"backpressurePolicy" must be'],
  [
    { backpressurePolicy: "block" },
    '"backpressurePolicy" must be "close", "drop" or "wait", got string "block"',
  ],
  [{ port: null }, '"port" must be a number from 0 to 65535, got null'],
  [{ protocols: [""] }, '"protocols" must hold distinct subprotocol names'],
  [
    { protocols: ["a b"] },
    'names (HTTP tokens: no spaces, commas or quotes), got "a b"',
  ],
  [{ protocols: ["a,b"] }, 'got "a,b"'],
  [{ protocols: ["chat", "chat"] }, 'got "chat" twice'],
  [
    { hostname: "" },
    '"hostname" must be a host name or address, got string ""',
  ],
  [
    { cert: "cert.pem", key: "key.pem" },
    '"cert" must be PEM text (a "-----BEGIN ...CERTIFICATE-----" block), got "cert.pem": a file name? Read it with Deno.readTextFileSync()',
  ],
  // Deno.env.get("PORT") passed as it is: the message must not look valid.
  [
    { port: "8080" },
    '"port" must be a number from 0 to 65535, got string "8080" (convert it with Number())',
  ],
];

Deno.test("serve() rejects each option of the wrong type or shape at once, with an error naming it and the value", async () => {
  for (const [options, message] of BAD_OPTIONS) {
    await serveMustThrow(
      options as ServeOptions,
      (error) =>
        (error instanceof TypeError || error instanceof RangeError) &&
        error.message.includes(message),
      JSON.stringify(options),
    );
  }
  // SECURITY.md: a RangeError out of range, a TypeError of the wrong type.
  for (const port of ["8080", null]) {
    await serveMustThrow(
      { port } as unknown as ServeOptions,
      (error) => error instanceof TypeError,
      String(port),
    );
  }
  await serveMustThrow(
    { port: 70000 },
    (error) => error instanceof RangeError,
    "70000",
  );
  for (
    const [options, ErrorClass] of [
      [{ backpressurePolicy: 5 }, TypeError],
      [{ backpressurePolicy: "block" }, RangeError],
      [{ perMessageDeflate: { level: "6" } }, TypeError],
      [{ perMessageDeflate: { level: 10 } }, RangeError],
    ] as const
  ) {
    await serveMustThrow(
      options as unknown as ServeOptions,
      (error) => error instanceof ErrorClass,
      JSON.stringify(options),
    );
  }
});

Deno.test("serve() rejects missing options with a TypeError, not a crash inside", () => {
  for (const options of [undefined, null, "8080"]) {
    assert.throws(
      () => serve(options as unknown as ServeOptions, echo),
      (error) =>
        error instanceof TypeError &&
        error.message.startsWith("Cannot serve: the options must be an object"),
      String(options),
    );
  }
  // Deno.serve() style: the handler among the options.
  assert.throws(
    () =>
      serve({ ...LOCAL, handler: echo } as unknown as ServeOptions, undefined!),
    {
      name: "TypeError",
      message:
        "Cannot serve: pass the handler as the second argument of serve(), not as options.handler",
    },
  );
});

Deno.test("serve() whose onListen throws rethrows and leaves nothing listening", async () => {
  let port = 0;
  assert.throws(
    () =>
      serve({
        ...LOCAL,
        onListen: (addr) => {
          port = addr.port;
          throw new Error("boom");
        },
      }, echo),
    { message: "boom" },
  );
  // The port is freed (once the pending accept is cancelled, a turn later):
  // another server can take it.
  let again: Server | undefined;
  for (let attempt = 0; again === undefined && attempt < 100; attempt++) {
    await delay(10);
    try {
      again = serve({ ...LOCAL, port }, echo);
    } catch (error) {
      assert.ok(error instanceof Deno.errors.AddrInUse, String(error));
      assert.match(
        error.message,
        new RegExp(`^Cannot serve on 127\\.0\\.0\\.1:${port}: `),
      );
    }
  }
  assert.ok(again, `port ${port} still in use after a second`);
  await again.shutdown();
});

Deno.test("server.shutdown() rejects a bad timeout with a RangeError and still shuts down on a good one", async () => {
  const server = serve(LOCAL, echo);
  const shownAs = [
    [-1, "got -1"],
    [Number.NaN, "got NaN"],
    ["x", 'got string "x"'],
    [2 ** 31, "got 2147483648"],
  ] as const;
  for (const [timeout, shown] of shownAs) {
    await assert.rejects(
      server.shutdown({ timeout: timeout as number }),
      (error) =>
        error instanceof RangeError &&
        error.message.includes('"timeout" must be a number of milliseconds') &&
        error.message.endsWith(shown),
    );
  }
  await server.shutdown({ timeout: 0 });
});

Deno.test("serve() rejects an option name it does not know, suggesting the one meant, and knows every option it declares", async () => {
  assert.throws(
    () => serve({ ...LOCAL, maxPayLoad: 1 } as ServeOptions, echo),
    {
      name: "TypeError",
      message:
        'Cannot serve: unknown option "maxPayLoad" (did you mean "maxPayload"?)',
    },
  );
  assert.throws(() => serve({ ...LOCAL, colour: 1 } as ServeOptions, echo), {
    message: 'Cannot serve: unknown option "colour"',
  });
  // Deno.serve()'s own, said so; an option set to undefined asks nothing.
  assert.throws(
    () => serve({ ...LOCAL, onError: () => {} } as ServeOptions, echo),
    {
      message:
        'Cannot serve: unknown option "onError": errors of the server and its handlers go to "logger" (plain HTTP requests go to "fetch")',
    },
  );
  await using _spread = serve(
    { ...LOCAL, handler: undefined, onError: undefined } as ServeOptions,
    echo,
  );
  // Every declared option by name (the type makes this list complete).
  const declared: Record<keyof Required<ServeOptions>, true> = {
    port: true,
    hostname: true,
    reusePort: true,
    pubsub: true,
    perMessageDeflate: true,
    cert: true,
    key: true,
    signal: true,
    onListen: true,
    logger: true,
    origins: true,
    protocols: true,
    onUpgrade: true,
    fetch: true,
    streamMessages: true,
    maxPayload: true,
    maxFragments: true,
    maxHeadSize: true,
    maxHeaders: true,
    maxBodySize: true,
    maxConnections: true,
    maxConnectionsPerAddress: true,
    maxBufferedBytes: true,
    handshakeTimeout: true,
    requestTimeout: true,
    closeTimeout: true,
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
  await using _server = serve({ ...unset, ...LOCAL } as ServeOptions, echo);
});

Deno.test("serve({maxConnections}) answers at most 64 connections over it at once (for a small maxConnections): past that, one over the limit is closed unanswered, and counted and logged all the same", async () => {
  const net = await import("node:net");
  const rejected: string[] = [];
  await using server = serve(
    {
      ...LOCAL,
      maxConnections: 1,
      logger: (event) => {
        if (event.type === "handshake-rejected") {
          rejected.push(`${event.status} ${event.message}`);
        }
      },
    },
    echo,
  );
  await using held = await NpmClient.connect(wsUrl(server.addr));
  /** A connection that never reads nor closes; what it got once closed. */
  const silent = async () => {
    const socket = net.connect({ host: "127.0.0.1", port: server.addr.port });
    await new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    let text = "";
    socket.on(
      "data",
      (chunk: Uint8Array) => text += new TextDecoder().decode(chunk),
    );
    const ended = new Promise<string>((resolve) =>
      socket.once("close", () => resolve(text))
    );
    return { socket, ended };
  };
  const refused = await Promise.all(Array.from({ length: 64 }, silent));
  await waitUntil(
    () => server.stats().handshakeRejections[503] === 64,
    "the 64 to be refused",
  );
  // Their answers are out, and the server waits for them to be read: the
  // next one over the limit gets nothing.
  const dropped = await silent();
  assert.equal(await withTimeout(dropped.ended, DEADLINE, "the drop"), "");
  assert.deepEqual(server.stats().handshakeRejections, { 503: 65 });
  assert.equal(rejected.length, 65);
  assert.match(
    rejected[64],
    /^503 .* \(closed unanswered: 64 refusals were going out already\)$/,
  );
  for (const { socket } of refused) socket.destroy();
  for (const { ended } of refused) {
    assert.match(await ended, /^HTTP\/1\.1 503 /);
  }
  assert.equal(await held.roundTrip("still"), "still");
});

Deno.test("serve({maxPayload}): a message over it in many frames (as browsers send one) gets the 1009 to the peer: the rest of the message is read on and dropped, not reset", async () => {
  await using server = serve({
    ...LOCAL,
    maxPayload: 1024 * 1024,
    logger: () => {},
  }, echo);
  // npm:ws, 4 MiB in 64 frames of 64 KiB: the 17th goes over.
  await using client = await NpmClient.connect(wsUrl(server.addr));
  const piece = new Uint8Array(64 * 1024);
  for (let k = 0; k < 64; k++) {
    client.ws.send(piece, { binary: true, fin: k === 63 });
  }
  assert.equal(
    (await withTimeout(client.closed, DEADLINE, "close")).code,
    1009,
  );
  // A peer that writes it all before it reads anything.
  using peer = await rawHandshake(server.addr);
  const frames = Array.from(
    { length: 64 },
    (_, k) =>
      frame(k === 0 ? OP.binary : OP.continuation, piece, { fin: k === 63 }),
  );
  // Read on and dropped, the rest does not meet a reset (which would fail
  // this write, and make a browser or npm:ws on Node report 1006).
  await peer.write(concat(...frames));
  const { code } = await withTimeout(peer.readClose(), DEADLINE, "1009");
  assert.equal(code, 1009);
  await withTimeout(peer.readToEof(), DEADLINE, "the end, not a reset");
});

Deno.test("serve({maxPayload}): one frame far over it (20 MiB to 1 MiB) is read on and dropped, so that its sender, writing it all, reads its 1009 rather than meet a reset", async () => {
  await using server = serve({
    ...LOCAL,
    maxPayload: 1024 * 1024,
    logger: () => {},
  }, echo);
  using peer = await rawHandshake(server.addr);
  await peer.write(frame(OP.binary, new Uint8Array(20 * 1024 * 1024)));
  const { code } = await withTimeout(peer.readClose(), DEADLINE, "1009");
  assert.equal(code, 1009);
  await withTimeout(peer.readToEof(), DEADLINE, "the end, not a reset");
});
