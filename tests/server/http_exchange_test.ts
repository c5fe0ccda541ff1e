import assert from "node:assert/strict";
import {
  type FetchHandler,
  serveHttpRequest,
} from "../../src/server/http_exchange.ts";
import { HttpRequestParser } from "../../src/protocol/http_request_parser.ts";
import { encodeLatin1 } from "../../src/protocol/_bytes.ts";
import {
  concat,
  DEADLINE,
  HttpLoop,
  pattern,
  RawHttp,
  request,
  runInMemory,
  withTimeout,
} from "./_http_helpers.ts";

const HOST: [string, string] = ["Host", "example.com"];
const utf8 = new TextEncoder();

/** Echoes method, path and body text: `POST /b hello`. */
const echoText: FetchHandler = async (request) =>
  new Response(
    `${request.method} ${new URL(request.url).pathname} ${await request
      .text()}`,
  );

// --- Deno's fetch() as the client -----------------------------------------

Deno.test("serveHttpRequest answers fetch() with the handler's response", async () => {
  let seen: { url: string; method: string; port: number } | undefined;
  await using loop = new HttpLoop((request, info) => {
    seen = {
      url: request.url,
      method: request.method,
      port: info.remoteAddr.port,
    };
    return new Response("hello", {
      status: 201,
      headers: { "x-custom": "1", "content-type": "text/plain" },
    });
  });
  using client = Deno.createHttpClient({});
  const response = await withTimeout(
    fetch(loop.url("/path?q=1"), { client }),
    DEADLINE,
    "fetch",
  );
  assert.equal(response.status, 201);
  assert.equal(response.statusText, "Created");
  assert.equal(response.headers.get("x-custom"), "1");
  assert.equal(response.headers.get("content-length"), "5");
  assert.ok(!Number.isNaN(Date.parse(response.headers.get("date") ?? "")));
  assert.equal(await response.text(), "hello");
  assert.equal(seen?.url, loop.url("/path?q=1"));
  assert.equal(seen?.method, "GET");
  assert.ok(seen!.port > 0);
});

Deno.test("serveHttpRequest keeps the connection alive across fetch() requests", async () => {
  await using loop = new HttpLoop(echoText);
  using client = Deno.createHttpClient({});
  for (const path of ["/a", "/b", "/c"]) {
    const response = await withTimeout(
      fetch(loop.url(path), { client }),
      DEADLINE,
      `fetch ${path}`,
    );
    assert.equal(await response.text(), `GET ${path} `);
    assert.equal(response.headers.get("connection"), null);
  }
  assert.equal(loop.connections, 1);
});

Deno.test("serveHttpRequest passes a fetch() POST body with Content-Length", async () => {
  const sent = pattern(300_000);
  await using loop = new HttpLoop(async (request) => {
    const body = new Uint8Array(await request.arrayBuffer());
    return Response.json({
      length: body.length,
      contentLength: request.headers.get("content-length"),
      same: body.every((byte, i) => byte === sent[i]),
    });
  });
  using client = Deno.createHttpClient({});
  const response = await withTimeout(
    fetch(loop.url("/upload"), {
      client,
      method: "POST",
      body: sent,
    }),
    DEADLINE,
    "fetch POST",
  );
  assert.deepEqual(await response.json(), {
    length: 300_000,
    contentLength: "300000",
    same: true,
  });
});

Deno.test("serveHttpRequest decodes a streamed (chunked) fetch() request body and streams it back", async () => {
  let transferEncoding: string | null = null;
  await using loop = new HttpLoop((request) => {
    transferEncoding = request.headers.get("transfer-encoding");
    return new Response(request.body);
  });
  using client = Deno.createHttpClient({});
  const parts = [pattern(10, 1), pattern(70_000, 2), pattern(1, 3)];
  const pending = [...parts];
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      const part = pending.shift();
      if (part === undefined) controller.close();
      else controller.enqueue(part);
    },
  });
  const response = await withTimeout(
    fetch(loop.url("/echo"), {
      client,
      method: "PUT",
      body,
      duplex: "half",
    } as RequestInit),
    DEADLINE,
    "fetch with a streamed body",
  );
  const echoed = new Uint8Array(
    await withTimeout(response.arrayBuffer(), DEADLINE, "the echo"),
  );
  assert.equal(transferEncoding, "chunked");
  assert.deepEqual(echoed, concat(...parts));
});

Deno.test("serveHttpRequest answers a fetch() HEAD with the GET headers and no body", async () => {
  const methods: string[] = [];
  await using loop = new HttpLoop((request) => {
    methods.push(request.method);
    return new Response("hello world", {
      headers: { "content-type": "text/plain" },
    });
  });
  using client = Deno.createHttpClient({});
  const head = await withTimeout(
    fetch(loop.url("/"), { client, method: "HEAD" }),
    DEADLINE,
    "fetch HEAD",
  );
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("content-length"), "11");
  assert.equal(await head.text(), "");
  const get = await withTimeout(
    fetch(loop.url("/"), { client }),
    DEADLINE,
    "fetch GET",
  );
  assert.equal(await get.text(), "hello world");
  assert.deepEqual(methods, ["HEAD", "GET"]);
});

// --- Raw TCP ----------------------------------------------------------------

Deno.test("serveHttpRequest answers pipelined requests in order on one connection", async () => {
  await using loop = new HttpLoop(echoText);
  using client = await RawHttp.connect(loop.addr);
  await client.write(concat(
    request("GET /a HTTP/1.1", [HOST]),
    request("POST /b HTTP/1.1", [HOST, ["Content-Length", "5"]], "hello"),
    request(
      "POST /c HTTP/1.1",
      [HOST, ["Transfer-Encoding", "chunked"]],
      "3\r\nabc\r\n0\r\n\r\n",
    ),
    request("GET /d HTTP/1.1", [HOST]),
  ));
  assert.equal((await client.readResponse()).text, "GET /a ");
  assert.equal((await client.readResponse()).text, "POST /b hello");
  assert.equal((await client.readResponse()).text, "POST /c abc");
  assert.equal((await client.readResponse()).text, "GET /d ");
  for (let i = 0; i < 4; i++) {
    assert.equal((await loop.results.take("a result")).keepAlive, true);
  }
  assert.equal(loop.connections, 1);
});

Deno.test("serveHttpRequest decodes chunked bodies sent one byte at a time (RFC 9112 §7.1)", async () => {
  await using loop = new HttpLoop(echoText);
  using client = await RawHttp.connect(loop.addr);
  const bytes = concat(
    request(
      "POST /chunks HTTP/1.1",
      [HOST, ["Transfer-Encoding", "Chunked"]],
      '5;name=value;q="x"\r\nhello\r\n' + // extensions are ignored
        "A \t;ext\r\n, 01234567\r\n" + // upper-case hex, whitespace before ;
        "0000001\r\n!\r\n" + // leading zeros
        "0\r\nX-Trailer: ignored\r\nX-Other: too\r\n\r\n",
    ),
    request("GET /next HTTP/1.1", [HOST]),
  );
  for (let i = 0; i < bytes.length; i++) {
    await client.write(bytes.subarray(i, i + 1));
  }
  assert.equal(
    (await client.readResponse()).text,
    "POST /chunks hello, 01234567!",
  );
  assert.equal((await client.readResponse()).text, "GET /next ");
});

Deno.test("serveHttpRequest rejects both Content-Length and Transfer-Encoding with 400 and closes (RFC 9112 §6.1)", async () => {
  let called = false;
  await using loop = new HttpLoop(() => {
    called = true;
    return new Response("no");
  });
  using client = await RawHttp.connect(loop.addr);
  await client.write(request("POST / HTTP/1.1", [
    HOST,
    ["Content-Length", "5"],
    ["Transfer-Encoding", "chunked"],
  ], "0\r\n\r\n"));
  const response = await client.readResponse();
  assert.equal(response.statusLine, "HTTP/1.1 400 Bad Request");
  assert.equal(response.headers.get("connection"), "close");
  assert.match(response.text, /both Content-Length and Transfer-Encoding/);
  assert.equal((await client.readToEof()).length, 0);
  assert.equal(called, false);
});

Deno.test("serveHttpRequest rejects a body over maxBodySize with 413 before calling the handler", async () => {
  let called = false;
  await using loop = new HttpLoop(() => {
    called = true;
    return new Response("no");
  }, { maxBodySize: 1000 });
  using client = await RawHttp.connect(loop.addr);
  await client.write(
    request("POST / HTTP/1.1", [HOST, ["Content-Length", "1001"]], "x"),
  );
  const response = await client.readResponse();
  assert.equal(response.statusLine, "HTTP/1.1 413 Content Too Large");
  assert.equal(response.text, "Request body is larger than 1000 bytes\n");
  assert.equal((await client.readToEof()).length, 0);
  assert.equal(called, false);
  assert.equal((await loop.results.take("the result")).keepAlive, false);
});

Deno.test("serveHttpRequest answers 413 when a chunked body grows over maxBodySize", async () => {
  await using loop = new HttpLoop(echoText, { maxBodySize: 1000 });
  using client = await RawHttp.connect(loop.addr);
  await client.write(request(
    "POST / HTTP/1.1",
    [HOST, ["Transfer-Encoding", "chunked"]],
    `200\r\n${"x".repeat(512)}\r\n200\r\n`,
  ));
  const response = await client.readResponse();
  assert.equal(response.status, 413);
  assert.equal(response.headers.get("connection"), "close");
  assert.equal(loop.errors.length, 0, "a client's mistake is not reported");
});

Deno.test("serveHttpRequest answers 413 when a chunked body grows over maxBodySize even if the handler caught the error and answered 500, as frameworks do; a 413 of its own is kept", async () => {
  await using loop = new HttpLoop(async (request) => {
    try {
      await request.arrayBuffer();
      return new Response("read");
    } catch {
      // Hono's (and most frameworks') error handler.
      return new Response("Internal Server Error", {
        status: new URL(request.url).pathname === "/own" ? 413 : 500,
        headers: { "x-handler": "yes" },
      });
    }
  }, { maxBodySize: 1000 });
  for (const [path, handler] of [["/", null], ["/own", "yes"]] as const) {
    using client = await RawHttp.connect(loop.addr);
    await client.write(request(
      `POST ${path} HTTP/1.1`,
      [HOST, ["Transfer-Encoding", "chunked"]],
      `200\r\n${"x".repeat(512)}\r\n200\r\n${"x".repeat(512)}\r\n0\r\n\r\n`,
    ));
    const response = await client.readResponse();
    assert.equal(response.status, 413, `${path}`);
    assert.equal(response.headers.get("x-handler"), handler, `${path}`);
  }
});

Deno.test("serveHttpRequest answers 500 when the handler throws, reports it, and keeps serving", async () => {
  const boom = new Error("boom");
  await using loop = new HttpLoop((request) => {
    if (new URL(request.url).pathname === "/throw") throw boom;
    if (new URL(request.url).pathname === "/reject") {
      return Promise.reject(boom);
    }
    if (new URL(request.url).pathname === "/string") {
      return "not a response" as unknown as Response;
    }
    return new Response("fine");
  });
  using client = await RawHttp.connect(loop.addr);
  for (const path of ["/throw", "/reject", "/string"]) {
    await client.write(
      request(`POST ${path} HTTP/1.1`, [HOST, ["Content-Length", "3"]], "abc"),
    );
    const failed = await client.readResponse();
    assert.equal(failed.statusLine, "HTTP/1.1 500 Internal Server Error");
    assert.equal(failed.headers.get("content-length"), "0");
    assert.equal(failed.body.length, 0);
  }
  await client.write(request("GET /ok HTTP/1.1", [HOST]));
  assert.equal((await client.readResponse()).text, "fine");
  assert.equal(loop.connections, 1);
  assert.deepEqual(loop.errors.slice(0, 2), [boom, boom]);
  assert.ok(loop.errors[2] instanceof TypeError);
  assert.match(
    (loop.errors[2] as Error).message,
    /^Cannot send response: the fetch handler must return a Response, got \[object String\]$/,
  );
});

Deno.test("serveHttpRequest survives a client that disconnects mid-response", async () => {
  const cancelled = Promise.withResolvers<void>();
  const aborted = Promise.withResolvers<void>();
  await using loop = new HttpLoop((request) => {
    request.signal.addEventListener("abort", () => aborted.resolve());
    return new Response(
      new ReadableStream({
        pull: (controller) => controller.enqueue(new Uint8Array(16 * 1024)),
        cancel: () => cancelled.resolve(),
      }),
    );
  });
  const client = await RawHttp.connect(loop.addr);
  await client.write(request("GET /forever HTTP/1.1", [HOST]));
  const head = await client.readHead();
  assert.equal(head.headers.get("transfer-encoding"), "chunked");
  client.close();
  await withTimeout(cancelled.promise, DEADLINE, "the body to be cancelled");
  await withTimeout(aborted.promise, DEADLINE, "request.signal to abort");
  assert.equal((await loop.results.take("the result")).keepAlive, false);
  assert.equal(loop.errors.length, 0);
});

Deno.test("serveHttpRequest survives a client that disconnects mid-body", async () => {
  const failure = Promise.withResolvers<unknown>();
  await using loop = new HttpLoop(async (request) => {
    try {
      return new Response(await request.text());
    } catch (error) {
      failure.resolve(error);
      throw error;
    }
  });
  const client = await RawHttp.connect(loop.addr);
  await client.write(
    request("POST / HTTP/1.1", [HOST, ["Content-Length", "1000"]], "partial"),
  );
  client.close();
  const error = await withTimeout(failure.promise, DEADLINE, "the body error");
  assert.match(String(error), /closed the connection in the middle/);
  assert.equal((await loop.results.take("the result")).keepAlive, false);
  assert.equal(loop.errors.length, 0, "a vanished client is not reported");
});

Deno.test("serveHttpRequest drains a body the handler did not read and keeps the connection", async () => {
  const getBodies: (ReadableStream | null)[] = [];
  await using loop = new HttpLoop((request) => {
    if (request.method === "GET") getBodies.push(request.body);
    return new Response(new URL(request.url).pathname);
  });
  using client = await RawHttp.connect(loop.addr);
  await client.write(concat(
    request(
      "POST /a HTTP/1.1",
      [HOST, ["Content-Length", "100000"]],
      pattern(100_000),
    ),
    request(
      "POST /b HTTP/1.1",
      [HOST, ["Transfer-Encoding", "chunked"]],
      "4\r\nGET \r\n0\r\n\r\n",
    ),
    // A GET never shows a body, but its bytes are skipped all the same.
    request("GET /c HTTP/1.1", [HOST, ["Content-Length", "4"]], "GET "),
    request("GET /d HTTP/1.1", [HOST]),
  ));
  assert.equal((await client.readResponse()).text, "/a");
  assert.equal((await client.readResponse()).text, "/b");
  assert.equal((await client.readResponse()).text, "/c");
  assert.equal((await client.readResponse()).text, "/d");
  assert.deepEqual(getBodies, [null, null]);
  assert.equal(loop.connections, 1);
});

Deno.test("serveHttpRequest follows HTTP/1.0 keep-alive rules (RFC 9112 §9.3)", async () => {
  await using loop = new HttpLoop(echoText);
  {
    using client = await RawHttp.connect(loop.addr);
    await client.write(request("GET /once HTTP/1.0", []));
    const response = await client.readResponse();
    assert.equal(response.statusLine, "HTTP/1.1 200 OK");
    assert.equal(response.headers.get("connection"), "close");
    assert.equal(response.text, "GET /once ");
    assert.equal((await client.readToEof()).length, 0);
  }
  {
    using client = await RawHttp.connect(loop.addr);
    await client.write(
      request("GET /a HTTP/1.0", [["Connection", "keep-alive"]]),
    );
    const first = await client.readResponse();
    assert.equal(first.headers.get("connection"), "keep-alive");
    await client.write(
      request("GET /b HTTP/1.0", [["Connection", "Keep-Alive"]]),
    );
    assert.equal((await client.readResponse()).text, "GET /b ");
  }
});

Deno.test("serveHttpRequest closes after Connection: close from either side", async () => {
  await using loop = new HttpLoop((request) =>
    new Response("x", {
      headers: new URL(request.url).pathname === "/bye"
        ? { connection: "close" }
        : {},
    })
  );
  for (
    const [path, headers] of [
      ["/", [HOST, ["Connection", "close"]]],
      ["/bye", [HOST]],
    ] as [string, [string, string][]][]
  ) {
    using client = await RawHttp.connect(loop.addr);
    await client.write(request(`GET ${path} HTTP/1.1`, headers));
    const response = await client.readResponse();
    assert.equal(response.headers.get("connection"), "close");
    assert.equal((await client.readToEof()).length, 0);
  }
});

Deno.test("serveHttpRequest answers Expect: 100-continue before the handler reads the body", async () => {
  await using loop = new HttpLoop(echoText);
  using client = await RawHttp.connect(loop.addr);
  await client.write(request("POST /up HTTP/1.1", [
    HOST,
    ["Content-Length", "4"],
    ["Expect", "100-continue"],
  ]));
  const interim = await client.readHead();
  assert.equal(interim.statusLine, "HTTP/1.1 100 Continue");
  await client.write("data");
  assert.equal((await client.readResponse()).text, "POST /up data");
});

Deno.test("serveHttpRequest rejects malformed requests with their status and closes", async () => {
  const cases: [string, Uint8Array, number][] = [
    ["no Host", request("GET / HTTP/1.1", []), 400],
    ["two Hosts", request("GET / HTTP/1.1", [HOST, HOST]), 400],
    ["bad Host", request("GET / HTTP/1.1", [["Host", "a b/c"]]), 400],
    ["bad target", request("GET nope HTTP/1.1", [HOST]), 400],
    // RFC 9110 §4.2.4: userinfo is to be treated as an error.
    [
      "userinfo",
      request("GET http://admin:pw@example.com/ HTTP/1.1", [HOST]),
      400,
    ],
    // RFC 9110 §4.2.1: an empty host is invalid. The URL parser would take
    // the host from the path, or skip the backslash.
    ["empty authority", request("GET http:///admin/x HTTP/1.1", [HOST]), 400],
    [
      "empty authority, then //",
      request("GET http:////evil.example/x HTTP/1.1", [HOST]),
      400,
    ],
    [
      "backslash authority",
      request("GET http://\\evil.example/x HTTP/1.1", [HOST]),
      400,
    ],
    ["https, empty authority", request("GET https:///x HTTP/1.1", [HOST]), 400],
    [
      "Content-Length: abc",
      request("POST / HTTP/1.1", [HOST, ["Content-Length", "abc"]]),
      400,
    ],
    [
      "Content-Length: +5",
      request("POST / HTTP/1.1", [HOST, ["Content-Length", "+5"]]),
      400,
    ],
    [
      "Content-Length: 5, 6",
      request("POST / HTTP/1.1", [HOST, ["Content-Length", "5, 6"]]),
      400,
    ],
    [
      "two different lengths",
      request("POST / HTTP/1.1", [HOST, ["Content-Length", "5"], [
        "Content-Length",
        "6",
      ]]),
      400,
    ],
    [
      "chunked, gzip",
      request("POST / HTTP/1.1", [HOST, [
        "Transfer-Encoding",
        "chunked, gzip",
      ]]),
      400,
    ],
    [
      "chunked twice",
      request("POST / HTTP/1.1", [HOST, [
        "Transfer-Encoding",
        "chunked, chunked",
      ]]),
      400,
    ],
    [
      "gzip, chunked",
      request("POST / HTTP/1.1", [HOST, [
        "Transfer-Encoding",
        "gzip, chunked",
      ]]),
      501,
    ],
    // A no-break space is no whitespace in HTTP (RFC 9110 §5.6.1):
    // "chunked\xa0" is no chunked, "\xa05" no length.
    [
      "Transfer-Encoding: chunked + U+00A0",
      encodeLatin1(
        "POST / HTTP/1.1\r\nHost: example.com\r\n" +
          "Transfer-Encoding: chunked\xa0\r\n\r\n0\r\n\r\n",
      ),
      400,
    ],
    [
      "Content-Length: U+00A0 + 5",
      encodeLatin1(
        "POST / HTTP/1.1\r\nHost: example.com\r\n" +
          "Content-Length: \xa05\r\n\r\nhello",
      ),
      400,
    ],
    [
      "HTTP/1.0 chunked",
      request("POST / HTTP/1.0", [["Transfer-Encoding", "chunked"]]),
      400,
    ],
    [
      "bare LF in a chunk size",
      request(
        "POST / HTTP/1.1",
        [HOST, ["Transfer-Encoding", "chunked"]],
        "5\nhello\r\n0\r\n\r\n",
      ),
      400,
    ],
    [
      "non-hex chunk size",
      request(
        "POST / HTTP/1.1",
        [HOST, ["Transfer-Encoding", "chunked"]],
        "zz\r\n",
      ),
      400,
    ],
    [
      "chunk without CRLF",
      request(
        "POST / HTTP/1.1",
        [HOST, ["Transfer-Encoding", "chunked"]],
        "5\r\nhelloX",
      ),
      400,
    ],
    [
      "unknown expectation",
      request("GET / HTTP/1.1", [HOST, ["Expect", "teapot"]]),
      417,
    ],
    ["CONNECT", request("CONNECT example.com:443 HTTP/1.1", [HOST]), 501],
    ["TRACE", request("TRACE / HTTP/1.1", [HOST]), 501],
    ["OPTIONS *", request("OPTIONS * HTTP/1.1", [HOST]), 501],
    // RFC 9112 §3.2.4: the asterisk form is for OPTIONS only.
    ["GET *", request("GET * HTTP/1.1", [HOST]), 400],
    // Request would make it HEAD, framed as an unknown method's answer.
    ["lowercase head", request("head / HTTP/1.1", [HOST]), 501],
    // The URL would decode it: request.url and Host would disagree.
    [
      "percent-encoded Host",
      request("GET / HTTP/1.1", [["Host", "ex%61mple.com"]]),
      400,
    ],
    ["HTTP/2.0", request("GET / HTTP/2.0", [HOST]), 505],
  ];
  for (const [name, bytes, status] of cases) {
    const run = await runInMemory([bytes], async (request) => {
      await request.text();
      return new Response("handled");
    });
    assert.match(run.output, new RegExp(`^HTTP/1\\.1 ${status} `), name);
    assert.match(run.output, /\r\nconnection: close\r\n/, name);
    assert.deepEqual(
      run.results.map((r) => r.keepAlive),
      [false],
      name,
    );
  }
});

Deno.test("serveHttpRequest answers a broken request body with its status, not as a handler error", async () => {
  const broken = request(
    "POST / HTTP/1.1",
    [HOST, ["Transfer-Encoding", "chunked"]],
    "5\r\nhelloX",
  );
  // The handler echoes the body: the failure surfaces in its response.
  const echoed = await runInMemory(
    [broken],
    (request) => new Response(request.body),
  );
  assert.match(echoed.output, /^HTTP\/1\.1 400 Bad Request\r\n/);
  assert.match(echoed.output, /Chunk data is not followed by CRLF\n$/);
  assert.deepEqual(echoed.errors, []);
  // The handler catches the failure and answers itself: its answer goes out,
  // and the connection closes.
  const caught = await runInMemory([broken], async (request) => {
    try {
      return new Response(await request.text());
    } catch {
      return new Response("unreadable", { status: 422 });
    }
  });
  assert.match(caught.output, /^HTTP\/1\.1 422 Unprocessable Content\r\n/);
  assert.match(caught.output, /\r\nconnection: close\r\n/);
  assert.deepEqual(caught.results.map((r) => r.keepAlive), [false]);
  assert.deepEqual(caught.errors, []);
});

Deno.test("serveHttpRequest builds request.url from the scheme and Host, or an absolute-form target", async () => {
  const urls: string[] = [];
  const run = await runInMemory([concat(
    request("GET //evil.com/x?y HTTP/1.1", [["Host", "example.com:8080"]]),
    request("GET http://other.test/abs HTTP/1.1", [HOST]),
    // The authority ends at the query too; the scheme is case-insensitive.
    request("GET HTTP://other.test:81?q HTTP/1.1", [HOST]),
    request("get /lower HTTP/1.0", []),
  )], (request) => {
    urls.push(`${request.method} ${request.url}`);
    return new Response(null);
  }, { scheme: "https" });
  assert.deepEqual(urls, [
    "GET https://example.com:8080//evil.com/x?y",
    "GET http://other.test/abs",
    "GET http://other.test:81/?q",
    "GET https://localhost/lower",
  ]);
  assert.equal(run.errors.length, 0);
});

// --- Response framing, byte-level over in-memory streams --------------------

Deno.test("serveHttpRequest writes a small response in one write, with Content-Length", async () => {
  const run = await runInMemory(
    [request("GET / HTTP/1.1", [HOST])],
    () => new Response("small body", { statusText: "Fine" }),
  );
  assert.equal(run.writes.length, 1);
  const [head, body] = run.output.split("\r\n\r\n");
  assert.equal(body, "small body");
  const lines = head.split("\r\n");
  assert.equal(lines[0], "HTTP/1.1 200 Fine");
  assert.ok(lines.includes("content-length: 10"));
  assert.ok(lines.some((line) => /^date: \w{3}, \d\d \w{3} \d{4} /.test(line)));
  assert.ok(!lines.some((line) => line.startsWith("transfer-encoding")));
});

Deno.test("serveHttpRequest streams a body of unknown length with the chunked coding", async () => {
  const release = Promise.withResolvers<void>();
  const run = runInMemory(
    [request("GET / HTTP/1.1", [HOST])],
    () =>
      new Response(
        new ReadableStream({
          async start(controller) {
            await release.promise;
            controller.enqueue(utf8.encode("abc"));
            controller.enqueue(new Uint8Array(0));
            controller.enqueue(utf8.encode("defgh"));
            controller.close();
          },
        }),
      ),
  );
  setTimeout(() => release.resolve(), 0);
  const { output, writes } = await run;
  assert.ok(writes.length >= 2, "the head goes out before the body exists");
  const [head, body] = [
    output.slice(0, output.indexOf("\r\n\r\n")),
    output.slice(output.indexOf("\r\n\r\n") + 4),
  ];
  assert.match(head, /\r\ntransfer-encoding: chunked(\r\n|$)/);
  assert.doesNotMatch(head, /content-length/);
  assert.equal(body, "3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n");
});

Deno.test("serveHttpRequest keeps HEAD, 204 and 304 answers free of body bytes (RFC 9110 §9.3.2, §15)", async () => {
  // A body that is never available at once.
  const streamBody = () =>
    new ReadableStream({ pull: () => new Promise(() => {}) });
  const run = await runInMemory([concat(
    request("HEAD /small HTTP/1.1", [HOST]),
    request("HEAD /stream HTTP/1.1", [HOST]),
    request("HEAD /declared HTTP/1.1", [HOST]),
    request("GET /204 HTTP/1.1", [HOST]),
    request("GET /304 HTTP/1.1", [HOST]),
    request("GET /end HTTP/1.1", [HOST]),
  )], (request) => {
    switch (new URL(request.url).pathname) {
      case "/small":
        return new Response("12345");
      case "/stream":
        return new Response(streamBody());
      case "/declared":
        return new Response(null, { headers: { "content-length": "99" } });
      case "/204":
        return new Response(null, { status: 204 });
      case "/304":
        // (`Response` itself refuses a body with 204, 205 and 304.)
        return new Response(null, {
          status: 304,
          headers: { etag: '"x"', "content-length": "42" },
        });
      default:
        return new Response("end");
    }
  });
  const responses = run.output.split(/(?=HTTP\/1\.1 )/);
  assert.equal(responses.length, 6);
  // Each answer but the last ends with its head.
  for (const response of responses.slice(0, 5)) {
    assert.equal(response.indexOf("\r\n\r\n"), response.length - 4, response);
  }
  assert.match(responses[0], /\r\ncontent-length: 5\r\n/);
  assert.match(responses[1], /\r\ntransfer-encoding: chunked\r\n/);
  assert.match(responses[2], /\r\ncontent-length: 99\r\n/);
  assert.match(responses[3], /^HTTP\/1\.1 204 No Content\r\n/);
  assert.doesNotMatch(responses[3], /content-length|transfer-encoding/);
  assert.match(responses[4], /^HTTP\/1\.1 304 Not Modified\r\n/);
  assert.match(responses[4], /\r\ncontent-length: 42\r\n/);
  assert.doesNotMatch(responses[4], /transfer-encoding/);
  assert.match(responses[5], /\r\n\r\nend$/);
  assert.deepEqual(run.errors, []);
  assert.ok(run.results.every((r) => r.keepAlive));
});

Deno.test("serveHttpRequest refuses a lowercase 'head' with 501 and closes: the handler would see HEAD (as Request has it) and answer without a body, while a proxy that forwarded it as an unknown method waits for one (RFC 9110 §9.1)", async () => {
  let called = false;
  const run = await runInMemory([concat(
    request("head /a HTTP/1.1", [HOST]),
    request("GET /next HTTP/1.1", [HOST]),
  )], () => {
    called = true;
    return new Response("hello world");
  });
  assert.match(run.output, /^HTTP\/1\.1 501 /);
  assert.match(run.output, /method names are case-sensitive: HEAD/);
  assert.equal(run.output.split(/(?=HTTP\/1\.1 )/).length, 1, "then closed");
  assert.equal(called, false);
});

Deno.test("serveHttpRequest writes a HEAD or 304 answer's Content-Length digits as the handler gave them, past 2^53 too", async () => {
  const run = await runInMemory([concat(
    request("HEAD /big HTTP/1.1", [HOST]),
    request("HEAD /zeros HTTP/1.1", [HOST]),
    request("GET /304 HTTP/1.1", [HOST]),
  )], (request) => {
    const path = new URL(request.url).pathname;
    const length = path === "/zeros" ? "0042" : "1000000000000000000000";
    return new Response(null, {
      status: path === "/304" ? 304 : 200,
      headers: { "content-length": length },
    });
  });
  const responses = run.output.split(/(?=HTTP\/1\.1 )/);
  assert.equal(responses.length, 3);
  assert.match(responses[0], /\r\ncontent-length: 1000000000000000000000\r\n/);
  assert.match(responses[1], /\r\ncontent-length: 42\r\n/);
  assert.match(responses[2], /\r\ncontent-length: 1000000000000000000000\r\n/);
  assert.deepEqual(run.errors, []);
});

Deno.test("serveHttpRequest writes a body with the handler's Content-Length as is", async () => {
  const run = await runInMemory(
    [request("GET / HTTP/1.1", [HOST])],
    () =>
      new Response(
        new ReadableStream({
          start(controller) {
            controller.enqueue(utf8.encode("abc"));
            setTimeout(() => {
              controller.enqueue(utf8.encode("de"));
              controller.close();
            }, 0);
          },
        }),
        { headers: { "content-length": "5" } },
      ),
  );
  assert.match(run.output, /\r\ncontent-length: 5\r\n/);
  assert.doesNotMatch(run.output, /transfer-encoding/);
  assert.ok(run.output.endsWith("\r\n\r\nabcde"));
  assert.equal(run.results[0].keepAlive, true);
});

Deno.test("serveHttpRequest closes and reports when a body breaks its Content-Length or fails", async () => {
  const failure = new Error("stream failed");
  // A body known whole before the head is written, shorter than its
  // Content-Length: a clean 500 (and the connection stays usable), not a
  // head that promises bytes which never come.
  const run = await runInMemory([concat(
    request("GET /short HTTP/1.1", [HOST]),
  )], () => new Response("abc", { headers: { "content-length": "10" } }));
  assert.match(run.output, /^HTTP\/1\.1 500 /);
  assert.doesNotMatch(run.output, /content-length: 10/);
  assert.deepEqual(run.results.map((r) => r.keepAlive), [true]);
  assert.match(String(run.errors[0]), /shorter than its Content-Length of 10/);

  const failing = await runInMemory(
    [request("GET / HTTP/1.1", [HOST])],
    () =>
      new Response(
        new ReadableStream({
          start(controller) {
            setTimeout(() => {
              controller.enqueue(utf8.encode("part"));
              controller.error(failure);
            }, 0);
          },
        }),
      ),
  );
  assert.match(failing.output, /transfer-encoding: chunked/);
  assert.ok(failing.output.endsWith("4\r\npart\r\n"), "no last chunk");
  assert.deepEqual(failing.results.map((r) => r.keepAlive), [false]);
  assert.deepEqual(failing.errors, [failure]);
});

Deno.test("serveHttpRequest delimits an unknown-length body by closing for HTTP/1.0", async () => {
  const run = await runInMemory([
    request("GET / HTTP/1.0", [["Connection", "keep-alive"]]),
  ], () =>
    new Response(
      new ReadableStream({
        start(controller) {
          setTimeout(() => {
            controller.enqueue(utf8.encode("streamed"));
            controller.close();
          }, 0);
        },
      }),
    ));
  assert.match(run.output, /\r\nconnection: close\r\n/);
  assert.doesNotMatch(run.output, /transfer-encoding|content-length/);
  assert.ok(run.output.endsWith("\r\n\r\nstreamed"));
  assert.deepEqual(run.results.map((r) => r.keepAlive), [false]);
});

Deno.test("serveHttpRequest hands back the bytes after a body, cut anywhere", async () => {
  const bytes = concat(
    request(
      "POST /a HTTP/1.1",
      [HOST, ["Transfer-Encoding", "chunked"]],
      "3\r\nabc\r\n0\r\n\r\n",
    ),
    request("POST /b HTTP/1.1", [HOST, ["Content-Length", "2"]], "xy"),
    request("GET /c HTTP/1.1", [HOST]),
  );
  for (let cut = 1; cut < bytes.length; cut += 7) {
    const run = await runInMemory(
      [bytes.subarray(0, cut), bytes.subarray(cut)],
      echoText,
    );
    const bodies = run.output.split(/HTTP\/1\.1 200 OK\r\n[^]*?\r\n\r\n/)
      .slice(1);
    assert.deepEqual(
      bodies,
      ["POST /a abc", "POST /b xy", "GET /c "],
      `cut at ${cut}`,
    );
  }
});

Deno.test("serveHttpRequest rejects invalid options", async () => {
  const reader = new ReadableStream({ type: "bytes" }).getReader({
    mode: "byob",
  });
  const writer = new WritableStream<Uint8Array>().getWriter();
  const head = new HttpRequestParser().receive(
    request("GET / HTTP/1.1", [HOST]),
  )!;
  const base = {
    fetch: () => new Response(),
    scheme: "http" as const,
    remoteAddr: { transport: "tcp" as const, hostname: "127.0.0.1", port: 1 },
    maxBodySize: 10,
  };
  await assert.rejects(
    serveHttpRequest(head, new Uint8Array(0), reader, writer, {
      ...base,
      maxBodySize: -1,
    }),
    new RangeError(
      'Cannot serve: "maxBodySize" must be a positive integer, got -1',
    ),
  );
  await assert.rejects(
    serveHttpRequest(head, new Uint8Array(0), reader, writer, {
      ...base,
      scheme: "ws" as "http",
    }),
    new TypeError('Cannot serve: "scheme" must be "http" or "https", got "ws"'),
  );
  await assert.rejects(
    serveHttpRequest(head, new Uint8Array(0), reader, writer, {
      ...base,
      fetch: undefined as unknown as FetchHandler,
    }),
    new TypeError('Cannot serve: "fetch" must be a function, got undefined'),
  );
});

Deno.test("serveHttpRequest tells onResponse each request's status once: the handler's, the 500 standing in for a response it could not send, its own refusal; not 100 Continue", async () => {
  const statuses: number[] = [];
  const run = await runInMemory(
    [
      request("GET /ok HTTP/1.1", [HOST]),
      request("GET /short HTTP/1.1", [HOST]),
      request(
        "POST /created HTTP/1.1",
        [HOST, ["Expect", "100-continue"], ["Content-Length", "2"]],
        "hi",
      ),
      request("GET /no-host HTTP/1.1", []),
    ],
    (request) => {
      switch (new URL(request.url).pathname) {
        case "/short": // shorter than its Content-Length: a 500 instead
          return new Response("abc", { headers: { "content-length": "5" } });
        case "/created":
          return new Response("made", { status: 201 });
        default:
          return new Response("ok");
      }
    },
    { onResponse: (status) => statuses.push(status) },
  );
  assert.deepEqual(
    [...run.output.matchAll(/HTTP\/1\.1 (\d+) /g)].map((m) => Number(m[1])),
    [200, 500, 100, 201, 400],
  );
  assert.deepEqual(statuses, [200, 500, 201, 400]);
  assert.equal(run.errors.length, 1, "the short body is reported");
});

Deno.test("a chunked request body in many small chunks reaches the handler as one piece per read, not one per chunk", async () => {
  const { RequestBody } = await import("../../src/server/_request_body.ts");
  const wire = new ReadableStream({ type: "bytes" }); // nothing more to read
  const body = new RequestBody(
    wire.getReader({ mode: "byob" }),
    new TextEncoder().encode("1\r\nx\r\n".repeat(1000) + "0\r\n\r\nGET /"),
    { type: "chunked", maxBodySize: 1 << 20 },
  );
  const pieces: Uint8Array[] = [];
  for await (const piece of body.stream) pieces.push(piece);
  assert.equal(pieces.length, 1);
  assert.equal(new TextDecoder().decode(pieces[0]), "x".repeat(1000));
  assert.equal(new TextDecoder().decode(body.rest), "GET /");
});
