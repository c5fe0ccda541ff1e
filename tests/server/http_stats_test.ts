import assert from "node:assert/strict";
import { serve, serveStatic } from "../../mod.ts";
import {
  DEADLINE,
  delay,
  echo,
  encodeRequest,
  LOCAL,
  RawPeer,
  upgradeHeaders,
  waitUntil,
  withTimeout,
} from "./_helpers.ts";
import { parseExposition, valueOf } from "./_prometheus.ts";
import net from "node:net";

Deno.test("stats().httpRequests counts plain HTTP requests by response status, the 500s of failed handlers and the server's own refusals included; handshake rejections stay apart", async () => {
  const root = await Deno.makeTempDir({ prefix: "duplex_http_stats_" });
  try {
    await Deno.writeTextFile(`${root}/hello.txt`, "hello");
    const files = serveStatic(root);
    await using server = serve({
      ...LOCAL,
      origins: ["https://ok.example"],
      maxHeadSize: 1024,
      logger: () => {},
      fetch: (request) => {
        const path = new URL(request.url).pathname;
        if (path === "/throw") throw new Error("handler bug");
        if (path === "/not-a-response") return "oops" as unknown as Response;
        if (path === "/created") return new Response("made", { status: 201 });
        return files(request);
      },
    }, echo);
    assert.deepEqual(server.stats().httpRequests, {});
    assert.equal(server.stats().httpHandlerErrors, 0);

    using client = Deno.createHttpClient({});
    const base = `http://127.0.0.1:${server.addr.port}`;
    for (
      const [method, path, status] of [
        ["GET", "/hello.txt", 200],
        ["HEAD", "/hello.txt", 200],
        ["GET", "/missing.txt", 404],
        ["POST", "/created", 201],
        ["GET", "/throw", 500],
        ["GET", "/not-a-response", 500],
      ] as const
    ) {
      const response = await fetch(`${base}${path}`, { client, method });
      await response.body?.cancel();
      assert.equal(response.status, status, `${method} ${path}`);
    }

    // The server's own refusal of a plain request: no Host (400).
    {
      using peer = await RawPeer.connect(server.addr);
      await peer.write("GET /hello.txt HTTP/1.1\r\n\r\n");
      assert.equal((await peer.readResponse()).status, 400);
    }
    // 100 Continue is an interim answer: the request counts once, as 201.
    {
      using peer = await RawPeer.connect(server.addr);
      await peer.write(
        "POST /created HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n" +
          "Content-Length: 2\r\nConnection: close\r\n\r\n",
      );
      assert.equal((await peer.readResponse()).status, 100);
      await peer.write("hi");
      assert.equal((await peer.readResponse()).status, 201);
    }
    // Handshake rejections: a WebSocket request from a foreign origin
    // (403), and a head too large to tell what it is (431).
    {
      using peer = await RawPeer.connect(server.addr);
      await peer.write(
        encodeRequest("GET / HTTP/1.1", [
          ...upgradeHeaders(server.addr),
          ["Origin", "https://bad.example"],
        ]),
      );
      assert.equal((await peer.readResponse()).status, 403);
    }
    {
      using peer = await RawPeer.connect(server.addr);
      await peer.write(
        `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${"x".repeat(2048)}\r\n\r\n`,
      );
      assert.equal((await peer.readResponse()).status, 431);
    }

    const stats = server.stats();
    assert.deepEqual(stats.httpRequests, {
      200: 2,
      201: 2,
      400: 1,
      404: 1,
      500: 2,
    });
    assert.equal(stats.httpHandlerErrors, 2);
    assert.deepEqual(stats.handshakeRejections, { 403: 1, 431: 1 });
    assert.equal(stats.totalConnections, 0);

    const families = parseExposition(server.metrics());
    assert.equal(families.get("duplex_http_requests_total")?.type, "counter");
    for (const [code, count] of Object.entries(stats.httpRequests)) {
      assert.equal(
        valueOf(families, "duplex_http_requests_total", { code }),
        count,
      );
    }
    assert.equal(
      families.get("duplex_http_requests_total")?.samples.length,
      5,
    );
    assert.equal(valueOf(families, "duplex_http_handler_errors_total"), 2);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("stats().httpHandlerErrors counts a response body that fails after its head went out; the request counts under its status", async () => {
  let failBody!: (error: Error) => void;
  await using server = serve({
    ...LOCAL,
    logger: () => {},
    fetch: () =>
      new Response(
        new ReadableStream<Uint8Array>({
          start(controller) {
            failBody = (error) => controller.error(error);
          },
        }),
      ),
  }, echo);
  using peer = await RawPeer.connect(server.addr);
  await peer.write("GET /events HTTP/1.1\r\nHost: a\r\n\r\n");
  const response = await peer.readResponse();
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("transfer-encoding"), "chunked");
  assert.deepEqual(server.stats().httpRequests, { 200: 1 });
  assert.equal(server.stats().httpHandlerErrors, 0);
  failBody(new Error("the feed broke"));
  await peer.readToEof(); // cut short: no last chunk
  assert.equal(server.stats().httpHandlerErrors, 1);
  assert.deepEqual(server.stats().httpRequests, { 200: 1 });
});

Deno.test("stats().httpRequests does not count the late response of an exchange abandoned at requestTimeout: it is never sent, and counts as a timeout only", async () => {
  const answer = Promise.withResolvers<void>();
  const answered = Promise.withResolvers<void>();
  await using server = serve({
    ...LOCAL,
    requestTimeout: 300,
    logger: () => {},
    fetch: async () => {
      await answer.promise;
      answered.resolve();
      return new Response("late");
    },
  }, echo);
  using peer = await RawPeer.connect(server.addr);
  await peer.write("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n");
  await waitUntil(
    () => server.stats().timeouts.request === 1,
    "the request to time out",
  );
  answer.resolve();
  await answered.promise;
  await delay(100); // the late response meets a closed exchange
  assert.deepEqual(server.stats().httpRequests, {});
  assert.equal(server.stats().timeouts.request, 1);
});

/** Connects with node:net, writes `request`, and resets the connection when `resetWhen` resolves; resolves with what the client received. */
function resettingClient(
  port: number,
  request: string,
  resetWhen: (received: () => string) => Promise<unknown>,
): Promise<string> {
  return new Promise((resolve) => {
    let received = "";
    const socket = net.connect(port, "127.0.0.1", async () => {
      socket.write(request);
      await resetWhen(() => received);
      socket.resetAndDestroy();
      resolve(received);
    });
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => received += chunk);
    socket.on("error", () => {});
  });
}

Deno.test("stats().httpRequests does not count answers the client never got: a body cut by a reset (its 400), a slow handler's answer after the client reset", async () => {
  const answer = Promise.withResolvers<void>();
  const answered: number[] = [];
  await using server = serve({
    ...LOCAL,
    logger: () => {},
    fetch: async (request) => {
      if (request.method === "POST") {
        await request.arrayBuffer().catch(() => {});
        return new Response("read");
      }
      await answer.promise;
      answered.push(Date.now());
      return new Response("late");
    },
  }, echo);
  const port = server.addr.port;
  const got = await Promise.all([
    resettingClient(
      port,
      "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10000\r\n\r\n" +
        "x".repeat(100),
      () => delay(100),
    ),
    resettingClient(
      port,
      "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n",
      () => delay(100),
    ),
  ]);
  assert.deepEqual(got, ["", ""]);
  await waitUntil(
    () => server.stats().transportConnections <= 1,
    "the upload's connection to end",
  );
  answer.resolve();
  await waitUntil(() => answered.length === 1, "the slow handler");
  await waitUntil(
    () => server.stats().transportConnections === 0,
    "the connections to end",
  );
  await delay(50);
  assert.deepEqual(server.stats().httpRequests, {});
});

Deno.test("a keep-alive connection reset while idle, after its answer, is no connection error (it failed after its request head, not before)", async () => {
  const events: string[] = [];
  await using server = serve({
    ...LOCAL,
    logger: (event) => events.push(event.type),
    fetch: () => new Response("hi"),
  }, echo);
  const got = await resettingClient(
    server.addr.port,
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    (received) => waitUntil(() => received().endsWith("hi"), "the answer"),
  );
  assert.match(got, /^HTTP\/1\.1 200 OK\r\n/);
  await waitUntil(
    () => server.stats().transportConnections === 0,
    "the connection to end",
  );
  assert.deepEqual(server.stats().httpRequests, { 200: 1 });
  assert.equal(server.stats().connectionErrors, 0);
  assert.deepEqual(events.filter((type) => type === "connection-error"), []);
});

Deno.test("an idle keep-alive connection closed at handshakeTimeout with no next request begun is no timeout; one whose next head stopped halfway is a handshake timeout", async () => {
  const phases: string[] = [];
  await using server = serve({
    ...LOCAL,
    handshakeTimeout: 200,
    logger: (event) => {
      if (event.type === "timeout") phases.push(event.phase);
    },
    fetch: () => new Response("hi"),
  }, echo);
  // (A CRLF after a request is an empty line a server may ignore: no start.)
  for (const next of ["", "\r\n", "GET /second HTT"]) {
    using peer = await RawPeer.connect(server.addr);
    await peer.write(`GET / HTTP/1.1\r\nHost: a\r\n\r\n${next}`);
    const rest = await withTimeout(peer.readToEof(), DEADLINE, "the close");
    assert.match(new TextDecoder().decode(rest), /^HTTP\/1\.1 200 OK\r\n/);
  }
  assert.deepEqual(phases, ["handshake"]);
  assert.deepEqual(server.stats().timeouts, { handshake: 1 });
  assert.deepEqual(server.stats().httpRequests, { 200: 3 });
});
