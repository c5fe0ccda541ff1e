import assert from "node:assert/strict";
import {
  encodeClosePayload,
  isValidCloseCode,
  parseClosePayload,
  PROTOCOL_ERROR_CODE,
  ProtocolError,
} from "./_core.ts";
import { closeBody, utf8 } from "./_helpers.ts";

const E = PROTOCOL_ERROR_CODE;

/** RFC 6455 §7.4 and the IANA registry, written out independently. */
function mayBeSent(code: number): boolean {
  if (code >= 3000 && code <= 4999) return true;
  return [
    1000,
    1001,
    1002,
    1003,
    1007,
    1008,
    1009,
    1010,
    1011,
    1012,
    1013,
    1014,
  ]
    .includes(code);
}

function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (error) => {
    assert.ok(error instanceof ProtocolError);
    assert.equal(error.code, code);
    return true;
  });
}

// ---------------------------------------------------------------------------
// RFC 6455 §7.4: status codes
// ---------------------------------------------------------------------------

Deno.test("isValidCloseCode accepts exactly 1000-1003, 1007-1014 and 3000-4999 (RFC 6455 §7.4)", () => {
  for (let code = 0; code <= 65535; code++) {
    assert.equal(isValidCloseCode(code), mayBeSent(code), `${code}`);
  }
  for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000]) {
    assert.equal(isValidCloseCode(code), false, `${code}`);
  }
  for (const code of [1000, 1001, 1002, 1003, 1007, 1014, 3000, 4999]) {
    assert.equal(isValidCloseCode(code), true, `${code}`);
  }
});

Deno.test("isValidCloseCode rejects non-integers (RFC 6455 §7.4)", () => {
  for (const code of [1000.5, NaN, Infinity, -1000]) {
    assert.equal(isValidCloseCode(code), false);
  }
});

// ---------------------------------------------------------------------------
// RFC 6455 §5.5.1: parsing a received close payload
// ---------------------------------------------------------------------------

Deno.test("parseClosePayload reads code and reason (RFC 6455 §5.5.1)", () => {
  assert.deepEqual(parseClosePayload(closeBody(1000, "ok")), {
    code: 1000,
    reason: "ok",
  });
  assert.deepEqual(parseClosePayload(closeBody(4999)), {
    code: 4999,
    reason: "",
  });
  assert.deepEqual(parseClosePayload(closeBody(3000, "κόσμε")), {
    code: 3000,
    reason: "κόσμε",
  });
});

Deno.test("parseClosePayload maps an empty payload to 1005 (RFC 6455 §7.1.5)", () => {
  assert.deepEqual(parseClosePayload(new Uint8Array(0)), {
    code: 1005,
    reason: "",
  });
});

Deno.test("parseClosePayload rejects a 1-byte payload (RFC 6455 §5.5.1)", () => {
  for (const byte of [0x00, 0x03, 0xff]) {
    throwsCode(
      () => parseClosePayload(Uint8Array.of(byte)),
      E.InvalidClosePayload,
    );
  }
});

Deno.test("parseClosePayload rejects codes that may not be sent (RFC 6455 §7.4)", () => {
  for (
    const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]
  ) {
    throwsCode(() => parseClosePayload(closeBody(code)), E.InvalidCloseCode);
  }
});

Deno.test("parseClosePayload rejects a reason that is not UTF-8 (RFC 6455 §5.5.1)", () => {
  for (
    const bad of [[0x80], [0xc3], [0xed, 0xb0, 0x80], [0xf4, 0x90, 0x80, 0x80]]
  ) {
    throwsCode(
      () => parseClosePayload(closeBody(1000, Uint8Array.from(bad))),
      E.InvalidUtf8,
    );
  }
});

Deno.test("parseClosePayload checks the code before the reason (RFC 6455 §7.4)", () => {
  throwsCode(
    () => parseClosePayload(closeBody(1005, Uint8Array.of(0xff))),
    E.InvalidCloseCode,
  );
});

Deno.test("parseClosePayload keeps a byte order mark in the reason (RFC 6455 §5.5.1)", () => {
  const reason = Uint8Array.of(0xef, 0xbb, 0xbf, 0x78);
  assert.equal(parseClosePayload(closeBody(1000, reason)).reason, "\uFEFFx");
});

// ---------------------------------------------------------------------------
// RFC 6455 §5.5.1: encoding a close payload to send
// ---------------------------------------------------------------------------

Deno.test("encodeClosePayload writes the code big-endian, then the reason (RFC 6455 §5.5.1)", () => {
  assert.deepEqual(
    encodeClosePayload(1000, "ok"),
    Uint8Array.of(0x03, 0xe8, 0x6f, 0x6b),
  );
  assert.deepEqual(encodeClosePayload(4999), Uint8Array.of(0x13, 0x87));
  assert.deepEqual(encodeClosePayload(undefined), new Uint8Array(0));
  assert.deepEqual(encodeClosePayload(3000, "é"), closeBody(3000, "é"));
});

Deno.test("encodeClosePayload accepts a 123-byte reason and rejects 124 bytes with RangeError (RFC 6455 §5.5)", () => {
  const reason = "€".repeat(41); // 123 bytes
  assert.equal(utf8(reason).length, 123);
  assert.equal(encodeClosePayload(1000, reason).length, 125);
  assert.throws(
    () => encodeClosePayload(1000, reason + "x"),
    new RangeError(
      'Cannot close: "reason" must be at most 123 bytes of UTF-8, got 124',
    ),
  );
});

Deno.test("encodeClosePayload rejects codes that may not be sent with RangeError (RFC 6455 §7.4)", () => {
  for (const code of [0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 1000.5]) {
    assert.throws(
      () => encodeClosePayload(code),
      new RangeError(
        `Cannot close: "code" must be 1000-1003, 1007-1014 or 3000-4999, got ${code}`,
      ),
    );
  }
});

Deno.test("encodeClosePayload names the type of a code that is not a number", () => {
  assert.throws(
    () => encodeClosePayload("1000" as unknown as number),
    new RangeError(
      'Cannot close: "code" must be 1000-1003, 1007-1014 or 3000-4999, got string "1000"',
    ),
  );
});

Deno.test("encodeClosePayload rejects a reason without a code with TypeError (RFC 6455 §5.5.1)", () => {
  assert.throws(
    () => encodeClosePayload(undefined, "why"),
    new TypeError(
      "Cannot close: a reason needs a code, got a reason without one",
    ),
  );
});

Deno.test("encodeClosePayload and parseClosePayload round-trip every valid code (RFC 6455 §5.5.1)", () => {
  for (let code = 0; code <= 5000; code++) {
    if (!isValidCloseCode(code)) continue;
    assert.deepEqual(parseClosePayload(encodeClosePayload(code, "r")), {
      code,
      reason: "r",
    });
  }
});
