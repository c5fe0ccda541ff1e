/**
 * `maxConnectionsPerAddress`: real sockets from two loopback addresses
 * (127.0.0.1 and 127.0.0.2; the whole of 127/8 is loopback on Linux), npm:ws
 * clients bound to each with its `localAddress` option.
 *
 * @module
 */
import assert from "node:assert/strict";
import { serve, type ServeOptions, type ServerLogEvent } from "../../mod.ts";
import {
  echo,
  LOCAL,
  NpmClient,
  npmRejection,
  RawPeer,
  SocketTracker,
  waitUntil,
  wsUrl,
} from "./_helpers.ts";
import { RawHttp, request } from "./_http_helpers.ts";

const FIRST = { localAddress: "127.0.0.1" };
const OTHER = { localAddress: "127.0.0.2" };

/** A GET on a raw keep-alive connection from 127.0.0.1. */
async function httpGet(addr: Deno.NetAddr, http?: RawHttp) {
  const connection = http ?? await RawHttp.connect(addr);
  await connection.write(
    request("GET / HTTP/1.1", [["Host", `127.0.0.1:${addr.port}`]]),
  );
  return { http: connection, response: await connection.readResponse() };
}

Deno.test(
  "serve({maxConnectionsPerAddress: 2}) answers a third connection from one address 429 with Retry-After, serves another address, and lets the first in again once one of its connections closes",
  async () => {
    const events: ServerLogEvent[] = [];
    const tracker = new SocketTracker();
    await using server = serve({
      ...LOCAL,
      maxConnectionsPerAddress: 2,
      logger: (event) => events.push(event),
    }, tracker.wrap(echo));
    const url = wsUrl(server.addr);
    const first = await NpmClient.connect(url, FIRST);
    await using second = await NpmClient.connect(url, FIRST);
    assert.equal(await first.roundTrip("1"), "1");
    assert.equal(await second.roundTrip("2"), "2");

    const seen = await npmRejection(url, FIRST);
    assert.equal(seen.status, 429);
    assert.equal(seen.headers["retry-after"], "1");
    assert.equal(seen.headers["connection"], "close");
    assert.match(seen.body, /too many connections/i);

    // Another address has its own count.
    await using other = await NpmClient.connect(url, OTHER);
    assert.equal(await other.roundTrip("3"), "3");
    const otherSocket = await tracker.socket(other.port);
    assert.equal(otherSocket.remoteAddr.hostname, "127.0.0.2");
    assert.equal(await second.roundTrip("still fine"), "still fine");

    const stats = server.stats();
    assert.deepEqual(stats.handshakeRejections, { 429: 1 });
    const rejected = events.filter((e) => e.type === "handshake-rejected");
    assert.equal(rejected.length, 1);
    assert.ok(rejected[0].type === "handshake-rejected");
    assert.equal(rejected[0].status, 429);
    assert.equal(rejected[0].remoteAddr.hostname, "127.0.0.1");

    // One of 127.0.0.1's connections ends: the next one is served.
    await first.close(1000);
    await tracker.closed(first.port);
    await waitUntil(
      () => server.stats().transportConnections === 2,
      "the first connection to end on the server",
    );
    await using again = await NpmClient.connect(url, FIRST);
    assert.equal(await again.roundTrip("4"), "4");
    // And the limit holds again.
    assert.equal((await npmRejection(url, FIRST)).status, 429);
    assert.deepEqual(server.stats().handshakeRejections, { 429: 2 });
  },
);

Deno.test(
  "serve({maxConnectionsPerAddress}) counts plain HTTP connections and connections still in their handshake",
  async () => {
    await using server = serve({
      ...LOCAL,
      maxConnectionsPerAddress: 2,
      fetch: () => new Response("plain"),
    }, echo);
    const url = wsUrl(server.addr);
    // A keep-alive HTTP connection, and one that has sent nothing yet.
    const { http, response } = await httpGet(server.addr);
    using _http = http;
    assert.equal(response.status, 200);
    assert.equal(response.text, "plain");
    using idle = await RawPeer.connect(server.addr);
    await waitUntil(
      () => server.stats().transportConnections === 2,
      "the server to accept both connections",
    );

    // A WebSocket and an HTTP request from the same address are refused...
    assert.equal((await npmRejection(url, FIRST)).status, 429);
    {
      const { http: third, response } = await httpGet(server.addr);
      using _ = third;
      assert.equal(response.status, 429);
      assert.equal(response.headers.get("retry-after"), "1");
      assert.equal(response.headers.get("connection"), "close");
      assert.equal(response.statusLine, "HTTP/1.1 429 Too Many Requests");
    }
    // ...while the keep-alive connection goes on, and another address is
    // served.
    assert.equal((await httpGet(server.addr, http)).response.text, "plain");
    await using other = await NpmClient.connect(url, OTHER);
    assert.equal(await other.roundTrip("hi"), "hi");

    // The silent connection leaves: a plain HTTP request gets in again.
    idle.close();
    await waitUntil(
      () => server.stats().transportConnections === 2,
      "the silent connection to end on the server",
    );
    const { http: fourth, response: served } = await httpGet(server.addr);
    using _fourth = fourth;
    assert.equal(served.status, 200);
    assert.deepEqual(server.stats().handshakeRejections, { 429: 2 });
  },
);

Deno.test(
  "serve({maxConnectionsPerAddress: 1}) does not keep counting the connections it refused",
  async () => {
    const tracker = new SocketTracker();
    await using server = serve(
      { ...LOCAL, maxConnectionsPerAddress: 1 },
      tracker.wrap(echo),
    );
    const url = wsUrl(server.addr);
    const only = await NpmClient.connect(url, FIRST);
    for (let i = 0; i < 5; i++) {
      assert.equal((await npmRejection(url, FIRST)).status, 429);
    }
    await only.close(1000);
    await tracker.closed(only.port);
    await waitUntil(
      () => server.stats().transportConnections === 0,
      "every connection to end on the server",
    );
    // Counted, the five refusals would keep 127.0.0.1 out for good.
    await using next = await NpmClient.connect(url, FIRST);
    assert.equal(await next.roundTrip("in"), "in");
    assert.deepEqual(server.stats().handshakeRejections, { 429: 5 });
  },
);

Deno.test(
  "serve({maxConnections, maxConnectionsPerAddress}) checks maxConnections first: 503 when both are reached",
  async () => {
    await using server = serve({
      ...LOCAL,
      maxConnections: 2,
      maxConnectionsPerAddress: 1,
    }, echo);
    const url = wsUrl(server.addr);
    await using _first = await NpmClient.connect(url, FIRST);
    // 127.0.0.1 is at its limit, the server is not.
    assert.equal((await npmRejection(url, FIRST)).status, 429);
    // A refusal holds a slot of maxConnections until its answer is out.
    await waitUntil(
      () => server.stats().transportConnections === 1,
      "the refused connection to end on the server",
    );
    await using _other = await NpmClient.connect(url, OTHER);
    // Now both are.
    const seen = await npmRejection(url, FIRST);
    assert.equal(seen.status, 503);
    assert.equal(seen.headers["retry-after"], "1");
    assert.deepEqual(server.stats().handshakeRejections, { 429: 1, 503: 1 });
  },
);

Deno.test(
  "serve({maxConnectionsPerAddress}) takes a positive integer or Infinity, and rejects anything else naming the option and the value",
  async () => {
    for (const value of [1, 2, 1000, Infinity, undefined]) {
      await using _server = serve(
        { ...LOCAL, maxConnectionsPerAddress: value },
        echo,
      );
    }
    for (const value of [0, -1, 1.5, NaN, -Infinity, 2 ** 53]) {
      assert.throws(
        () =>
          serve({ ...LOCAL, maxConnectionsPerAddress: value }, echo).shutdown(),
        {
          name: "RangeError",
          message:
            `Cannot serve: "maxConnectionsPerAddress" must be a positive integer or Infinity, got ${value}`,
        },
        String(value),
      );
    }
    assert.throws(
      () =>
        serve(
          {
            ...LOCAL,
            maxConnectionsPerAddress: "2",
          } as unknown as ServeOptions,
          echo,
        ),
      {
        name: "TypeError",
        message:
          'Cannot serve: "maxConnectionsPerAddress" must be a positive integer or Infinity, got string "2"',
      },
    );
    // A near miss is caught by name.
    assert.throws(
      () =>
        serve(
          { ...LOCAL, maxConnectionPerAddress: 2 } as unknown as ServeOptions,
          echo,
        ),
      {
        name: "TypeError",
        message:
          'Cannot serve: unknown option "maxConnectionPerAddress" (did you mean "maxConnectionsPerAddress"?)',
      },
    );
  },
);

Deno.test(
  "serve(): connections being refused do not count against maxConnections, so a flood refused 429 from one address does not crowd another address out with 503",
  async () => {
    const net = await import("node:net");
    await using server = serve({
      ...LOCAL,
      maxConnections: 3,
      maxConnectionsPerAddress: 1,
      logger: () => {},
    }, echo);
    const url = wsUrl(server.addr);
    await using held = await NpmClient.connect(url, OTHER);
    // Five more from that address, which neither read nor close: each is
    // answered 429, and held while the server waits for it to read that
    // (up to a second).
    const flood = await Promise.all(
      Array.from(
        { length: 5 },
        () =>
          new Promise<import("node:net").Socket>((resolve, reject) => {
            const socket = net.connect({
              host: "127.0.0.1",
              port: server.addr.port,
              localAddress: OTHER.localAddress,
            }, () => resolve(socket));
            socket.on("error", reject);
          }),
      ),
    );
    try {
      const refused = () =>
        Object.values(server.stats().handshakeRejections)
          .reduce((sum, count) => sum + count, 0);
      await waitUntil(() => refused() === 5, "the five to be refused");
      assert.deepEqual(server.stats().handshakeRejections, { 429: 5 });
      await using other = await NpmClient.connect(url, FIRST);
      assert.equal(await other.roundTrip("in"), "in");
      assert.equal(await held.roundTrip("still"), "still");
      assert.equal(server.stats().handshakeRejections[503], undefined);
    } finally {
      for (const socket of flood) socket.destroy();
    }
  },
);

Deno.test(
  "serve({maxConnections, maxConnectionsPerAddress}): a WebSocket whose connection closed stops counting at once, though its handler runs on",
  async () => {
    const cleanup = Promise.withResolvers<void>();
    await using server = serve({
      ...LOCAL,
      maxConnections: 1,
      maxConnectionsPerAddress: 1,
    }, async (socket) => {
      for await (const message of socket) await socket.send(message);
      if (socket.url.pathname === "/first") await cleanup.promise;
    });
    const url = wsUrl(server.addr);
    const first = await NpmClient.connect(`${url}first`, FIRST);
    await first.close(1000);
    await waitUntil(
      () => server.stats().transportConnections === 0,
      "the closed connection to stop counting",
    );
    // Its handler still cleans up; neither limit holds the next one out.
    await using next = await NpmClient.connect(url, FIRST);
    assert.equal(await next.roundTrip("in"), "in");
    cleanup.resolve();
  },
);
