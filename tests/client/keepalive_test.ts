import assert from "node:assert/strict";
import { connect, serve } from "../../mod.ts";
import { deadline, rawServer } from "./_helpers.ts";

Deno.test("connect({pingInterval}) pings an idle server and measures the round trip", async () => {
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, pingInterval: 0 },
    async (socket) => {
      for await (const _ of socket);
    },
  );
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`, {
    pingInterval: 30,
  });
  try {
    await deadline(
      (async () => {
        while (socket.rtt === undefined) {
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      })(),
      5_000,
      "a measured round trip",
    );
    assert.ok(socket.rtt! >= 0);
  } finally {
    await socket.close();
  }
});

Deno.test("connect({pingInterval, pongTimeout}) closes a connection whose server never answers pings", async () => {
  const server = rawServer(async (peer) => {
    await peer.accept();
    // Reads the pings and never answers, until the client gives up.
    while (!await peer.readEof());
  });
  try {
    const socket = await connect(server.url, {
      pingInterval: 30,
      pongTimeout: 100,
    });
    const info = await deadline(socket.closed, 5_000, "the keepalive close");
    assert.deepEqual(
      { code: info.code, reason: info.reason, wasClean: info.wasClean },
      { code: 1011, reason: "keepalive pong timeout", wasClean: false },
    );
  } finally {
    await server.close();
  }
});

Deno.test("connect() rejects keepalive options out of range with a clear RangeError", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, () => {});
  await assert.rejects(
    connect(`ws://127.0.0.1:${server.addr.port}/`, { pingInterval: -1 }),
    /"pingInterval" must be a non-negative integer, got -1/,
  );
  await assert.rejects(
    connect(`ws://127.0.0.1:${server.addr.port}/`, { pongTimeout: 2 ** 31 }),
    /"pongTimeout" must be at most 2147483647 ms/,
  );
});

Deno.test("connect({idleTimeout}) closes with 1001 'idle timeout' when no message passes either way, though the server's pings do", async () => {
  const seen = Promise.withResolvers<unknown>();
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, pingInterval: 30 },
    async (socket) => {
      for await (const _ of socket);
      seen.resolve(await socket.closed);
    },
  );
  // Without keepalive of its own: the ticker runs for idleTimeout alone.
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`, {
    idleTimeout: 200,
  });
  const info = await deadline(socket.closed, 5_000, "the idle close");
  assert.equal(info.code, 1001);
  assert.equal(info.wasClean, true);
  assert.deepEqual(await deadline(seen.promise, 5_000, "the server's close"), {
    code: 1001,
    reason: "idle timeout",
    wasClean: true,
  });
});

Deno.test("connect({messageTimeout}) fails a frame the server trickles in a byte at a time with 1008 MESSAGE_TIMEOUT", async () => {
  let received: { opcode: number; payload: Uint8Array } | undefined;
  let trickled = 0;
  const server = rawServer(async (peer) => {
    await peer.accept();
    // A 125-byte binary frame, a byte every 20 ms: 2.5 s in all.
    const bytes = new Uint8Array([0x82, 125, ...new Uint8Array(125)]);
    const timer = setInterval(() => {
      if (trickled === bytes.length) return clearInterval(timer);
      peer.write(bytes.subarray(trickled, ++trickled)).catch(() =>
        clearInterval(timer)
      );
    }, 20);
    try {
      received = await peer.readFrame();
    } finally {
      clearInterval(timer);
    }
  });
  try {
    const socket = await connect(server.url, { messageTimeout: 200 });
    const info = await deadline(socket.closed, 5_000, "the 1008 close");
    assert.deepEqual(
      { code: info.code, reason: info.reason, wasClean: info.wasClean },
      {
        code: 1008,
        reason: "No whole message within messageTimeout (200 ms)",
        wasClean: false,
      },
    );
    assert.equal(info.error?.code, "MESSAGE_TIMEOUT");
  } finally {
    await server.close();
  }
  assert.deepEqual(server.errors, []);
  assert.ok(trickled < 127, "the frame was still arriving");
  assert.equal(received?.opcode, 0x8);
  assert.deepEqual(
    received?.payload,
    new Uint8Array([
      0x03,
      0xf0,
      ...new TextEncoder().encode("MESSAGE_TIMEOUT"),
    ]),
  );
});

Deno.test("connect({pingInterval}) leaves no tick running once a connection dropped in the middle of sendStream() has closed", async () => {
  // The stream's end settles the send queue after the socket finished; the
  // flush that follows must not register a close check on the ticker that
  // nothing would remove (it kept the socket and its ticker alive).
  const intervals = new Set<ReturnType<typeof setInterval>>();
  const { setInterval: realSet, clearInterval: realClear } = globalThis;
  globalThis.setInterval = ((callback: () => void, ms?: number) => {
    const id = realSet(callback, ms);
    intervals.add(id);
    return id;
  }) as typeof setInterval;
  globalThis.clearInterval = ((id?: ReturnType<typeof setInterval>) => {
    if (id !== undefined) intervals.delete(id);
    realClear(id);
  }) as typeof clearInterval;
  const dropped = Promise.withResolvers<void>();
  const server = rawServer(async (peer) => {
    await peer.accept();
    await dropped.promise;
    peer.conn.close(); // no close frame
  });
  try {
    // Ticks of a second, four per close timeout: the close check goes there.
    const socket = await connect(server.url, {
      pingInterval: 4_000,
      closeTimeout: 5_000,
    });
    socket.sendStream((async function* () {
      yield new Uint8Array(10);
      await new Promise(() => {}); // waits for more, for good
    })()).catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 50));
    dropped.resolve();
    await deadline(socket.closed, 5_000, "the close");
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(intervals.size, 0, "the ticker's interval still runs");
  } finally {
    globalThis.setInterval = realSet;
    globalThis.clearInterval = realClear;
    for (const id of intervals) realClear(id);
    await server.close();
  }
});
