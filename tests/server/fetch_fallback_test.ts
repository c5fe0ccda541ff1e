import assert from "node:assert/strict";
import { serve } from "../../mod.ts";
import { RawHttp, request } from "./_http_helpers.ts";
import {
  DEADLINE,
  delay,
  echo,
  encodeRequest,
  LOCAL,
  NpmClient,
  RawPeer,
  upgradeHeaders,
  waitUntil,
  withTimeout,
  wsUrl,
} from "./_helpers.ts";

Deno.test("serve({fetch}) answers plain HTTP with keep-alive, bodies and HEAD, next to WebSockets on the same port", async () => {
  const seen: string[] = [];
  await using server = serve({
    ...LOCAL,
    fetch: async (request, info) => {
      seen.push(`${request.method} ${new URL(request.url).pathname}`);
      assert.equal(info.remoteAddr.hostname, "127.0.0.1");
      const body = request.body ? await request.text() : "";
      return new Response(`${request.method} ${body.length}`, {
        headers: { "x-path": new URL(request.url).pathname },
      });
    },
  }, echo);
  using client = Deno.createHttpClient({});
  const base = `http://127.0.0.1:${server.addr.port}`;
  const get = await fetch(`${base}/a`, { client });
  assert.equal(get.status, 200);
  assert.equal(await get.text(), "GET 0");
  const post = await fetch(`${base}/b`, {
    client,
    method: "POST",
    body: "x".repeat(10_000),
  });
  assert.equal(await post.text(), "POST 10000");
  const head = await fetch(`${base}/c`, { client, method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("x-path"), "/c");
  assert.equal(await head.text(), "");
  assert.deepEqual(seen, ["GET /a", "POST /b", "HEAD /c"]);
  // Deno's fetch kept one connection for all three requests.
  assert.equal(server.stats().totalConnections, 0, "no WebSocket yet");
  await using ws = await NpmClient.connect(wsUrl(server.addr));
  assert.equal(
    await ws.roundTrip("still a WebSocket server"),
    "still a WebSocket server",
  );
});

Deno.test("serve({fetch}) upgrades a WebSocket request that follows a plain request on one keep-alive connection", async () => {
  await using server = serve({
    ...LOCAL,
    fetch: () => new Response("plain"),
  }, echo);
  using peer = await RawPeer.connect(server.addr);
  const host = `127.0.0.1:${server.addr.port}`;
  await peer.write(
    `GET /page HTTP/1.1\r\nHost: ${host}\r\n\r\n` +
      new TextDecoder().decode(
        encodeRequest("GET /ws HTTP/1.1", upgradeHeaders(server.addr)),
      ),
  );
  const first = await peer.readResponse();
  assert.equal(first.status, 200);
  assert.equal(first.body, "plain");
  const second = await peer.readResponse();
  assert.equal(second.status, 101);
  assert.equal(server.connections, 1);
});

Deno.test("serve({fetch}) closes an HTTP exchange that outlasts requestTimeout", async () => {
  const events: string[] = [];
  await using server = serve({
    ...LOCAL,
    requestTimeout: 100,
    logger: (event) => {
      if (event.type === "timeout") events.push(event.phase);
    },
    fetch: () => new Promise<Response>(() => {}), // never answers
  }, echo);
  using peer = await RawPeer.connect(server.addr);
  await peer.write(
    `GET / HTTP/1.1\r\nHost: 127.0.0.1:${server.addr.port}\r\n\r\n`,
  );
  const rest = await withTimeout(peer.readToEof(), DEADLINE, "the close");
  assert.equal(rest.length, 0);
  assert.deepEqual(events, ["request"]);
  assert.deepEqual(server.stats().timeouts, { request: 1 });
});

Deno.test("serve({fetch}) lets a response body stream on past requestTimeout once its head is written (server-sent events)", async () => {
  await using server = serve({
    ...LOCAL,
    requestTimeout: 200,
    fetch: () => {
      let n = 0;
      return new Response(
        new ReadableStream({
          async pull(controller) {
            await new Promise((resolve) => setTimeout(resolve, 100));
            controller.enqueue(new TextEncoder().encode(`data: ${n}\n\n`));
            if (++n === 6) controller.close();
          },
        }),
        { headers: { "content-type": "text/event-stream" } },
      );
    },
  }, echo);
  using client = Deno.createHttpClient({});
  const response = await fetch(`http://127.0.0.1:${server.addr.port}/events`, {
    client,
  });
  const text = await withTimeout(response.text(), DEADLINE, "the events");
  assert.equal(text, [0, 1, 2, 3, 4, 5].map((n) => `data: ${n}\n\n`).join(""));
  assert.deepEqual(server.stats().timeouts, {});
});

Deno.test("serve({fetch}) does not cut a large response past requestTimeout for a client that reads it slowly, pausing less than requestTimeout at a time", async () => {
  const size = 16 * 1024 * 1024;
  await using server = serve({
    ...LOCAL,
    requestTimeout: 600,
    fetch: () => new Response(new Uint8Array(size)),
  }, echo);
  using peer = await RawPeer.connect(server.addr);
  await peer.write(
    `GET / HTTP/1.1\r\nHost: 127.0.0.1:${server.addr.port}\r\nConnection: close\r\n\r\n`,
  );
  // About 3 s in all, well past requestTimeout: 1 MiB, then a pause.
  const buffer = new Uint8Array(64 * 1024);
  let received = 0;
  for (let sincePause = 0;;) {
    const n = await withTimeout(peer.conn.read(buffer), DEADLINE, "a read");
    if (n === null) break;
    received += n;
    sincePause += n;
    if (sincePause >= 1024 * 1024) {
      sincePause = 0;
      await delay(200);
    }
  }
  assert.ok(received > size, `${received} bytes`);
  assert.deepEqual(server.stats().timeouts, {});
});

Deno.test("serve({fetch}) closes a streamed response's connection when the client takes nothing of a write for requestTimeout (it stopped reading)", async () => {
  const canceled = Promise.withResolvers<void>();
  await using server = serve({
    ...LOCAL,
    requestTimeout: 300,
    fetch: () =>
      new Response(
        new ReadableStream({
          pull(controller) {
            controller.enqueue(new Uint8Array(256 * 1024));
          },
          cancel: () => canceled.resolve(),
        }),
      ),
  }, echo);
  using peer = await RawPeer.connect(server.addr);
  await peer.write(
    `GET /download HTTP/1.1\r\nHost: 127.0.0.1:${server.addr.port}\r\n\r\n`,
  );
  await withTimeout(canceled.promise, DEADLINE, "the body canceled");
  await waitUntil(
    () => server.stats().transportConnections === 0,
    "the connection closed",
  );
  assert.deepEqual(server.stats().timeouts, { response: 1 });
});

for (
  const [what, requestLine, fetch] of [
    ["HEAD responses", "HEAD / HTTP/1.1", () => new Response("hello")],
    [
      "204 responses",
      "GET / HTTP/1.1",
      () => new Response(null, { status: 204 }),
    ],
    ["500s of a handler that throws", "GET / HTTP/1.1", () => {
      throw new Error("boom");
    }],
  ] as const
) {
  Deno.test(`serve({fetch}) closes the connection of a client that pipelines requests and stops reading the answers (${what}: no body to write) for requestTimeout`, async () => {
    await using server = serve({
      ...LOCAL,
      requestTimeout: 300,
      logger: () => {},
      fetch,
    }, echo);
    using peer = await RawPeer.connect(server.addr);
    const batch = new TextEncoder().encode(
      `${requestLine}\r\nHost: 127.0.0.1\r\n\r\n`.repeat(500),
    );
    // Until the server, stuck writing answers nobody reads, takes no more
    // requests, then closes the connection and our write fails.
    const flooding = (async () => {
      try {
        for (;;) await peer.conn.write(batch);
      } catch {
        // Closed by the server.
      }
    })();
    await withTimeout(flooding, 3 * DEADLINE, "the server to close");
    await waitUntil(
      () => server.stats().transportConnections === 0,
      "the connection closed",
    );
    assert.deepEqual(server.stats().timeouts, { response: 1 });
  });
}

Deno.test("serve({fetch}): a response body waiting for data is canceled and request.signal aborted when the exchange is abandoned (shutdown)", async () => {
  const canceled = Promise.withResolvers<void>();
  const aborted = Promise.withResolvers<void>();
  const started = Promise.withResolvers<void>();
  const server = serve({
    ...LOCAL,
    fetch: (request) => {
      request.signal.addEventListener("abort", () => aborted.resolve());
      // An event stream: a first event, then nothing for a long time.
      return new Response(
        new ReadableStream({
          start(controller) {
            controller.enqueue(new TextEncoder().encode("data: hi\n\n"));
            started.resolve();
          },
          cancel: () => canceled.resolve(),
        }),
        { headers: { "content-type": "text/event-stream" } },
      );
    },
  }, echo);
  try {
    using peer = await RawPeer.connect(server.addr);
    await peer.write(
      `GET /events HTTP/1.1\r\nHost: 127.0.0.1:${server.addr.port}\r\n\r\n`,
    );
    await withTimeout(started.promise, DEADLINE, "the stream to start");
    server.shutdown({ timeout: 0 });
    await withTimeout(canceled.promise, DEADLINE, "the body canceled");
    await withTimeout(aborted.promise, DEADLINE, "request.signal aborted");
  } finally {
    await server.shutdown();
  }
});

Deno.test("serve({fetch}) answers a request target with a fragment with 400, for plain HTTP and WebSocket upgrades alike (RFC 9112 §3.2)", async () => {
  await using server = serve({
    ...LOCAL,
    fetch: () => new Response("reached the handler"),
  }, echo);
  const host: [string, string][] = [["Host", `127.0.0.1:${server.addr.port}`]];
  for (const headers of [host, upgradeHeaders(server.addr)]) {
    using peer = await RawPeer.connect(server.addr);
    await peer.write(encodeRequest("GET /path#fragment HTTP/1.1", headers));
    const response = await withTimeout(
      peer.readResponse(),
      DEADLINE,
      "the answer",
    );
    assert.equal(response.status, 400);
    assert.doesNotMatch(response.body, /reached the handler/);
  }
});

Deno.test("serve({fetch}) answers 500 for a response with a control character in a header value (RFC 9110 §5.5), which Headers lets through, and counts a handler error", async () => {
  await using server = serve({
    ...LOCAL,
    logger: () => {},
    fetch: () => new Response("ok", { headers: { "x-a": "a\x07b" } }),
  }, echo);
  using client = Deno.createHttpClient({});
  const response = await fetch(`http://127.0.0.1:${server.addr.port}/`, {
    client,
  });
  assert.equal(response.status, 500);
  assert.equal(response.headers.get("x-a"), null);
  await response.body?.cancel();
  assert.equal(server.stats().httpHandlerErrors, 1);
});

Deno.test("serve({fetch}) passes on a response from fetch() (a proxy) whose upstream compressed it: the body is already decoded, so its Content-Encoding and Content-Length go, as Deno.serve drops them", async () => {
  const text = "proxied ".repeat(5_000);
  const gzipped = await new Response(
    new Blob([text]).stream().pipeThrough(new CompressionStream("gzip")),
  ).bytes();
  await using upstream = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    () =>
      new Response(gzipped, {
        headers: {
          "content-encoding": "gzip",
          "content-length": `${gzipped.length}`,
          "content-type": "text/plain",
        },
      }),
  );
  using client = Deno.createHttpClient({});
  await using server = serve({
    ...LOCAL,
    fetch: () => fetch(`http://127.0.0.1:${upstream.addr.port}/`, { client }),
  }, echo);
  // A raw request: a client that asks for no coding gets the bytes as they are.
  using http = await RawHttp.connect(server.addr);
  await http.write(request("GET / HTTP/1.1", [["Host", "x"]]));
  const response = await http.readResponse();
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-encoding"), null);
  assert.equal(response.text, text);
});

Deno.test("serve({fetch}) tells a client how long an idle keep-alive connection waits for its next request (Keep-Alive: timeout, the handshake timeout), so that it does not reuse one as it closes", async () => {
  await using server = serve({
    ...LOCAL,
    handshakeTimeout: 7_500,
    fetch: () => new Response("ok"),
  }, echo);
  using http = await RawHttp.connect(server.addr);
  await http.write(request("GET / HTTP/1.1", [["Host", "x"]]));
  const kept = await http.readResponse();
  assert.equal(kept.headers.get("keep-alive"), "timeout=7");
  await http.write(
    request("GET / HTTP/1.1", [["Host", "x"], ["Connection", "close"]]),
  );
  const closing = await http.readResponse();
  assert.equal(closing.headers.get("connection"), "close");
  assert.equal(closing.headers.get("keep-alive"), null);
});

Deno.test("serve({fetch}) gives an in-memory response of any size a Content-Length (not the chunked coding), so that HTTP/1.0 keep-alive clients keep their connection", async () => {
  const big = new Uint8Array(200_000).fill(7);
  await using server = serve({
    ...LOCAL,
    fetch: () => new Response(big),
  }, echo);
  using http = await RawHttp.connect(server.addr);
  await http.write(
    request("GET / HTTP/1.0", [["Host", "x"], ["Connection", "keep-alive"]]),
  );
  const response = await http.readResponse();
  assert.equal(response.headers.get("content-length"), `${big.length}`);
  assert.equal(response.headers.get("connection"), "keep-alive");
  assert.deepEqual(response.body, big);
});

Deno.test("serve({fetch}) ignores the Upgrade of an HTTP/1.0 request and serves it as plain HTTP, closing after it (RFC 9110 §7.8)", async () => {
  await using server = serve({
    ...LOCAL,
    fetch: (request) => new Response(`plain ${request.headers.get("upgrade")}`),
  }, echo);
  using peer = await RawPeer.connect(server.addr);
  // A WebSocket frame sent at once after the head is not a request.
  const frame = new Uint8Array([0x81, 0x82, 1, 2, 3, 4, 0x69 ^ 1, 0x21 ^ 2]);
  await peer.write(
    new Uint8Array([
      ...encodeRequest("GET /ws HTTP/1.0", upgradeHeaders(server.addr)),
      ...frame,
    ]),
  );
  const response = await peer.readResponse();
  assert.equal(response.status, 200);
  assert.equal(response.body, "plain websocket");
  assert.equal((await peer.readToEof()).length, 0, "closed, nothing more");
  assert.equal(server.stats().totalConnections, 0);
  assert.deepEqual(server.stats().httpRequests, { 200: 1 });
});

Deno.test("serve({fetch}): an upgrade on a keep-alive connection, and its onUpgrade, have the whole handshakeTimeout from when it began, not what the idle wait before it left", async () => {
  await using server = serve({
    ...LOCAL,
    handshakeTimeout: 600,
    fetch: () => new Response("plain"),
    onUpgrade: () => delay(300),
  }, echo);
  using peer = await RawPeer.connect(server.addr);
  await peer.write(`GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  assert.equal((await peer.readResponse()).status, 200);
  await delay(450); // idle, within the keep-alive's 600 ms
  await peer.write(
    encodeRequest("GET /ws HTTP/1.1", upgradeHeaders(server.addr)),
  );
  assert.equal((await peer.readResponse()).status, 101);
});
