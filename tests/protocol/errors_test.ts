import assert from "node:assert/strict";
import {
  CLOSE_CODE,
  Connection,
  type ConnectionOptions,
  HandshakeError,
  inflateMessage,
  OPCODE,
  PROTOCOL_ERROR_CODE,
  ProtocolError,
  type ProtocolErrorCode,
} from "./_core.ts";
import {
  assertFailed,
  clientFrame,
  closeBody,
  concat,
  feedAllWays,
  fixedMaskKey,
  header,
  pattern,
  serverFrame,
} from "./_helpers.ts";

const { Continuation, Text, Binary, Close, Ping } = OPCODE;

interface Row {
  fixture: Uint8Array;
  options?: Partial<ConnectionOptions>;
  closeCode: number;
  /** The exact message, or a pattern when it quotes a library's words. */
  message: string | RegExp;
}

const msbLength = header(Binary, 0, { lengthBytes: 8 });
msbLength[2] = 0x80;

/** The one code no input produces: a driver's deadline, `Connection.fail()`. */
const DRIVER_CODE = "MESSAGE_TIMEOUT";

/** One fixture per error code found in the input, with the error it must produce. */
const TABLE: Record<Exclude<ProtocolErrorCode, typeof DRIVER_CODE>, Row> = {
  UNMASKED_FRAME: {
    fixture: serverFrame(Text, "x"),
    closeCode: 1002,
    message: "A client must mask every frame (RFC 6455 §5.1)",
  },
  MASKED_FRAME: {
    fixture: clientFrame(Text, "x"),
    options: { role: "client", generateMaskKey: fixedMaskKey },
    closeCode: 1002,
    message: "A server must not mask frames (RFC 6455 §5.1)",
  },
  RESERVED_BITS: {
    fixture: clientFrame(Text, "x", { rsv: 0x40 }),
    closeCode: 1002,
    message: "Frame has reserved bits 0x40 set without a negotiated extension",
  },
  RESERVED_OPCODE: {
    fixture: clientFrame(0xb, "x"),
    closeCode: 1002,
    message: "Opcode 0xb is reserved (RFC 6455 §5.2)",
  },
  FRAGMENTED_CONTROL_FRAME: {
    fixture: clientFrame(Ping, "x", { fin: false }),
    closeCode: 1002,
    message: "Control frames must not be fragmented (RFC 6455 §5.5)",
  },
  CONTROL_FRAME_TOO_LONG: {
    fixture: clientFrame(Ping, pattern(126)),
    closeCode: 1002,
    message:
      "Control frame payload is 126 bytes; the limit is 125 (RFC 6455 §5.5)",
  },
  UNEXPECTED_CONTINUATION: {
    fixture: clientFrame(Continuation, "x"),
    closeCode: 1002,
    message: "Continuation frame without a message to continue (RFC 6455 §5.4)",
  },
  EXPECTED_CONTINUATION: {
    fixture: concat(
      clientFrame(Text, "x", { fin: false }),
      clientFrame(Text, "y"),
    ),
    closeCode: 1002,
    message: "New data frame inside a fragmented message (RFC 6455 §5.4)",
  },
  INVALID_LENGTH: {
    fixture: msbLength,
    closeCode: 1002,
    message: "Frame length has its most significant bit set (RFC 6455 §5.2)",
  },
  INVALID_UTF8: {
    fixture: clientFrame(Text, Uint8Array.of(0xff)),
    closeCode: 1007,
    message: "Text message is not valid UTF-8 (RFC 6455 §8.1)",
  },
  INVALID_CLOSE_PAYLOAD: {
    fixture: clientFrame(Close, Uint8Array.of(3)),
    closeCode: 1002,
    message:
      "Close frame payload of 1 byte cannot hold a status code (RFC 6455 §5.5.1)",
  },
  INVALID_CLOSE_CODE: {
    fixture: clientFrame(Close, closeBody(1005)),
    closeCode: 1002,
    message: "Close code 1005 may not be sent (RFC 6455 §7.4)",
  },
  INVALID_COMPRESSED_DATA: {
    // RSV1 (compressed, RFC 7692 §6) on DEFLATE block type 3, which is
    // reserved (RFC 1951 §3.2.3).
    fixture: clientFrame(Text, Uint8Array.of(0xff), { rsv: 0x40 }),
    options: {
      perMessageDeflate: { inflate: inflateMessage, threshold: Infinity },
    },
    closeCode: 1007,
    message: /^Compressed message is not valid raw DEFLATE data: /,
  },
  MESSAGE_TOO_BIG: {
    fixture: header(Binary, 2 ** 40),
    closeCode: 1009,
    message: `Message of at least ${
      2 ** 40
    } bytes exceeds maxPayload (16777216)`,
  },
  TOO_MANY_FRAGMENTS: {
    fixture: concat(
      clientFrame(Binary, "", { fin: false }),
      clientFrame(Continuation, ""),
    ),
    options: { maxFragments: 1 },
    closeCode: 1009,
    message: "Message has more than 1 fragments (maxFragments)",
  },
};

Deno.test("PROTOCOL_ERROR_CODE lists exactly the codes of the table (RFC 6455 §7.4.1)", () => {
  assert.deepEqual(
    Object.values(PROTOCOL_ERROR_CODE).sort(),
    [...Object.keys(TABLE), DRIVER_CODE].sort(),
  );
  for (const [key, value] of Object.entries(PROTOCOL_ERROR_CODE)) {
    // UnmaskedFrame -> UNMASKED_FRAME
    assert.equal(value, key.replace(/(?<!^)([A-Z])/g, "_$1").toUpperCase());
  }
});

for (const [code, row] of Object.entries(TABLE)) {
  Deno.test(`ProtocolError ${code} has close code ${row.closeCode} and a pinned message (RFC 6455 §7.4.1)`, () => {
    const connection = new Connection({ role: "server", ...row.options });
    connection.receive(row.fixture.slice());
    const events = connection.takeEvents();
    const event = events.at(-1);
    assert.ok(event?.type === "error");
    const { error } = event;
    assert.ok(error instanceof ProtocolError);
    assert.ok(error instanceof Error);
    assert.equal(Object.getPrototypeOf(error), ProtocolError.prototype);
    assert.equal(error.name, "ProtocolError");
    assert.equal(error.code, code);
    assert.equal(error.closeCode, row.closeCode);
    if (typeof row.message === "string") {
      assert.equal(error.message, row.message);
    } else assert.match(error.message, row.message);
    assert.equal(new ProtocolError(error.code, "m").closeCode, row.closeCode);
    // And the connection fails the same way under every chunking.
    assertFailed(feedAllWays(row.fixture, row.options), code, row.closeCode, {
      role: row.options?.role,
    });
  });
}

Deno.test("ProtocolError close codes are 1002, 1007 and 1009 for the input, 1008 for a driver's deadline (RFC 6455 §7.4.1)", () => {
  assert.equal(
    new ProtocolError(DRIVER_CODE, "").closeCode,
    CLOSE_CODE.PolicyViolation,
  );
  const closeCodes = new Set(
    Object.keys(TABLE).map((code) =>
      new ProtocolError(code as ProtocolErrorCode, "").closeCode
    ),
  );
  assert.deepEqual([...closeCodes].sort(), [
    CLOSE_CODE.ProtocolError,
    CLOSE_CODE.InvalidPayload,
    CLOSE_CODE.MessageTooBig,
  ]);
});

Deno.test("HandshakeError carries status, headers and message (RFC 6455 §4.2.2)", () => {
  const error = new HandshakeError(405, "Method must be GET", { allow: "GET" });
  assert.ok(error instanceof Error);
  assert.equal(error.name, "HandshakeError");
  assert.equal(error.status, 405);
  assert.deepEqual(error.headers, { allow: "GET" });
  assert.equal(error.message, "Method must be GET");
  assert.deepEqual(new HandshakeError(400, "x").headers, {});
});

Deno.test("CLOSE_CODE matches RFC 6455 §7.4.1 and the IANA registry (RFC 6455 §7.4.1)", () => {
  assert.deepEqual(CLOSE_CODE, {
    NormalClosure: 1000,
    GoingAway: 1001,
    ProtocolError: 1002,
    UnsupportedData: 1003,
    NoStatusReceived: 1005,
    AbnormalClosure: 1006,
    InvalidPayload: 1007,
    PolicyViolation: 1008,
    MessageTooBig: 1009,
    MandatoryExtension: 1010,
    InternalError: 1011,
    ServiceRestart: 1012,
    TryAgainLater: 1013,
  });
});
