import assert from "node:assert/strict";
import {
  ClientHandshake,
  ClientHandshakeError,
  computeAcceptKey,
} from "../../mod.ts";
import { encodeLatin1 } from "../../src/protocol/_bytes.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
// The RFC 6455 §1.3 sample key is base64 of these 16 bytes.
const SAMPLE_BYTES = Uint8Array.fromBase64("dGhlIHNhbXBsZSBub25jZQ==");
const SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const fixedKey = (bytes: Uint8Array) => bytes.set(SAMPLE_BYTES);

function sample(
  url = "ws://server.example.com/chat",
  options: { protocols?: string[]; headers?: HeadersInit } = {},
): ClientHandshake {
  return ClientHandshake.create(url, { ...options, generateKey: fixedKey });
}

function response(extra = "", accept = SAMPLE_ACCEPT): string {
  return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
    `Connection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n${extra}\r\n`;
}

/** Feeds `text` whole, byte by byte, and in random cuts; returns each outcome. */
function feedAllWays(
  make: () => ClientHandshake,
  bytes: Uint8Array,
): unknown[] {
  const cuts: ((b: Uint8Array) => Uint8Array[])[] = [
    (b) => [b],
    (b) => Array.from(b, (x) => new Uint8Array([x])),
    (b) => {
      const pieces = [];
      for (let i = 0; i < b.length;) {
        const n = 1 + Math.floor(Math.random() * 7);
        pieces.push(b.subarray(i, i + n));
        i += n;
      }
      return pieces;
    },
  ];
  return cuts.map((cut) => {
    const handshake = make();
    try {
      for (const piece of cut(bytes)) {
        const result = handshake.receive(piece);
        if (result !== undefined) return { result, rest: handshake.rest };
      }
      handshake.receiveEof();
    } catch (error) {
      return error;
    }
  });
}

function assertHandshakeError(
  error: unknown,
  code: string,
  status: number,
  pattern: RegExp,
): void {
  assert.ok(error instanceof ClientHandshakeError, String(error));
  assert.equal(error.code, code);
  assert.equal(error.status, status);
  assert.match(error.message, pattern);
}

Deno.test("ClientHandshake builds the RFC 6455 §4.1 request", () => {
  const handshake = sample("ws://server.example.com/chat?room=1#frag", {
    protocols: ["chat", "superchat"],
    headers: { Origin: "http://example.com", "X-Trace": "1" },
  });
  assert.equal(handshake.key, "dGhlIHNhbXBsZSBub25jZQ==");
  assert.equal(handshake.url.href, "ws://server.example.com/chat?room=1");
  assert.equal(
    decoder.decode(handshake.request),
    "GET /chat?room=1 HTTP/1.1\r\n" +
      "Host: server.example.com\r\n" +
      "Upgrade: websocket\r\n" +
      "Connection: Upgrade\r\n" +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
      "Sec-WebSocket-Version: 13\r\n" +
      "Sec-WebSocket-Protocol: chat, superchat\r\n" +
      "origin: http://example.com\r\n" +
      "x-trace: 1\r\n\r\n",
  );
});

Deno.test("ClientHandshake sends the port in Host unless it is the default (RFC 6455 §4.1)", () => {
  const host = (url: string) =>
    decoder.decode((sample(url)).request).split("\r\n")[1];
  assert.equal(host("ws://a.example:80/"), "Host: a.example");
  assert.equal(host("wss://a.example:443/"), "Host: a.example");
  assert.equal(host("ws://a.example:8080"), "Host: a.example:8080");
  assert.equal(host("wss://[::1]:9000/x"), "Host: [::1]:9000");
  const custom = sample("ws://127.0.0.1:1/", {
    headers: { host: "virtual.example" },
  });
  assert.match(decoder.decode(custom.request), /\r\nHost: virtual.example\r\n/);
});

Deno.test("ClientHandshake makes a fresh 16-byte key each time (RFC 6455 §4.1)", () => {
  const keys = new Set<string>();
  for (let i = 0; i < 20; i++) {
    const { key } = ClientHandshake.create("ws://localhost/");
    assert.equal(Uint8Array.fromBase64(key).length, 16);
    keys.add(key);
  }
  assert.equal(keys.size, 20);
});

Deno.test("ClientHandshake rejects bad URLs, subprotocols and headers with TypeError", () => {
  assert.throws(
    () => ClientHandshake.create("ftp://localhost/"),
    new TypeError(
      'Cannot connect: "url" must use ws: or wss: (or http: or https:), got ftp:',
    ),
  );
  assert.throws(
    () => ClientHandshake.create("not a url"),
    /Cannot connect: "url" must be an absolute ws: or wss: URL/,
  );
  // No userinfo in a ws: URI (RFC 6455 §3), and no password in messages.
  for (const url of ["ws://alice:s3cret@localhost/", "wss://bob@localhost/"]) {
    assert.throws(() => ClientHandshake.create(url), (error) => {
      assert.ok(error instanceof TypeError);
      assert.match(error.message, /may not carry credentials/);
      assert.doesNotMatch(error.message, /s3cret/);
      return true;
    });
  }
  assert.throws(
    () => sample(undefined, { protocols: ["a b"] }),
    /"protocols" must hold HTTP tokens, got "a b"/,
  );
  assert.throws(
    () => sample(undefined, { protocols: ["a", "a"] }),
    /"protocols" must be unique, got a twice/,
  );
  assert.throws(
    () => sample(undefined, { headers: { "Sec-WebSocket-Protocol": "x" } }),
    /may not set sec-websocket-protocol; the handshake sets it \(use "protocols"\)/,
  );
  assert.throws(
    () => sample(undefined, { headers: { "bad name": "x" } }),
    /"headers" are not valid/,
  );
  // Every Sec-WebSocket-* field is the protocol's; a GET has no body.
  for (
    const name of [
      "Sec-WebSocket-Accept",
      "Sec-WebSocket-Anything",
      "Content-Length",
      "Transfer-Encoding",
    ]
  ) {
    assert.throws(
      () => sample(undefined, { headers: { [name]: "1" } }),
      new RegExp(
        `may not set ${name.toLowerCase()}; (the handshake sets it|a handshake request has no body)$`,
      ),
    );
  }
  for (const host of ["", "a b", "a, b"]) {
    assert.throws(
      () => sample(undefined, { headers: { Host: host } }),
      /"headers" must give one Host as host\[:port\]/,
    );
  }
  assert.throws(
    () => ClientHandshake.create("ws://localhost/", { maxHeadSize: 0 }),
    new RangeError(
      'Cannot connect: "maxHeadSize" must be a positive integer, got 0',
    ),
  );
  // Of the wrong type: a TypeError that shows the value as it was given.
  for (
    const [name, value, seen] of [
      ["maxHeadSize", "1024", 'string "1024"'],
      ["maxHeaders", {}, "Object"],
      ["maxHeaders", null, "null"],
    ] as const
  ) {
    assert.throws(
      () =>
        ClientHandshake.create("ws://localhost/", { [name]: value } as never),
      new TypeError(
        `Cannot connect: "${name}" must be a positive integer, got ${seen}`,
      ),
    );
  }
});

Deno.test("ClientHandshake accepts a valid 101 response however it is cut", () => {
  const firstFrame = new Uint8Array([0x81, 0x02, 0x68, 0x69]);
  const bytes = new Uint8Array([...encoder.encode(response()), ...firstFrame]);
  for (const outcome of feedAllWays(() => sample(), bytes)) {
    const { result, rest } = outcome as {
      result: { protocol: string; headers: Headers };
      rest: Uint8Array;
    };
    assert.equal(result.protocol, "");
    assert.equal(result.headers.get("sec-websocket-accept"), SAMPLE_ACCEPT);
    // The bytes after the head in the chunk that completed it: a prefix of
    // the first frame.
    assert.deepEqual(rest, firstFrame.subarray(0, rest.length));
  }
  const handshake = sample();
  assert.ok(handshake.receive(bytes));
  assert.deepEqual(handshake.rest, firstFrame);
  assert.equal(handshake.state, "done");
});

Deno.test("ClientHandshake takes interim 1xx responses before the 101, however they are cut, but not without end (RFC 9110 §15.2)", () => {
  const interim =
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n";
  const bytes = encoder.encode(interim + response());
  for (const outcome of feedAllWays(() => sample(), bytes)) {
    const { result } = outcome as { result: { headers: Headers } };
    assert.equal(result.headers.get("sec-websocket-accept"), SAMPLE_ACCEPT);
  }
  const endless = sample();
  assert.throws(
    () =>
      endless.receive(
        encoder.encode("HTTP/1.1 100 Continue\r\n\r\n".repeat(9)),
      ),
    (error) =>
      error instanceof ClientHandshakeError &&
      error.code === "MALFORMED_RESPONSE",
  );
});

Deno.test("ClientHandshake fails a response whose lines end with bare LFs at once, rather than waiting for a CRLF CRLF that never comes", () => {
  const handshake = sample();
  assert.throws(
    () =>
      handshake.receive(
        encoder.encode(
          "HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\n\n",
        ),
      ),
    (error) =>
      error instanceof ClientHandshakeError &&
      error.code === "MALFORMED_RESPONSE",
  );
});

Deno.test("ClientHandshake matches Upgrade and Connection case-insensitively (RFC 6455 §4.1)", () => {
  const handshake = sample();
  const result = handshake.receive(encoder.encode(
    "HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, UPGRADE\r\n" +
      `sec-websocket-accept: ${SAMPLE_ACCEPT}\r\n\r\n`,
  ));
  assert.ok(result);
});

Deno.test("ClientHandshake fails a wrong or missing Sec-WebSocket-Accept (RFC 6455 §4.1)", () => {
  const wrong = computeAcceptKey("AAAAAAAAAAAAAAAAAAAAAA==");
  for (
    const text of [
      response("", wrong),
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
      response(`Sec-WebSocket-Accept: ${SAMPLE_ACCEPT}\r\n`),
    ]
  ) {
    const [whole, bytewise, random] = feedAllWays(
      () => sample(),
      encoder.encode(text),
    );
    for (const error of [whole, bytewise, random]) {
      assertHandshakeError(
        error,
        "INVALID_ACCEPT",
        101,
        /^Cannot connect to ws:\/\/server\.example\.com\/chat: the response's Sec-WebSocket-Accept must be s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/,
      );
    }
  }
});

Deno.test("ClientHandshake fails a missing Upgrade or Connection (RFC 6455 §4.1)", () => {
  const upgrade = sample();
  assert.throws(
    () =>
      upgrade.receive(encoder.encode(
        `HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${SAMPLE_ACCEPT}\r\n\r\n`,
      )),
    (error) => {
      assertHandshakeError(
        error,
        "INVALID_UPGRADE",
        101,
        /Upgrade header must be websocket, got none/,
      );
      return true;
    },
  );
  const connection = sample();
  assert.throws(
    () =>
      connection.receive(encoder.encode(
        `HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: close\r\nSec-WebSocket-Accept: ${SAMPLE_ACCEPT}\r\n\r\n`,
      )),
    (error) => {
      assertHandshakeError(
        error,
        "INVALID_CONNECTION",
        101,
        /Connection header must include upgrade, got close/,
      );
      return true;
    },
  );
});

Deno.test("ClientHandshake accepts only an offered subprotocol (RFC 6455 §4.1)", () => {
  const offered = sample(undefined, { protocols: ["chat", "superchat"] });
  const result = offered.receive(
    encoder.encode(response("Sec-WebSocket-Protocol: superchat\r\n")),
  );
  assert.equal(result?.protocol, "superchat");

  const none = sample(undefined, { protocols: ["chat"] });
  assert.equal(none.receive(encoder.encode(response()))?.protocol, "");

  const other = sample(undefined, { protocols: ["chat"] });
  assert.throws(
    () =>
      other.receive(
        encoder.encode(response("Sec-WebSocket-Protocol: mqtt\r\n")),
      ),
    (error) => {
      assertHandshakeError(
        error,
        "UNEXPECTED_PROTOCOL",
        101,
        /selected the subprotocol "mqtt", which is not one of chat/,
      );
      return true;
    },
  );
  const unasked = sample();
  assert.throws(
    () =>
      unasked.receive(
        encoder.encode(response("Sec-WebSocket-Protocol: chat\r\n")),
      ),
    (error) => {
      assertHandshakeError(
        error,
        "UNEXPECTED_PROTOCOL",
        101,
        /but none was offered/,
      );
      return true;
    },
  );
});

Deno.test("ClientHandshake fails extensions it did not offer (RFC 6455 §4.1)", () => {
  const handshake = sample();
  assert.throws(
    () =>
      handshake.receive(
        encoder.encode(
          response("Sec-WebSocket-Extensions: permessage-deflate\r\n"),
        ),
      ),
    (error) => {
      assertHandshakeError(
        error,
        "UNEXPECTED_EXTENSION",
        101,
        /extensions that were not offered: permessage-deflate/,
      );
      return true;
    },
  );
});

Deno.test("ClientHandshake reports a non-101 status with the start of the body", () => {
  const body = "No such room\n";
  const text = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n" +
    `Content-Length: ${body.length}\r\n\r\n${body}`;
  for (const error of feedAllWays(() => sample(), encoder.encode(text))) {
    assertHandshakeError(
      error,
      "UNEXPECTED_STATUS",
      404,
      /: the server answered 404 Not Found instead of 101 Switching Protocols: No such room$/,
    );
    assert.equal((error as ClientHandshakeError).body, body);
  }
});

Deno.test("ClientHandshakeError carries the response's header fields: a redirect's Location, a failed 101's fields", () => {
  const text = "HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n" +
    "HTTP/1.1 302 Found\r\nLocation: wss://elsewhere.example/chat\r\n" +
    "Content-Length: 0\r\n\r\n";
  for (const error of feedAllWays(() => sample(), encoder.encode(text))) {
    assertHandshakeError(error, "UNEXPECTED_STATUS", 302, /answered 302 Found/);
    const { headers } = error as ClientHandshakeError;
    assert.equal(headers.get("location"), "wss://elsewhere.example/chat");
    assert.equal(headers.get("x-interim"), null);
  }
  const wrongAccept = response("X-Served-By: edge-7\r\n", "d3Jvbmc=");
  const [error] = feedAllWays(
    () => sample(),
    encoder.encode(wrongAccept),
  );
  assertHandshakeError(error, "INVALID_ACCEPT", 101, /Sec-WebSocket-Accept/);
  assert.equal(
    (error as ClientHandshakeError).headers.get("x-served-by"),
    "edge-7",
  );
  const closed = sample();
  assert.throws(() => closed.receiveEof(), (error) => {
    assert.deepEqual([...(error as ClientHandshakeError).headers], []);
    return true;
  });
});

Deno.test("ClientHandshake refuses a 101 in HTTP/1.0 (RFC 9110 §15.2.2) but reports an HTTP/1.0 rejection as one", () => {
  const switched = response().replace("HTTP/1.1", "HTTP/1.0");
  for (
    const error of feedAllWays(() => sample(), encoder.encode(switched))
  ) {
    assertHandshakeError(error, "MALFORMED_RESPONSE", 101, /101 in HTTP\/1\.0/);
  }
  const refused = "HTTP/1.0 403 Forbidden\r\nContent-Length: 2\r\n\r\nno";
  for (
    const error of feedAllWays(() => sample(), encoder.encode(refused))
  ) {
    assertHandshakeError(
      error,
      "UNEXPECTED_STATUS",
      403,
      /answered 403 Forbidden/,
    );
  }
});

Deno.test("ClientHandshake waits for a rejection's body, then reports at EOF", () => {
  const handshake = sample();
  assert.equal(
    handshake.receive(
      encoder.encode("HTTP/1.1 503 Service Unavailable\r\n\r\nbusy"),
    ),
    undefined,
  );
  assert.equal(handshake.state, "body");
  assert.throws(() => handshake.receiveEof(), (error) => {
    assertHandshakeError(
      error,
      "UNEXPECTED_STATUS",
      503,
      /answered 503 Service Unavailable instead of 101 Switching Protocols: busy$/,
    );
    assert.equal((error as ClientHandshakeError).body, "busy");
    return true;
  });
});

Deno.test("ClientHandshake ends a rejection's body as HTTP frames it (RFC 9112 §6.3): none for 204 and 304, the last chunk of a chunked one (decoded), however it is cut", () => {
  const cases = [
    ["HTTP/1.1 204 No Content\r\nX-Why: closed\r\n\r\n", 204, ""],
    ["HTTP/1.1 304 Not Modified\r\nContent-Length: 90\r\n\r\n", 304, ""],
    [
      "HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n" +
      "6\r\ntoken \r\n7;ext=1\r\nexpired\r\n0\r\n\r\n",
      401,
      "token expired",
    ],
    [
      "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" +
      "4\r\nbusy\r\n0\r\n",
      503,
      "busy",
    ],
  ] as const;
  for (const [text, status, body] of cases) {
    const bytes = encoder.encode(text);
    // However the bytes are cut, the rejection comes with them, without
    // waiting for the connection to end.
    for (const step of [bytes.length, 1, 3]) {
      const handshake = sample();
      let error: unknown;
      try {
        for (let at = 0; at < bytes.length; at += step) {
          handshake.receive(bytes.subarray(at, at + step));
        }
      } catch (thrown) {
        error = thrown;
      }
      assertHandshakeError(error, "UNEXPECTED_STATUS", status, /answered/);
      assert.equal((error as ClientHandshakeError).body, body);
    }
  }
});

Deno.test("ClientHandshake previews a long chunked rejection's content, without its framing, and a broken one as far as it is well-formed", () => {
  const long = sample();
  const chunk = `${"x".repeat(100)}`;
  const chunks = `64\r\n${chunk}\r\n`.repeat(30);
  assert.throws(
    () =>
      long.receive(
        encoder.encode(
          `HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n${chunks}`,
        ),
      ),
    (error) => {
      assert.equal((error as ClientHandshakeError).body, "x".repeat(512));
      return true;
    },
  );
  const broken = sample();
  broken.receive(
    encoder.encode(
      "HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\nmore",
    ),
  );
  assert.throws(() => broken.receiveEof(), (error) => {
    assert.equal((error as ClientHandshakeError).body, "ok");
    return true;
  });
});

Deno.test("ClientHandshake keeps at most 512 bytes of a rejection's body", () => {
  const handshake = sample();
  assert.throws(
    () =>
      handshake.receive(
        encoder.encode(`HTTP/1.1 400 Bad Request\r\n\r\n${"x".repeat(2000)}`),
      ),
    (error) => {
      assertHandshakeError(
        error,
        "UNEXPECTED_STATUS",
        400,
        /answered 400 Bad Request/,
      );
      assert.equal((error as ClientHandshakeError).body.length, 512);
      return true;
    },
  );
});

Deno.test("ClientHandshake reports a connection closed before the head", () => {
  const handshake = sample();
  handshake.receive(encoder.encode("HTTP/1.1 101 Swi"));
  assert.throws(() => handshake.receiveEof(), (error) => {
    assertHandshakeError(
      error,
      "CONNECTION_CLOSED",
      0,
      /closed the connection before completing the handshake/,
    );
    return true;
  });
});

Deno.test("ClientHandshake fails a malformed status line or header", () => {
  const status = sample();
  assert.throws(
    () => status.receive(encoder.encode("SSH-2.0-OpenSSH\r\n\r\n")),
    (error) => {
      assertHandshakeError(
        error,
        "MALFORMED_RESPONSE",
        0,
        /does not start with an HTTP\/1\.1 status line: "SSH-2\.0-OpenSSH"/,
      );
      return true;
    },
  );
  const header = sample();
  assert.throws(
    () =>
      header.receive(
        encoder.encode("HTTP/1.1 101 OK\r\nno colon here\r\n\r\n"),
      ),
    (error) => {
      assertHandshakeError(
        error,
        "MALFORMED_RESPONSE",
        101,
        /malformed header field in the response: "no colon here"/,
      );
      return true;
    },
  );
});

Deno.test("ClientHandshake unfolds a field value continued on the next line (obs-fold: a user agent MUST, RFC 9112 §5.2), but fails a fold with no field before it", () => {
  const folded = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
    `Connection:\r\n Upgrade\r\nSec-WebSocket-Accept: ${SAMPLE_ACCEPT}\r\n` +
    "X-Note: one \r\n\t two\r\n  three\r\n\r\n";
  for (const outcome of feedAllWays(() => sample(), encoder.encode(folded))) {
    const { result } = outcome as { result: { headers: Headers } };
    assert.equal(result.headers.get("connection"), "Upgrade");
    assert.equal(result.headers.get("x-note"), "one  two three");
  }
  assert.throws(
    () =>
      sample().receive(encoder.encode("HTTP/1.1 101 OK\r\n Upgrade\r\n\r\n")),
    (error) => {
      assertHandshakeError(
        error,
        "MALFORMED_RESPONSE",
        101,
        /malformed header field in the response: " Upgrade"/,
      );
      return true;
    },
  );
});

Deno.test("ClientHandshake limits the response head's size and field count", () => {
  const big = ClientHandshake.create("ws://localhost/", {
    maxHeadSize: 64,
  });
  assert.throws(
    () => {
      for (let i = 0; i < 100; i++) {
        big.receive(encoder.encode("HTTP/1.1 101 OK\r\nX: 1\r\n"));
      }
    },
    (error) => {
      assertHandshakeError(
        error,
        "RESPONSE_TOO_LARGE",
        0,
        /response head is larger than 64 bytes/,
      );
      return true;
    },
  );
  const many = ClientHandshake.create("ws://localhost/", {
    maxHeaders: 2,
  });
  assert.throws(
    () =>
      many.receive(
        encoder.encode("HTTP/1.1 101 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
      ),
    (error) => {
      assertHandshakeError(
        error,
        "RESPONSE_TOO_LARGE",
        101,
        /has 3 header fields; the limit is 2/,
      );
      return true;
    },
  );
});

Deno.test("ClientHandshake fails a first line that is not a status line as soon as it ends, not when a head that never comes times out", () => {
  // Byte by byte, whole and in random cuts: it fails at the line's end,
  // before the rest of the stream (which never ends a head) is fed.
  const banner = encoder.encode("SSH-2.0-OpenSSH_9.6\r\n");
  for (const outcome of feedAllWays(sample, banner)) {
    assertHandshakeError(
      outcome,
      "MALFORMED_RESPONSE",
      0,
      /does not start with an HTTP\/1\.1 status line: "SSH-2\.0-OpenSSH_9\.6"/,
    );
  }
  // A status line, then headers a byte at a time: no early failure.
  for (const outcome of feedAllWays(sample, encoder.encode(response()))) {
    assert.ok(!(outcome instanceof Error), String(outcome));
  }
  // After an interim response, the next first line is checked again.
  const interim = encoder.encode("HTTP/1.1 100 Continue\r\n\r\nSSH-2.0\r\n");
  for (const outcome of feedAllWays(sample, interim)) {
    assertHandshakeError(outcome, "MALFORMED_RESPONSE", 0, /"SSH-2\.0"/);
  }
});

Deno.test("ClientHandshake.receive() after the handshake is over throws a TypeError saying the rest is the Connection's", () => {
  const handshake = sample();
  assert.ok(handshake.receive(encoder.encode(response())) !== undefined);
  assert.throws(() => handshake.receive(new Uint8Array([0x81, 0x00])), {
    name: "TypeError",
    message: /the handshake is over; give what follows/,
  });
});

Deno.test("ClientHandshake takes http: for ws: and https: for wss:, as the WebSocket standard does", () => {
  const plain = ClientHandshake.create("http://localhost:8080/chat?x=1");
  assert.equal(plain.url.href, "ws://localhost:8080/chat?x=1");
  const secure = ClientHandshake.create("https://example.com/");
  assert.equal(secure.url.href, "wss://example.com/");
  assert.equal(secure.url.port, "", "443 stays the default port");
});

Deno.test("ClientHandshake gives the same outcome however the bytes are cut, for responses that break a rule: a fold with a control character, LF LF inside the head, a no-break space around a token", () => {
  const cases: [string, string, number][] = [
    // A fold leaves its LF, VT or FF in the value (RFC 9112 §5.2): as
    // malformed as on one line.
    [response("X-A: a\r\n \x0bb\r\n"), "MALFORMED_RESPONSE", 101],
    [
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade:\r\n \x0cwebsocket\r\n" +
      `Connection: Upgrade\r\nSec-WebSocket-Accept: ${SAMPLE_ACCEPT}\r\n\r\n`,
      "MALFORMED_RESPONSE",
      101,
    ],
    // LF LF is no end of head, found before the real end or not.
    [
      "HTTP/1.1 404 Not Found\r\nX-A: b\n\nc\r\n\r\n",
      "MALFORMED_RESPONSE",
      0,
    ],
    [response("X-A: a\r\n \n\nb\r\n"), "MALFORMED_RESPONSE", 0],
    // U+00A0 is not whitespace in HTTP: "\xa0Upgrade" is no Upgrade token
    // (RFC 6455 §4.1: the client MUST fail), "\xa0" no empty list.
    [
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
      `Connection: \xa0Upgrade\r\nSec-WebSocket-Accept: ${SAMPLE_ACCEPT}\r\n\r\n`,
      "INVALID_CONNECTION",
      101,
    ],
    [
      response("Sec-WebSocket-Extensions: \xa0\r\n"),
      "UNEXPECTED_EXTENSION",
      101,
    ],
  ];
  for (const [text, code, status] of cases) {
    const outcomes = feedAllWays(sample, encodeLatin1(text));
    for (const outcome of outcomes) {
      assert.ok(outcome instanceof ClientHandshakeError, JSON.stringify(text));
      assert.deepEqual(
        [outcome.code, outcome.status],
        [code, status],
        JSON.stringify(text),
      );
    }
  }
});

Deno.test("ClientHandshake takes only spaces and tabs around 'chunked' and a chunk size: a no-break space there is no framing", () => {
  const cases: [string, string][] = [
    // Not chunked: read as it comes.
    [
      "Transfer-Encoding: chunked\xa0\r\n\r\n4\r\nnope\r\n0\r\n\r\n",
      "4\r\nnope\r\n0\r\n\r\n",
    ],
    // Not a chunk size: the content ends before it.
    [
      "Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n4\xa0\r\nnope\r\n0\r\n\r\n",
      "ok",
    ],
  ];
  for (const [rest, body] of cases) {
    const [error] = feedAllWays(
      sample,
      encodeLatin1(`HTTP/1.1 403 Forbidden\r\n${rest}`),
    );
    assert.ok(error instanceof ClientHandshakeError);
    assert.equal(error.body, body);
  }
});

Deno.test("ClientHandshake takes a Content-Length of digits only (RFC 9110 §8.6): a rejection's body with another one is read to the end of the connection", () => {
  for (const length of ["+3", "0x3", "3.0", "", " 3 3"]) {
    const [error] = feedAllWays(
      sample,
      encoder.encode(
        `HTTP/1.1 403 Forbidden\r\nContent-Length: ${length}\r\n\r\ndenied`,
      ),
    );
    assert.ok(error instanceof ClientHandshakeError);
    assert.equal(error.body, "denied", JSON.stringify(length));
  }
});

Deno.test("ClientHandshake: a connection that ends after bytes that cannot start a status line is a malformed response (not an HTTP server); nothing, or the start of a status line, is a connection closed", () => {
  const ended = (text: string) => {
    const handshake = sample();
    if (text) handshake.receive(encodeLatin1(text));
    try {
      handshake.receiveEof();
    } catch (error) {
      return error;
    }
  };
  for (const text of ["", "H", "HTTP/1.", "HTTP/1.1 1", "HTTP/1.1 101 Swi"]) {
    assertHandshakeError(
      ended(text),
      "CONNECTION_CLOSED",
      0,
      /closed the connection before completing the handshake$/,
    );
  }
  for (
    const [text, shown] of [
      ["SSH-2.0-OpenSSH_9.6", '"SSH-2.0-OpenSSH_9.6"'],
      ["http/1.1 101", '"http/1.1 101"'],
      ["HTTP/2 101", '"HTTP/2 101"'],
      ["not a web server\x85", '"not a web server\\u0085"'],
      ["x".repeat(40), `"${"x".repeat(32)}"`],
    ]
  ) {
    assertHandshakeError(
      ended(text),
      "MALFORMED_RESPONSE",
      0,
      new RegExp(
        `before completing the handshake, after bytes that are not HTTP: ${
          RegExp.escape(shown)
        }$`,
      ),
    );
  }
  // A TLS alert from a wss:// server, with its hint.
  const handshake = sample();
  handshake.receive(new Uint8Array([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]));
  assert.throws(() => handshake.receiveEof(), (error) => {
    assertHandshakeError(
      error,
      "MALFORMED_RESPONSE",
      0,
      /it answered with TLS: is it a wss:\/\/ server\?$/,
    );
    return true;
  });
});

Deno.test("ClientHandshake refuses a status outside HTTP's 100-599 (RFC 9110 §15) as a malformed response", () => {
  for (const status of [0, 99, 600, 700, 999]) {
    const head = `HTTP/1.1 ${String(status).padStart(3, "0")} Odd\r\n\r\n`;
    for (const outcome of feedAllWays(sample, encodeLatin1(head))) {
      assertHandshakeError(
        outcome,
        "MALFORMED_RESPONSE",
        status,
        new RegExp(`status ${status} is not an HTTP status \\(100-599`),
      );
    }
  }
  // 599 is one: a rejection.
  const [outcome] = feedAllWays(
    sample,
    encodeLatin1("HTTP/1.1 599 Odd\r\nContent-Length: 0\r\n\r\n"),
  );
  assertHandshakeError(outcome, "UNEXPECTED_STATUS", 599, /599/);
});
