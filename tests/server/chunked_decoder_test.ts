import assert from "node:assert/strict";
import { ChunkedDecoder } from "../../src/server/_chunked_decoder.ts";
import { HttpRequestError } from "../../src/server/http_request_error.ts";

const utf8 = new TextEncoder();
const latin1 = (bytes: Uint8Array) => String.fromCharCode(...bytes);

/** Feeds `pieces` in order; returns the content, whether done, and the rest. */
function decode(
  pieces: Uint8Array[],
  maxBodySize = 1024,
): { content: string; done: boolean; rest: string } {
  const decoder = new ChunkedDecoder({ maxBodySize, maxTrailerSize: 64 });
  let content = "";
  let done = false;
  let rest = "";
  for (const piece of pieces) {
    assert.equal(done, false, "no input after the end");
    const output = decoder.receive(piece);
    for (const view of output.data) content += latin1(view);
    done = output.done;
    rest = latin1(output.rest);
  }
  return { content, done, rest };
}

function cuts(bytes: Uint8Array, seed: number): Uint8Array[] {
  // A small deterministic PRNG (mulberry32), so failures replay.
  let state = seed;
  const random = () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pieces: Uint8Array[] = [];
  for (let i = 0; i < bytes.length;) {
    const n = 1 + Math.floor(random() * 8);
    pieces.push(bytes.subarray(i, i + n));
    i += n;
  }
  return pieces;
}

const FIXTURE = utf8.encode(
  '5;a=b;c="d e"\r\nhello\r\n' +
    "1A\r\nabcdefghijklmnopqrstuvwxyz\r\n" +
    "00003 \t; x\r\n!!!\r\n" +
    "0;last\r\nTrailer-One: 1\r\nTrailer-Two:\r\n\r\n" +
    "GET /next HTTP/1.1\r\n",
);
const CONTENT = "hello" + "abcdefghijklmnopqrstuvwxyz" + "!!!";

Deno.test("ChunkedDecoder decodes a body fed whole, byte by byte and in random cuts (RFC 9112 §7.1)", () => {
  const whole = decode([FIXTURE]);
  assert.deepEqual(whole, {
    content: CONTENT,
    done: true,
    rest: "GET /next HTTP/1.1\r\n",
  });
  const bytes = [...FIXTURE].map((byte) => new Uint8Array([byte]));
  const end = FIXTURE.length - "GET /next HTTP/1.1\r\n".length;
  // One byte at a time the body ends exactly at a piece's end.
  assert.deepEqual(decode(bytes.slice(0, end)), {
    content: CONTENT,
    done: true,
    rest: "",
  });
  for (let seed = 1; seed <= 50; seed++) {
    const pieces = cuts(FIXTURE, seed);
    const decoder = new ChunkedDecoder({ maxBodySize: 1024 });
    let content = "";
    let rest = "";
    let done = false;
    for (const piece of pieces) {
      if (done) {
        rest += latin1(piece);
        continue;
      }
      const output = decoder.receive(piece);
      for (const view of output.data) content += latin1(view);
      done = output.done;
      rest += latin1(output.rest);
    }
    assert.equal(content, CONTENT, `seed ${seed}`);
    assert.equal(rest, "GET /next HTTP/1.1\r\n", `seed ${seed}`);
  }
});

Deno.test("ChunkedDecoder returns views into the input, not copies", () => {
  const input = utf8.encode("3\r\nabc\r\n");
  const output = new ChunkedDecoder({ maxBodySize: 10 }).receive(input);
  assert.equal(output.data.length, 1);
  assert.equal(output.data[0].buffer, input.buffer);
  assert.equal(output.done, false);
});

Deno.test("ChunkedDecoder rejects broken framing with 400", () => {
  const cases: [string, string, RegExp][] = [
    ["bare LF after a size", "5\nhello\r\n", /bare LF/],
    ["bare CR in a size line", "5\r;x\r\n", /bare CR/],
    ["bare LF after the trailers", "0\r\n\n", /bare LF/],
    ["non-hex size", "zz\r\n", /Malformed chunk size line: "zz"/],
    ["empty size", "\r\n", /Malformed chunk size line: ""/],
    ["leading space", " 5\r\nhello\r\n", /Malformed chunk size line/],
    ["0x prefix", "0x5\r\nhello\r\n", /Malformed chunk size line/],
    ["negative size", "-5\r\n", /Malformed chunk size line/],
    ["extension without ;", "5 x\r\nhello\r\n", /Malformed chunk size line/],
    ["control byte in an extension", "5;\x01\r\nhello\r\n", /Malformed/],
    ["data longer than its size", "3\r\nabcd\r\n", /not followed by CRLF/],
    ["data followed by LF only", "3\r\nabc\n", /not followed by CRLF/],
    ["malformed trailer", "0\r\nno colon\r\n\r\n", /Malformed trailer field/],
  ];
  for (const [name, text, message] of cases) {
    const bytes = utf8.encode(text);
    for (
      const pieces of [
        [bytes],
        [...bytes].map((b) => new Uint8Array([b])),
      ]
    ) {
      assert.throws(
        () => decode(pieces),
        (error) => {
          assert.ok(error instanceof HttpRequestError, name);
          assert.equal(error.status, 400, name);
          assert.match(error.message, message, name);
          return true;
        },
      );
    }
  }
});

Deno.test("ChunkedDecoder rejects a chunk over maxBodySize with 413 before its data", () => {
  const decoder = new ChunkedDecoder({ maxBodySize: 10 });
  decoder.receive(utf8.encode("6\r\nabcdef\r\n"));
  assert.equal(decoder.received, 6);
  // 5 more would make 11: refused from the size line alone.
  assert.throws(
    () => decoder.receive(utf8.encode("5\r\n")),
    { name: "HttpRequestError", status: 413 },
  );
  assert.throws(
    () => decode([utf8.encode("fffffffffffffffffffff\r\n")]),
    { name: "HttpRequestError", status: 413 },
  );
  assert.deepEqual(decode([utf8.encode("a\r\n0123456789\r\n0\r\n\r\n")], 10), {
    content: "0123456789",
    done: true,
    rest: "",
  });
});

Deno.test("ChunkedDecoder limits size lines (400) and trailers (431)", () => {
  assert.throws(
    () => decode([utf8.encode(`1;${"x".repeat(5000)}`)]),
    { name: "HttpRequestError", status: 400 },
  );
  assert.throws(
    () => decode([utf8.encode(`0\r\nX: ${"y".repeat(100)}\r\n`)]),
    { name: "HttpRequestError", status: 431 },
  );
});

Deno.test("ChunkedDecoder refuses chunk extensions or padding out of proportion to the content (400), as Go does; honest tiny chunks pass", () => {
  // 1-byte chunks with 1000-byte extensions: 25 KB of content would take
  // 25 MB of wire; the decoder stops within the first 20 chunks.
  const padded = utf8.encode(`1;${"x".repeat(1000)}\r\na\r\n`);
  const decoder = new ChunkedDecoder({ maxBodySize: 1024 * 1024 });
  assert.throws(
    () => {
      for (let i = 0; i < 25_000; i++) decoder.receive(padded);
    },
    (error) =>
      error instanceof HttpRequestError && error.status === 400 &&
      /too many bytes of chunk extensions or padding/.test(error.message),
  );
  assert.ok(decoder.received <= 20, `stopped after ${decoder.received}`);
  // Leading zeros are padding too.
  const zeros = new ChunkedDecoder({ maxBodySize: 1024 * 1024 });
  assert.throws(
    () => {
      for (let i = 0; i < 100; i++) {
        zeros.receive(utf8.encode(`${"0".repeat(4000)}1\r\na\r\n`));
      }
    },
    { status: 400 },
  );
  // A client that sends a byte per chunk with short extensions is fine.
  const tiny = new ChunkedDecoder({ maxBodySize: 1024 * 1024 });
  for (let i = 0; i < 100_000; i++) {
    tiny.receive(utf8.encode("1;ab=c\r\na\r\n"));
  }
  assert.equal(tiny.received, 100_000);
});
