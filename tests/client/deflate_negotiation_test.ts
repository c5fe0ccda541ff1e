/**
 * The client's permessage-deflate offer and its checks of the server's
 * answer (RFC 7692 §7.1), byte-level: a ClientHandshake fed canned
 * responses.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  type ClientDeflateOptions,
  ClientHandshake,
  ClientHandshakeError,
  type PerMessageDeflateParams,
} from "../../mod.ts";

// The RFC 6455 §1.3 sample key and its accept value.
const SAMPLE_BYTES = Uint8Array.fromBase64("dGhlIHNhbXBsZSBub25jZQ==");
const SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

function handshake(
  settings: boolean | ClientDeflateOptions,
): ClientHandshake {
  return ClientHandshake.create("ws://example.com/", {
    perMessageDeflate: settings,
    generateKey: (bytes) => bytes.set(SAMPLE_BYTES),
  });
}

/** The request's `Sec-WebSocket-Extensions` for `settings`. */
function offerOf(
  settings: boolean | ClientDeflateOptions,
): string | null {
  const request = new TextDecoder().decode(handshake(settings).request);
  return /\r\nSec-WebSocket-Extensions: ([^\r]*)\r\n/.exec(request)?.[1] ??
    null;
}

/** What the client agrees to when the server answers `answer`. */
function agreed(
  settings: boolean | ClientDeflateOptions,
  answer: string,
): PerMessageDeflateParams | undefined {
  const response =
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
    `Connection: Upgrade\r\nSec-WebSocket-Accept: ${SAMPLE_ACCEPT}\r\n` +
    `Sec-WebSocket-Extensions: ${answer}\r\n\r\n`;
  const result = handshake(settings).receive(
    new TextEncoder().encode(response),
  );
  assert.ok(result !== undefined, "a complete response");
  return result.perMessageDeflate;
}

/** The parameters of context takeover both ways, 15-bit windows. */
const TAKEOVER: PerMessageDeflateParams = {
  serverNoContextTakeover: false,
  clientNoContextTakeover: false,
  serverMaxWindowBits: 15,
  clientMaxWindowBits: 15,
  level: 6,
  memLevel: 8,
  threshold: 1024,
};

Deno.test("ClientHandshake offers permessage-deflate with its settings' parameters (RFC 7692 §7.1.1, §7.1.2)", () => {
  const cases: [boolean | ClientDeflateOptions, string | null][] = [
    [false, null],
    // A browser's and npm:ws's offer: context takeover, limits allowed.
    [true, "permessage-deflate; client_max_window_bits"],
    [{}, "permessage-deflate; client_max_window_bits"],
    [
      { serverNoContextTakeover: true },
      "permessage-deflate; server_no_context_takeover; client_max_window_bits",
    ],
    [
      { clientNoContextTakeover: true },
      "permessage-deflate; client_no_context_takeover; client_max_window_bits",
    ],
    [
      { serverMaxWindowBits: 10 },
      "permessage-deflate; server_max_window_bits=10; client_max_window_bits",
    ],
    // client_max_window_bits with a value: the client's own limit.
    [
      { clientMaxWindowBits: 12 },
      "permessage-deflate; client_max_window_bits=12",
    ],
    [
      {
        serverNoContextTakeover: true,
        clientNoContextTakeover: true,
        serverMaxWindowBits: 9,
        clientMaxWindowBits: 9,
        level: 1,
        threshold: 0,
      },
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=9",
    ],
  ];
  for (const [settings, offer] of cases) {
    assert.equal(offerOf(settings), offer, JSON.stringify(settings));
  }
});

Deno.test("ClientHandshake agrees to context takeover both ways when the answer has no *_no_context_takeover (RFC 7692 §7.1.1)", () => {
  assert.deepEqual(agreed(true, "permessage-deflate"), TAKEOVER);
  assert.deepEqual(
    agreed(
      { level: 9, memLevel: 4, threshold: 64 },
      "permessage-deflate; client_max_window_bits=15",
    ),
    { ...TAKEOVER, level: 9, memLevel: 4, threshold: 64 },
  );
});

Deno.test("ClientHandshake takes server_no_context_takeover the server adds unasked (RFC 7692 §7.1.1.1)", () => {
  assert.deepEqual(
    agreed(true, "permessage-deflate; server_no_context_takeover"),
    { ...TAKEOVER, serverNoContextTakeover: true },
  );
});

Deno.test("ClientHandshake gives up its own context takeover when the server answers client_no_context_takeover (RFC 7692 §7.1.1.2)", () => {
  assert.deepEqual(
    agreed(true, "permessage-deflate; client_no_context_takeover"),
    { ...TAKEOVER, clientNoContextTakeover: true },
  );
  // Asked for by the client itself, answered or not.
  assert.deepEqual(
    agreed({ clientNoContextTakeover: true }, "permessage-deflate"),
    { ...TAKEOVER, clientNoContextTakeover: true },
  );
});

Deno.test("ClientHandshake takes a server_max_window_bits up to its own limit, or unasked (RFC 7692 §7.1.2.1)", () => {
  // "A server MAY include [it] even if the extension negotiation offer
  // being accepted by the response didn't include" it.
  assert.equal(
    (agreed(true, "permessage-deflate; server_max_window_bits=10"))
      ?.serverMaxWindowBits,
    10,
  );
  assert.equal(
    (agreed(true, "permessage-deflate; server_max_window_bits=8"))
      ?.serverMaxWindowBits,
    8,
  );
  // "the same or smaller value as the offer".
  for (const bits of [12, 9]) {
    assert.equal(
      (agreed(
        { serverMaxWindowBits: 12 },
        `permessage-deflate; server_max_window_bits=${bits}`,
      ))?.serverMaxWindowBits,
      bits,
    );
  }
});

Deno.test("ClientHandshake compresses within the smaller of its own limit and the server's client_max_window_bits (RFC 7692 §7.1.2.2)", () => {
  const cases: [ClientDeflateOptions, string, number][] = [
    [{}, "permessage-deflate; client_max_window_bits=9", 9],
    [{}, 'permessage-deflate; client_max_window_bits="11"', 11],
    // 8 is taken; the client then sends uncompressed (zlib has no 8).
    [{}, "permessage-deflate; client_max_window_bits=8", 8],
    [{ clientMaxWindowBits: 12 }, "permessage-deflate", 12],
    [
      { clientMaxWindowBits: 12 },
      "permessage-deflate; client_max_window_bits=10",
      10,
    ],
    // A server that ignores the client's value: the client keeps to it.
    [
      { clientMaxWindowBits: 12 },
      "permessage-deflate; client_max_window_bits=15",
      12,
    ],
  ];
  for (const [settings, answer, bits] of cases) {
    assert.equal(
      (agreed(settings, answer))?.clientMaxWindowBits,
      bits,
      `${JSON.stringify(settings)} answered ${answer}`,
    );
  }
});

Deno.test("ClientHandshake fails an answer the offer does not allow, saying why (RFC 7692 §7.1)", () => {
  const cases: [boolean | ClientDeflateOptions, string, RegExp][] = [
    // §7.1.1.1: asked for, so it must be in an acceptance.
    [
      { serverNoContextTakeover: true },
      "permessage-deflate",
      /server_no_context_takeover is missing, though the client asked for it/,
    ],
    // §7.1.2.1: "the same or smaller value as the offer".
    [
      { serverMaxWindowBits: 10 },
      "permessage-deflate",
      /server_max_window_bits is missing, though the client limited the server's window to 10 bits/,
    ],
    [
      { serverMaxWindowBits: 10 },
      "permessage-deflate; server_max_window_bits=11",
      /server_max_window_bits=11 is larger than the 10 bits the client offered/,
    ],
    // §7.1.2: window bits have a value, 8 to 15, without leading zeros.
    [
      true,
      "permessage-deflate; server_max_window_bits",
      /server_max_window_bits must have a value from 8 to 15, got none/,
    ],
    [
      true,
      "permessage-deflate; server_max_window_bits=7",
      /server_max_window_bits must have a value from 8 to 15, got "7"/,
    ],
    [
      true,
      "permessage-deflate; server_max_window_bits=16",
      /got "16"/,
    ],
    [true, "permessage-deflate; server_max_window_bits=010", /got "010"/],
    [
      true,
      "permessage-deflate; client_max_window_bits",
      /client_max_window_bits must have a value from 8 to 15, got none/,
    ],
    [true, "permessage-deflate; client_max_window_bits=16", /got "16"/],
    // "an extension parameter with an invalid value".
    [
      true,
      "permessage-deflate; server_no_context_takeover=1",
      /server_no_context_takeover may have no value/,
    ],
    [
      true,
      'permessage-deflate; client_no_context_takeover="yes"',
      /client_no_context_takeover may have no value/,
    ],
    // "multiple extension parameters with the same name".
    [
      true,
      "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
      /it has server_max_window_bits twice/,
    ],
    // "an extension parameter not defined for use in a response".
    [
      true,
      "permessage-deflate; x_unknown",
      /x_unknown is not a permessage-deflate parameter/,
    ],
    [
      true,
      "x-webkit-deflate-frame",
      /the client offered permessage-deflate once, and nothing else/,
    ],
    [
      true,
      "permessage-deflate, permessage-deflate",
      /the client offered permessage-deflate once, and nothing else/,
    ],
    [true, "permessage-deflate; =", /its syntax is not valid/],
  ];
  for (const [settings, answer, reason] of cases) {
    assert.throws(
      () => agreed(settings, answer),
      (error) => {
        assert.ok(error instanceof ClientHandshakeError, String(error));
        assert.equal(error.code, "UNEXPECTED_EXTENSION");
        assert.match(error.message, reason);
        assert.ok(error.message.endsWith(`it answered ${answer}`));
        return true;
      },
      answer,
    );
  }
});
