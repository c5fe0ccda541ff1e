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
