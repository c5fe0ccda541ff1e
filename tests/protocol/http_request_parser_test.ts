import assert from "node:assert/strict";
import {
  DEFAULT_MAX_HEAD_SIZE,
  DEFAULT_MAX_HEADERS,
  HandshakeError,
  type HttpRequestHead,
  HttpRequestParser,
  type HttpRequestParserOptions,
} from "./_core.ts";
import {
  clientFrame,
  concat,
  cut,
  prng,
  SEEDS,
  splitAt,
  utf8,
} from "./_helpers.ts";

const latin1 = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));

const REQUEST = "GET /chat?room=1 HTTP/1.1\r\n" +
  "Host: server.example.com\r\n" +
  "Upgrade: websocket\r\n" +
  "Connection: Upgrade\r\n" +
  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
  "Sec-WebSocket-Version: 13\r\n" +
  "\r\n";

const HEAD: HttpRequestHead = {
  method: "GET",
  target: "/chat?room=1",
  versionMajor: 1,
  versionMinor: 1,
  headers: [
    ["Host", "server.example.com"],
    ["Upgrade", "websocket"],
    ["Connection", "Upgrade"],
    ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="],
    ["Sec-WebSocket-Version", "13"],
  ],
};

/** What one feeding produced: the head and rest, or the rejection. */
type Result =
  | { head: HttpRequestHead; rest: Uint8Array }
  | { status: number; message: string };

/** Feeds `chunks` until the parser returns a head or throws. */
function run(
  chunks: Uint8Array[],
  options?: HttpRequestParserOptions,
): Result | undefined {
  const parser = new HttpRequestParser(options);
  for (const chunk of chunks) {
    try {
      const head = parser.receive(chunk);
      if (head !== undefined) {
        return { head, rest: parser.rest };
      }
    } catch (error) {
      assert.ok(error instanceof HandshakeError, String(error));
      return { status: error.status, message: error.message };
    }
  }
  return undefined;
}

/**
 * Feeds `bytes` whole, one byte at a time and in random cuts; asserts the
 * same head (or status) every way; returns the whole-way result.
 */
function parseAllWays(
  bytes: Uint8Array,
  options?: HttpRequestParserOptions,
): Result | undefined {
  const summary = (result: Result | undefined) =>
    result === undefined
      ? undefined
      : "head" in result
      ? { head: result.head }
      : { status: result.status, message: result.message };
  const whole = run([bytes.slice()], options);
  for (
    const chunks of [
      cut(bytes, () => 0, 1),
      ...SEEDS.map((seed) => cut(bytes, prng(seed))),
    ]
  ) {
    assert.deepEqual(summary(run(chunks, options)), summary(whole));
  }
  return whole;
}

function status(result: Result | undefined): number | undefined {
  return result !== undefined && "status" in result ? result.status : undefined;
}

// ---------------------------------------------------------------------------
// RFC 9112 §2-5 (RFC 6455 §4.1): the request head
// ---------------------------------------------------------------------------

Deno.test("HttpRequestParser parses the RFC 6455 §1.3 handshake whole, byte by byte and in cuts (RFC 6455 §4.1)", () => {
  const result = parseAllWays(utf8(REQUEST));
  assert.ok(result !== undefined && "head" in result);
  assert.deepEqual(result.head, HEAD);
  assert.deepEqual(result.rest, new Uint8Array(0));
});

Deno.test("HttpRequestParser returns undefined until the blank line arrives (RFC 9112 §2.1)", () => {
  const parser = new HttpRequestParser();
  const bytes = utf8(REQUEST);
  for (let i = 0; i < bytes.length - 1; i++) {
    assert.equal(parser.receive(bytes.subarray(i, i + 1)), undefined);
  }
  assert.deepEqual(parser.receive(bytes.subarray(bytes.length - 1)), HEAD);
});

Deno.test("HttpRequestParser exposes the bytes after the head in rest (RFC 6455 §4.1)", () => {
  const frames = concat(clientFrame(1, "early"), clientFrame(9, "p"));
  const bytes = concat(utf8(REQUEST), frames);
  const whole = run([bytes.slice()]);
  assert.ok(whole !== undefined && "head" in whole);
  assert.deepEqual(whole.rest, frames);
  // The head ends inside a later chunk: rest is what follows it there.
  for (const at of [1, 20, REQUEST.length - 4, REQUEST.length - 1]) {
    const split = run(splitAt(bytes, at));
    assert.ok(split !== undefined && "head" in split);
    assert.deepEqual(split.head, HEAD, `split at ${at}`);
    assert.deepEqual(split.rest, frames, `split at ${at}`);
  }
  // A copy: changing the chunk later does not change rest.
  const chunk = bytes.slice();
  const parser = new HttpRequestParser();
  parser.receive(chunk);
  chunk.fill(0);
  assert.deepEqual(parser.rest, frames);
});

Deno.test("HttpRequestParser keeps header order, names as sent, and trims values (RFC 9112 §5)", () => {
  const result = parseAllWays(
    utf8(
      "GET / HTTP/1.1\r\nhost:a\r\nX-Empty:\r\nX-Pad: \t v a l \t \r\nX-A: 1\r\nx-a: 2\r\n\r\n",
    ),
  );
  assert.ok(result !== undefined && "head" in result);
  assert.deepEqual(result.head.headers, [
    ["host", "a"],
    ["X-Empty", ""],
    ["X-Pad", "v a l"],
    ["X-A", "1"],
    ["x-a", "2"],
  ]);
});

Deno.test("HttpRequestParser reads field values as Latin-1 with obs-text (RFC 9110 §5.5)", () => {
  const result = parseAllWays(
    latin1("GET / HTTP/1.1\r\nX-Name: caf\xe9\r\n\r\n"),
  );
  assert.ok(result !== undefined && "head" in result);
  assert.deepEqual(result.head.headers, [["X-Name", "caf\xe9"]]);
});

Deno.test("HttpRequestParser ignores one empty line before the request line (RFC 9112 §2.2)", () => {
  const result = parseAllWays(utf8("\r\n" + REQUEST));
  assert.ok(result !== undefined && "head" in result);
  assert.deepEqual(result.head, HEAD);
});

Deno.test("HttpRequestParser reports the HTTP version digits (RFC 9112 §2.3)", () => {
  for (
    const [version, major, minor] of [["1.0", 1, 0], ["1.1", 1, 1], [
      "2.0",
      2,
      0,
    ]] as const
  ) {
    const result = parseAllWays(utf8(`GET / HTTP/${version}\r\n\r\n`));
    assert.ok(result !== undefined && "head" in result);
    assert.equal(result.head.versionMajor, major);
    assert.equal(result.head.versionMinor, minor);
    assert.deepEqual(result.head.headers, []);
  }
});

// ---------------------------------------------------------------------------
// RFC 9112 §3, §5: malformed heads are rejected with 400
// ---------------------------------------------------------------------------

const BAD_REQUEST_LINES = [
  "",
  "GET",
  "GET /",
  "GET / HTTP/1.1 extra",
  "GET  / HTTP/1.1",
  "GET / HTTP/1.1 ",
  " GET / HTTP/1.1",
  "GET / HTTP/1",
  "GET / HTTP/11.1",
  "GET / http/1.1",
  "GET / HTTP/1.x",
  "G@T / HTTP/1.1",
  "GET\t/ HTTP/1.1",
  "GET /\x00 HTTP/1.1",
  "GET /\x7f HTTP/1.1",
  "GET /caf\xe9 HTTP/1.1",
  "GET /\tx HTTP/1.1",
  "GET /chat#fragment HTTP/1.1", // no fragment in a target (RFC 9112 §3.2)
];

for (const line of BAD_REQUEST_LINES) {
  Deno.test(`HttpRequestParser rejects the request line ${JSON.stringify(line)} with 400 (RFC 9112 §3)`, () => {
    const result = parseAllWays(latin1(`${line}\r\nHost: a\r\n\r\n`));
    assert.equal(status(result), 400);
    assert.ok(
      result !== undefined && "message" in result &&
        result.message.startsWith("Malformed request line: "),
    );
  });
}

const BAD_HEADER_LINES = [
  "NoColon",
  "Host : a",
  ": empty-name",
  " Folded: value",
  "\tFolded: value",
  "Bad Name: value",
  "Bad\x7fName: value",
  "X-Value: a\rb",
  "X-Value: a\nb",
  "X-Value: a\x00b",
  "X-Value: a\x7fb",
  "X-Value: a\x01b",
];

for (const line of BAD_HEADER_LINES) {
  Deno.test(`HttpRequestParser rejects the header line ${JSON.stringify(line)} with 400 (RFC 9112 §5)`, () => {
    const result = parseAllWays(
      latin1(`GET / HTTP/1.1\r\n${line}\r\nHost: a\r\n\r\n`),
    );
    assert.equal(status(result), 400);
    assert.ok(
      result !== undefined && "message" in result &&
        (result.message.startsWith("Malformed header field: ") ||
          line.includes("\n") &&
            result.message ===
              "Malformed request head: a line ends with a bare LF, not CRLF"),
    );
  });
}

Deno.test("HttpRequestParser answers 400 as soon as a line ends with a bare LF, rather than wait for a CRLF CRLF that never comes (RFC 9112 §2.2)", () => {
  const parser = new HttpRequestParser();
  assert.throws(() => parser.receive(latin1("GET / HTTP/1.1\nHost: a\n")), {
    name: "HandshakeError",
    message: "Malformed request head: a line ends with a bare LF, not CRLF",
  });
  const cut = parseAllWays(latin1("GET / HTTP/1.1\r\nHost: a\n\n"));
  assert.equal(status(cut), 400);
});

// ---------------------------------------------------------------------------
// RFC 6585 §5: limits, 431 (and RFC 9112 §3: 414)
// ---------------------------------------------------------------------------

Deno.test("HttpRequestParser accepts a head of exactly maxHeadSize bytes and rejects one more with 431 (RFC 6585 §5)", () => {
  const base = "GET / HTTP/1.1\r\nX: \r\n\r\n";
  const exact = base.replace("X: ", "X: " + "a".repeat(100 - base.length));
  assert.equal(exact.length, 100);
  const accepted = parseAllWays(utf8(exact), { maxHeadSize: 100 });
  assert.ok(accepted !== undefined && "head" in accepted);
  const over = exact.replace("X: ", "X: a");
  const rejected = parseAllWays(utf8(over), { maxHeadSize: 100 });
  assert.equal(status(rejected), 431);
  assert.ok(
    rejected !== undefined && "message" in rejected &&
      rejected.message === "Request head is larger than 100 bytes",
  );
});

Deno.test("HttpRequestParser rejects an endless head with 431 once maxHeadSize bytes arrived (RFC 6585 §5)", () => {
  const parser = new HttpRequestParser({ maxHeadSize: 64 });
  const bytes = utf8("GET / HTTP/1.1\r\n" + "X: y\r\n".repeat(20));
  for (let i = 0; i < 63; i++) {
    assert.equal(parser.receive(bytes.subarray(i, i + 1)), undefined);
  }
  assert.throws(
    () => parser.receive(bytes.subarray(63, 64)),
    (error) => error instanceof HandshakeError && error.status === 431,
  );
  // A single chunk far over the limit is rejected without buffering it all.
  assert.throws(
    () =>
      new HttpRequestParser({ maxHeadSize: 64 }).receive(
        utf8("GET / HTTP/1.1\r\n" + "X: y\r\n".repeat(1 << 16)),
      ),
    (error) => error instanceof HandshakeError && error.status === 431,
  );
});

Deno.test("HttpRequestParser rejects a request line longer than maxHeadSize with 414, cut anywhere (RFC 9112 §3)", () => {
  const long = `GET /${"a".repeat(200)} HTTP/1.1\r\nHost: x\r\n\r\n`;
  for (const bytes of [long, `\r\n${long}`].map(utf8)) {
    const rejected = parseAllWays(bytes, { maxHeadSize: 100 });
    assert.equal(status(rejected), 414);
    assert.ok(
      rejected !== undefined && "message" in rejected &&
        rejected.message === "Request line is longer than 100 bytes",
    );
  }
  // Endless bytes without a line end are a request line too.
  assert.throws(
    () =>
      new HttpRequestParser({ maxHeadSize: 64 }).receive(
        new Uint8Array(1 << 20).fill(0x41),
      ),
    (error) => error instanceof HandshakeError && error.status === 414,
  );
});

Deno.test("HttpRequestParser accepts a head within maxHeadSize even when the chunk carries more (RFC 6585 §5)", () => {
  const head = utf8(REQUEST);
  const bytes = concat(head, new Uint8Array(1000));
  const result = run([bytes], { maxHeadSize: head.length });
  assert.ok(result !== undefined && "head" in result);
  assert.equal(result.rest.length, 1000);
});

Deno.test("HttpRequestParser has a 16 KiB head and 100 field default (RFC 6585 §5)", () => {
  assert.equal(DEFAULT_MAX_HEAD_SIZE, 16 * 1024);
  assert.equal(DEFAULT_MAX_HEADERS, 100);
  const big = "GET / HTTP/1.1\r\nX: " + "a".repeat(16 * 1024) + "\r\n\r\n";
  assert.equal(status(run([utf8(big)])), 431);
  const many = "GET / HTTP/1.1\r\n" + "X: y\r\n".repeat(101) + "\r\n";
  assert.equal(status(run([utf8(many)])), 431);
  const enough = "GET / HTTP/1.1\r\n" + "X: y\r\n".repeat(100) + "\r\n";
  assert.equal(status(run([utf8(enough)])), undefined);
});

Deno.test("HttpRequestParser rejects more than maxHeaders fields with 431 (RFC 6585 §5)", () => {
  const head = (n: number) =>
    utf8("GET / HTTP/1.1\r\n" + "X: y\r\n".repeat(n) + "\r\n");
  const accepted = parseAllWays(head(3), { maxHeaders: 3 });
  assert.ok(accepted !== undefined && "head" in accepted);
  assert.equal(accepted.head.headers.length, 3);
  const rejected = parseAllWays(head(4), { maxHeaders: 3 });
  assert.equal(status(rejected), 431);
  assert.ok(
    rejected !== undefined && "message" in rejected &&
      rejected.message === "Request has 4 header fields; the limit is 3",
  );
});

Deno.test("HttpRequestParser answers 400 as soon as the bytes cannot begin a request: a TLS ClientHello sent to a plain server is named as such (RFC 9112 §3)", () => {
  // The first bytes of a TLS 1.2/1.3 ClientHello record.
  const hello = new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]);
  assert.throws(() => new HttpRequestParser().receive(hello), {
    name: "HandshakeError",
    message:
      "Not an HTTP request but a TLS handshake: the client wants wss:// or https://, and this server is plain",
  });
  // A method cut short by a byte no token has, before the line ended.
  const parser = new HttpRequestParser();
  assert.equal(parser.receive(utf8("\r\nGE")), undefined);
  assert.throws(() => parser.receive(utf8("T\x00 /")), {
    name: "HandshakeError",
    message: "Malformed request line: byte 0x00 in the method",
  });
  assert.equal(
    new HttpRequestParser().receive(utf8("GET /still-com")),
    undefined,
  );
});

Deno.test("HttpRequestParser checks the method as it arrives however the bytes are cut: byte by byte it fails at the same byte, and never mistakes what follows the method for it", () => {
  const cases: [string, RegExp | null][] = [
    ["\r\nGET\x00", /byte 0x00 in the method/],
    ["\r\nPROPFIND\x7f /", /byte 0x7f in the method/],
    ["\r\n\x16\x03\x01", /a TLS handshake/],
    ["GET /\x00\x7f", null], // not the method: judged with the whole head
    ["GET\r\n\x00", null],
    ["\r\nGET /a HTTP/1.1\r\nHost: a", null],
  ];
  for (const [text, error] of cases) {
    const bytes = new Uint8Array([...text].map((c) => c.charCodeAt(0)));
    for (const step of [bytes.length, 1, 2]) {
      const parser = new HttpRequestParser();
      const feed = () => {
        for (let at = 0; at < bytes.length; at += step) {
          assert.equal(
            parser.receive(bytes.subarray(at, at + step)),
            undefined,
          );
        }
      };
      if (error === null) feed();
      else assert.throws(feed, { name: "HandshakeError", message: error });
    }
  }
});

Deno.test("HttpRequestParser parses one head: a receive() after it throws a TypeError saying where the rest goes, however the head arrived", () => {
  const head = new TextEncoder().encode(
    "GET /one HTTP/1.1\r\nHost: a\r\n\r\n",
  );
  const next = new TextEncoder().encode("GET /two HTTP/1.1\r\nHost: a\r\n\r\n");
  for (const pieces of [[head], [head.subarray(0, 10), head.subarray(10)]]) {
    const parser = new HttpRequestParser();
    let parsed;
    for (const piece of pieces) parsed = parser.receive(piece);
    assert.equal(parsed?.target, "/one");
    assert.throws(() => parser.receive(next), {
      name: "TypeError",
      message: /this parser has parsed its request head/,
    });
  }
});
