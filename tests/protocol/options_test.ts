// The core's classes are exported: a JavaScript caller's NaN, negative or
// missing limit must not switch a limit off.
import assert from "node:assert/strict";
import {
  Connection,
  FrameParser,
  HttpRequestParser,
  MessageAssembler,
} from "../../mod.ts";

// deno-lint-ignore no-explicit-any
type Any = any;

Deno.test("the core's classes reject limits that are not positive integers with a RangeError naming them", () => {
  for (const bad of [NaN, -1, 0, 1.5, Infinity, "5", undefined]) {
    const shown = typeof bad === "number"
      ? String(bad)
      : bad === undefined
      ? "undefined"
      : `string "${bad}"`;
    assert.throws(
      () => new MessageAssembler({ maxPayload: bad, maxFragments: 8 } as Any),
      {
        name: "RangeError",
        message: `"maxPayload" must be a positive integer, got ${shown}`,
      },
    );
    assert.throws(
      () => new MessageAssembler({ maxPayload: 8, maxFragments: bad } as Any),
      { name: "RangeError", message: /^"maxFragments" must be/ },
    );
    if (bad === undefined) continue; // the parser has defaults
    assert.throws(() => new HttpRequestParser({ maxHeadSize: bad } as Any), {
      name: "RangeError",
      message: `"maxHeadSize" must be a positive integer, got ${shown}`,
    });
    assert.throws(() => new HttpRequestParser({ maxHeaders: bad } as Any), {
      name: "RangeError",
      message: /^"maxHeaders" must be/,
    });
    assert.throws(
      () => new Connection({ role: "server", maxPayload: bad } as Any),
      { name: "RangeError", message: /^"maxPayload" must be/ },
    );
  }
});

Deno.test("Connection and FrameParser need a role of server or client", () => {
  for (const options of [undefined, {}, { role: "Server" }, { role: "x" }]) {
    assert.throws(() => new Connection(options as Any), {
      name: "TypeError",
      message: /^"role" must be "server" or "client", got /,
    });
    assert.throws(() => new FrameParser(options as Any), {
      name: "TypeError",
      message: /^"role" must be "server" or "client", got /,
    });
  }
});
