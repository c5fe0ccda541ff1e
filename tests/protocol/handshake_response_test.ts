import assert from "node:assert/strict";
import {
  computeAcceptKey,
  encodeAcceptResponse,
  encodeRejectionResponse,
  HandshakeError,
} from "./_core.ts";

const decoder = new TextDecoder();

/** Splits a response into status line, header lines and body bytes. */
function parseResponse(bytes: Uint8Array): {
  statusLine: string;
  headers: [string, string][];
  body: Uint8Array;
} {
  let end = -1;
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (
      bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 &&
      bytes[i + 3] === 10
    ) {
      end = i;
      break;
    }
  }
  assert.ok(end !== -1, "the head ends with CRLF CRLF");
  const [statusLine, ...lines] = decoder.decode(bytes.subarray(0, end)).split(
    "\r\n",
  );
  const headers = lines.map((line): [string, string] => {
    const colon = line.indexOf(":");
    assert.ok(colon > 0, line);
    return [line.slice(0, colon), line.slice(colon + 1).trim()];
  });
  return { statusLine, headers, body: bytes.subarray(end + 4) };
}

// ---------------------------------------------------------------------------
// RFC 6455 §4.2.2: the accepting response
// ---------------------------------------------------------------------------

Deno.test("computeAcceptKey answers the RFC sample key dGhlIHNhbXBsZSBub25jZQ== (RFC 6455 §1.3)", () => {
  assert.equal(
    computeAcceptKey("dGhlIHNhbXBsZSBub25jZQ=="),
    "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
  );
});

Deno.test("computeAcceptKey is base64 of SHA-1 of key + GUID (RFC 6455 §4.2.2)", async () => {
  const key = "AQIDBAUGBwgJCgsMDQ4PEA==";
  const digest = await crypto.subtle.digest(
    "SHA-1",
    new TextEncoder().encode(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"),
  );
  assert.equal(computeAcceptKey(key), new Uint8Array(digest).toBase64());
  assert.equal((computeAcceptKey(key)).length, 28);
});

Deno.test("encodeAcceptResponse writes the 101 response byte-exactly (RFC 6455 §4.2.2)", () => {
  assert.equal(
    decoder.decode(encodeAcceptResponse("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")),
    "HTTP/1.1 101 Switching Protocols\r\n" +
      "Upgrade: websocket\r\n" +
      "Connection: Upgrade\r\n" +
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
  );
  assert.equal(
    decoder.decode(
      encodeAcceptResponse("abc=", [["Sec-WebSocket-Protocol", "chat"]]),
    ),
    "HTTP/1.1 101 Switching Protocols\r\n" +
      "Upgrade: websocket\r\n" +
      "Connection: Upgrade\r\n" +
      "Sec-WebSocket-Protocol: chat\r\n" +
      "Sec-WebSocket-Accept: abc=\r\n\r\n",
  );
});

Deno.test("encodeAcceptResponse and encodeRejectionResponse send a field value's bytes 0x80-0xFF as themselves (RFC 9110 §5.5 obs-text), a body as UTF-8", () => {
  // Headers keeps those bytes as the characters U+0080-U+00FF.
  const accept = encodeAcceptResponse("abc=", [["X-Name", "caf\u00e9"]]);
  const field = [..."X-Name: caf"].map((c) => c.charCodeAt(0));
  const at = accept.findIndex((_, i) =>
    field.every((byte, j) => accept[i + j] === byte)
  );
  assert.deepEqual(
    [...accept.subarray(at + field.length, at + field.length + 3)],
    [0xe9, 0x0d, 0x0a],
  );
  const rejection = encodeRejectionResponse(
    new HandshakeError(400, "caf\u00e9", { "x-name": "caf\u00e9" }),
  );
  const text = new TextDecoder("latin1").decode(rejection);
  assert.match(text, /\r\nx-name: caf\u00e9\r\n/);
  // The body: "café\n" in UTF-8, counted as such.
  assert.match(text, /Content-Length: 6\r\n/);
  assert.ok(text.endsWith("\r\n\r\ncaf\u00c3\u00a9\n"));
});

// ---------------------------------------------------------------------------
// RFC 6455 §4.2.2, RFC 9110 §8.6: the rejecting response
// ---------------------------------------------------------------------------

Deno.test("encodeRejectionResponse writes a plain-text body with a correct Content-Length (RFC 9110 §8.6)", () => {
  for (
    const error of [
      new HandshakeError(400, "Host header is missing"),
      new HandshakeError(405, "Method must be GET", { allow: "GET" }),
      new HandshakeError(426, "Version", { "sec-websocket-version": "13" }),
      new HandshakeError(431, "Too large"),
      new HandshakeError(400, 'Malformed header field: "caf\xe9 ☃"'),
      new HandshakeError(400, ""),
    ]
  ) {
    const { statusLine, headers, body } = parseResponse(
      encodeRejectionResponse(error),
    );
    assert.match(statusLine, new RegExp(`^HTTP/1\\.1 ${error.status} \\S`));
    const get = (name: string) =>
      headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
    assert.deepEqual(get("content-length"), [String(body.length)]);
    assert.deepEqual(get("content-type"), ["text/plain; charset=utf-8"]);
    assert.deepEqual(get("connection"), ["close"]);
    assert.equal(decoder.decode(body), `${error.message}\n`);
    for (const [name, value] of Object.entries(error.headers)) {
      assert.deepEqual(get(name), [value]);
    }
  }
});

Deno.test("encodeRejectionResponse uses the standard reason phrases (RFC 9110 §15)", () => {
  const phrases: [number, string][] = [
    [400, "Bad Request"],
    [403, "Forbidden"],
    [404, "Not Found"],
    [405, "Method Not Allowed"],
    [426, "Upgrade Required"],
    [431, "Request Header Fields Too Large"],
    [503, "Service Unavailable"],
    [499, "Error"],
  ];
  for (const [status, phrase] of phrases) {
    const { statusLine } = parseResponse(
      encodeRejectionResponse(new HandshakeError(status, "x")),
    );
    assert.equal(statusLine, `HTTP/1.1 ${status} ${phrase}`);
  }
});

Deno.test("encodeRejectionResponse writes the 426 version rejection byte-exactly (RFC 6455 §4.2.2), with its Date (RFC 9110 §6.6.1), and no content for a HEAD (§9.3.2)", () => {
  const error = new HandshakeError(
    426,
    "Sec-WebSocket-Version must be 13, got 8",
    { "sec-websocket-version": "13" },
  );
  const date = new Date(Date.UTC(2026, 11, 6, 20, 0, 0));
  const rest = "Connection: close\r\n" +
    "Date: Sun, 06 Dec 2026 20:00:00 GMT\r\n" +
    "sec-websocket-version: 13\r\n" +
    "\r\n";
  assert.equal(
    decoder.decode(encodeRejectionResponse(error, { date })),
    "HTTP/1.1 426 Upgrade Required\r\n" +
      "Content-Type: text/plain; charset=utf-8\r\n" +
      "Content-Length: 40\r\n" + rest +
      "Sec-WebSocket-Version must be 13, got 8\n",
  );
  // A HEAD gets neither the content nor a length a GET would not get.
  assert.equal(
    decoder.decode(encodeRejectionResponse(error, { date, head: true })),
    "HTTP/1.1 426 Upgrade Required\r\n" +
      "Content-Type: text/plain; charset=utf-8\r\n" + rest,
  );
  // A Date among the rejection's own headers is the only one.
  const own = decoder.decode(
    encodeRejectionResponse(
      new HandshakeError(429, "slow down", {
        DATE: "Mon, 07 Dec 2026 00:00:00 GMT",
      }),
      { date },
    ),
  );
  assert.equal(own.match(/^date:/gim)?.length, 1);
  assert.match(own, /\r\nDATE: Mon, 07 Dec 2026 00:00:00 GMT\r\n/);
});

Deno.test("encodeAcceptResponse and encodeRejectionResponse refuse header fields that would split the response (CR, LF, NUL, a name that is not a token)", () => {
  const bad: [string, string][] = [
    ["Set-Cookie", "a=b\r\n\r\nHTTP/1.1 200 OK"],
    ["X-Evil", "a\nb"],
    ["X-Nul", "a\0b"],
    ["Bad Name", "x"],
    ["X:Colon", "x"],
    ["", "x"],
  ];
  for (const [name, value] of bad) {
    assert.throws(
      () =>
        encodeAcceptResponse("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", [[name, value]]),
      { name: "TypeError", message: /^Cannot encode a response: / },
      JSON.stringify([name, value]),
    );
    assert.throws(
      () =>
        encodeRejectionResponse(
          new HandshakeError(403, "no", { [name]: value }),
        ),
      { name: "TypeError" },
      JSON.stringify([name, value]),
    );
  }
  // What a header may hold: tabs, spaces, visible ASCII, obs-text.
  const text = new TextDecoder().decode(
    encodeAcceptResponse("x", [["Set-Cookie", "a=b; Path=/\tx"]]),
  );
  assert.match(text, /\r\nSet-Cookie: a=b; Path=\/\tx\r\n/);
});

Deno.test("encodeRejectionResponse refuses a status that is not a final one with a body, and framing fields of the error's own; takes Connection: close or upgrade, and its own Content-Type or Date instead of the defaults", () => {
  const encode = (status: number, headers: Record<string, string> = {}) =>
    new TextDecoder().decode(
      encodeRejectionResponse(new HandshakeError(status, "no", headers), {
        date: new Date(0),
      }),
    );
  for (const status of [0, 101, 199, 204, 304, 600, 403.5, NaN]) {
    assert.throws(() => encode(status), {
      name: "TypeError",
      message: new RegExp(
        `its status must be a final one that has a body \\(200-599 but 204 and 304\\), got ${status}$`,
      ),
    }, String(status));
  }
  for (const status of [200, 400, 599]) {
    assert.match(encode(status), new RegExp(`^HTTP/1\\.1 ${status} `));
  }
  for (
    const headers of <Record<string, string>[]> [
      { "Content-Length": "0" },
      { "transfer-encoding": "chunked" },
      { Connection: "keep-alive" },
      { Connection: "close, keep-alive" },
    ]
  ) {
    assert.throws(() => encode(403, headers), {
      name: "TypeError",
      message: /is the response's own/,
    }, JSON.stringify(headers));
  }
  for (const value of ["close", "Upgrade", "close, upgrade"]) {
    assert.match(encode(426, { Connection: value }), /^HTTP\/1\.1 426 /);
  }
  const own = encode(401, {
    "Content-Type": "application/json",
    Date: "Thu, 01 Jan 1970 00:00:01 GMT",
  });
  assert.equal(own.match(/^content-type:/gim)?.length, 1);
  assert.match(own, /^Content-Type: application\/json\r$/m);
  assert.equal(own.match(/^date:/gim)?.length, 1);
  assert.match(own, /^Date: Thu, 01 Jan 1970 00:00:01 GMT\r$/m);
  assert.match(encode(401), /^Content-Type: text\/plain; charset=utf-8\r$/m);
});
