import assert from "node:assert/strict";
import fc from "fast-check";
import {
  Connection,
  type FrameHandler,
  FrameParser,
  FrameWriter,
  HandshakeError,
  HttpRequestParser,
  isValidCloseCode,
  OPCODE,
  PROTOCOL_ERROR_CODE,
  ProtocolError,
  validateUpgradeRequest,
} from "./_core.ts";
import {
  closeBody,
  concat,
  feed,
  type FeedOptions,
  frame,
  observe,
  type Observed,
  serverFrame,
} from "./_helpers.ts";

const { Continuation, Text, Binary, Close, Ping, Pong } = OPCODE;
const DOCUMENTED = new Set<string>(Object.values(PROTOCOL_ERROR_CODE));
const RUNS = { numRuns: 300 };

/** Cuts `bytes` into pieces whose sizes cycle through `sizes`. */
function cutBy(bytes: Uint8Array, sizes: number[]): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  let at = 0;
  for (let i = 0; at < bytes.length; i++) {
    const size = sizes.length === 0 ? bytes.length : sizes[i % sizes.length];
    pieces.push(bytes.slice(at, at + size));
    at += size;
  }
  return pieces;
}

/** Piece sizes for arbitrary cuts: small, so headers split too. */
const cuts = fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 12 });

const textDecoder = new TextDecoder("utf-8", { ignoreBOM: true });
const textEncoder = new TextEncoder();

/** One thing a client sends: a message in fragments, or a control frame. */
type Item =
  | {
    kind: "text" | "binary";
    payload: Uint8Array;
    splits: number[];
    pings: (Uint8Array | null)[];
  }
  | { kind: "ping" | "pong"; payload: Uint8Array };

const controlPayload = fc.uint8Array({ maxLength: 125 });

const item: fc.Arbitrary<Item> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("text" as const),
      payload: fc.string({ unit: "binary", maxLength: 60 }).map((s) =>
        textEncoder.encode(s)
      ),
      splits: fc.array(fc.nat(), { maxLength: 4 }),
      pings: fc.array(fc.option(controlPayload, { nil: null }), {
        maxLength: 4,
      }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("binary" as const),
      payload: fc.oneof(
        { weight: 9, arbitrary: fc.uint8Array({ maxLength: 300 }) },
        {
          weight: 1,
          arbitrary: fc.integer({ min: 65530, max: 65540 }).map((n) =>
            new Uint8Array(n).fill(n & 0xff)
          ),
        },
      ),
      splits: fc.array(fc.nat(), { maxLength: 4 }),
      pings: fc.array(fc.option(controlPayload, { nil: null }), {
        maxLength: 4,
      }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constantFrom("ping" as const, "pong" as const),
      payload: controlPayload,
    }),
  },
);

Deno.test("Connection round-trips arbitrary client frames under arbitrary chunkings (RFC 6455 §5.2-5.5)", () => {
  fc.assert(
    fc.property(
      fc.array(item, { maxLength: 8 }),
      fc.array(fc.uint8Array({ minLength: 4, maxLength: 4 }), {
        minLength: 1,
        maxLength: 8,
      }),
      fc.option(fc.integer({ min: 1000, max: 4999 }), { nil: null }),
      cuts,
      (items, keys, closeCode, sizes) => {
        let next = 0;
        const writer = new FrameWriter({
          mask: true,
          generateMaskKey: (key) => key.set(keys[next++ % keys.length]),
        });
        const expected: Observed[] = [];
        const pings: Uint8Array[] = [];
        for (const it of items) {
          if (!("splits" in it)) {
            writer.writeFrame(it.kind === "ping" ? Ping : Pong, it.payload);
            expected.push({ type: it.kind, data: it.payload.slice() });
            if (it.kind === "ping") pings.push(it.payload);
            continue;
          }
          const { payload } = it;
          const points = [
            ...new Set(it.splits.map((s) => s % (payload.length + 1))),
          ].sort((a, b) => a - b);
          const bounds = [0, ...points, payload.length];
          const fragments = bounds.slice(1).map((end, i) =>
            payload.subarray(bounds[i], end)
          );
          fragments.forEach((fragment, i) => {
            const opcode = i > 0
              ? Continuation
              : it.kind === "text"
              ? Text
              : Binary;
            writer.writeFrame(opcode, fragment, i === fragments.length - 1);
            const ping = it.pings[i];
            if (ping && i < fragments.length - 1) {
              writer.writeFrame(Ping, ping);
              expected.push({ type: "ping", data: ping.slice() });
              pings.push(ping);
            }
          });
          expected.push(
            it.kind === "text"
              ? { type: "text", data: textDecoder.decode(payload) }
              : { type: "binary", data: payload.slice() },
          );
        }
        // Each ping is answered, up to 16; past them, the latest.
        const answered = pings.length > 16
          ? [...pings.slice(0, 16), pings.at(-1)!]
          : pings;
        let expectedOutput = concat(
          ...answered.map((ping) => serverFrame(Pong, ping)),
        );
        if (closeCode !== null && isValidCloseCode(closeCode)) {
          writer.writeFrame(Close, closeBody(closeCode, "bye"));
          expected.push({ type: "close", code: closeCode, reason: "bye" });
          expectedOutput = concat(
            expectedOutput,
            serverFrame(Close, closeBody(closeCode, "bye")),
          );
        }
        const bytes = concat(...writer.take());
        const outcome = feed(cutBy(bytes, sizes));
        assert.deepEqual(outcome.events, expected);
        assert.deepEqual(outcome.output, expectedOutput);
      },
    ),
    RUNS,
  );
});

/** Frame-like bytes: random header bits, mostly masked, any length encoding. */
const frameish = fc.record({
  b0: fc.oneof(
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) },
    {
      weight: 3,
      arbitrary: fc.constantFrom(
        0x81,
        0x82,
        0x01,
        0x00,
        0x80,
        0x88,
        0x89,
        0x8a,
      ),
    },
  ),
  masked: fc.oneof(
    { weight: 4, arbitrary: fc.constant(true) },
    { weight: 1, arbitrary: fc.constant(false) },
  ),
  lengthForm: fc.constantFrom(0, 0, 0, 2, 8),
  length: fc.nat(140),
  high: fc.constantFrom(0, 0, 0, 1, 0x80),
  key: fc.uint8Array({ minLength: 4, maxLength: 4 }),
  payload: fc.uint8Array({ maxLength: 140 }),
}).map(({ b0, masked, lengthForm, length, high, key, payload }) => {
  const out: number[] = [b0];
  const m = masked ? 0x80 : 0;
  if (lengthForm === 0) out.push(m | Math.min(length, 125));
  else if (lengthForm === 2) out.push(m | 126, length >> 8, length & 0xff);
  else out.push(m | 127, high, 0, 0, 0, 0, 0, length >> 8, length & 0xff);
  if (masked) out.push(...key);
  return concat(out, payload.subarray(0, length));
});

const anyBytes = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  fc.array(frameish, { maxLength: 8 }).map((frames) => concat(...frames)),
);

const connectionOptions: fc.Arbitrary<FeedOptions> = fc.record({
  role: fc.constantFrom("server" as const, "client" as const),
  maxPayload: fc.constantFrom(1, 64, 1000, 16 * 1024 * 1024),
  maxFragments: fc.constantFrom(1, 3, 4096),
  generateMaskKey: fc.constant((key: Uint8Array) => key.fill(7)),
});

Deno.test("Connection turns arbitrary bytes in arbitrary cuts into events or one documented error, never a throw (RFC 6455 §7.1.7)", () => {
  fc.assert(
    fc.property(anyBytes, cuts, connectionOptions, (bytes, sizes, options) => {
      const whole = feed([bytes.slice()], options);
      const pieces = feed(cutBy(bytes, sizes), options);
      assert.deepEqual(pieces, whole);
      const errors = whole.events.filter((event) => event.type === "error");
      assert.ok(errors.length <= 1);
      const closes = whole.events.filter((event) => event.type === "close");
      assert.ok(closes.length + errors.length <= 1);
      const last = whole.events.at(-1);
      if (errors.length === 1) {
        assert.equal(last, errors[0], "nothing follows an error");
        assert.ok(last?.type === "error" && DOCUMENTED.has(last.code));
        assert.ok([1002, 1007, 1009].includes(last.closeCode));
        assert.equal(whole.state, "closed");
        const close = frame(Close, closeBody(last.closeCode, last.code), {
          mask: options.role === "client",
          key: Uint8Array.of(7, 7, 7, 7),
        });
        assert.deepEqual(whole.output.subarray(-close.length), close);
      }
      if (closes.length === 1) assert.equal(last, closes[0]);
    }),
    { numRuns: 1000 },
  );
});

Deno.test("Connection.receive() only ever reports ProtocolError through events (RFC 6455 §7.1.7)", () => {
  fc.assert(
    fc.property(anyBytes, (bytes) => {
      const connection = new Connection({ role: "server", maxPayload: 100 });
      connection.receive(bytes);
      for (const event of connection.takeEvents()) {
        if (event.type === "error") {
          assert.ok(event.error instanceof ProtocolError);
          assert.ok(DOCUMENTED.has(event.error.code));
        }
      }
      // Further input after anything is harmless.
      connection.receive(bytes);
      observe(connection.takeEvents());
      connection.takeOutput();
    }),
    RUNS,
  );
});

Deno.test("FrameParser reports frames that re-encode to the same bytes (RFC 6455 §5.2)", () => {
  const frameSpec = fc.record({
    opcode: fc.constantFrom(0, 1, 2, 8, 9, 10),
    fin: fc.boolean(),
    rsv: fc.constantFrom(0, 0x40, 0x20, 0x10, 0x70),
    key: fc.uint8Array({ minLength: 4, maxLength: 4 }),
    payload: fc.uint8Array({ maxLength: 200 }),
  }).map((spec) =>
    spec.opcode >= 8
      ? { ...spec, fin: true, payload: spec.payload.subarray(0, 125) }
      : spec
  );
  fc.assert(
    fc.property(fc.array(frameSpec, { maxLength: 6 }), cuts, (specs, sizes) => {
      let next = 0;
      const writer = new FrameWriter({
        mask: true,
        generateMaskKey: (key) => key.set(specs[next++].key),
      });
      for (const spec of specs) {
        writer.writeFrame(spec.opcode, spec.payload, spec.fin, spec.rsv);
      }
      const bytes = concat(...writer.take());
      const parser = new FrameParser({ role: "server", allowedRsv: 0x70 });
      let reused = 0;
      const again = new FrameWriter({
        mask: true,
        generateMaskKey: (key) => key.set(specs[reused++].key),
      });
      let parts: Uint8Array[] = [];
      let start: [number, boolean, number] = [0, false, 0];
      const handler: FrameHandler = {
        onFrameStart: (opcode, fin, rsv) => {
          start = [opcode, fin, rsv];
        },
        onFramePayload: (data) => parts.push(data.slice()),
        onFrameEnd: () => {
          again.writeFrame(start[0], concat(...parts), start[1], start[2]);
          parts = [];
        },
      };
      for (const piece of cutBy(bytes, sizes)) parser.parse(piece, handler);
      assert.deepEqual(concat(...again.take()), bytes);
    }),
    RUNS,
  );
});

// ---------------------------------------------------------------------------
// The opening handshake
// ---------------------------------------------------------------------------

const headLine = fc.oneof(
  fc.constantFrom(
    "GET /chat HTTP/1.1",
    "POST / HTTP/1.1",
    "GET / HTTP/1.0",
    "GET //x HTTP/1.1",
    "GET * HTTP/1.1",
    "Host: a.example",
    "Host: user@b",
    "host: [::1]:80",
    "Upgrade: websocket",
    "Connection: keep-alive, Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==",
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Version: 8",
    "Sec-WebSocket-Protocol: a, b",
    "X: \x7f",
    "Bad Name: x",
    " folded",
    "",
  ),
  fc.string({ unit: "binary-ascii", maxLength: 30 }),
);

const requestBytes = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  fc.array(headLine, { maxLength: 10 }).map((lines) =>
    Uint8Array.from(lines.join("\r\n") + "\r\n\r\n", (c) => c.charCodeAt(0))
  ),
  fc.array(headLine, { maxLength: 10 }).map((lines) =>
    Uint8Array.from(lines.join("\r\n"), (c) => c.charCodeAt(0) & 0xff)
  ),
);

type HeadOutcome =
  | { status: number }
  | { head: unknown; rest: Uint8Array; upgrade: number | string }
  | undefined;

function parseHead(
  chunks: Uint8Array[],
  maxHeadSize: number,
  maxHeaders: number,
): HeadOutcome {
  const parser = new HttpRequestParser({ maxHeadSize, maxHeaders });
  for (const chunk of chunks) {
    let head;
    try {
      head = parser.receive(chunk);
    } catch (error) {
      assert.ok(error instanceof HandshakeError, String(error));
      assert.ok([400, 414, 431].includes(error.status));
      return { status: error.status };
    }
    if (head === undefined) continue;
    let upgrade: number | string;
    try {
      upgrade = validateUpgradeRequest(head, "ws").url.href;
    } catch (error) {
      assert.ok(error instanceof HandshakeError, String(error));
      assert.ok([400, 405, 426].includes(error.status));
      upgrade = error.status;
    }
    return { head, rest: parser.rest, upgrade };
  }
  return undefined;
}

Deno.test("HttpRequestParser and validateUpgradeRequest only ever throw HandshakeError, whatever the cuts (RFC 6455 §4.2.1)", () => {
  fc.assert(
    fc.property(
      requestBytes,
      cuts,
      fc.constantFrom(64, 256, 16 * 1024),
      fc.constantFrom(2, 100),
      (bytes, sizes, maxHeadSize, maxHeaders) => {
        const whole = parseHead([bytes.slice()], maxHeadSize, maxHeaders);
        const pieces = parseHead(cutBy(bytes, sizes), maxHeadSize, maxHeaders);
        if (whole !== undefined && "head" in whole) {
          // The head is the same; rest depends on where the cut fell.
          assert.ok(pieces !== undefined && "head" in pieces);
          assert.deepEqual(pieces.head, whole.head);
          assert.equal(pieces.upgrade, whole.upgrade);
        } else {
          assert.deepEqual(pieces, whole);
        }
      },
    ),
    { numRuns: 1000 },
  );
});
