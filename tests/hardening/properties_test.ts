/**
 * Property tests that harden the sans-I/O core against hostile peers. They
 * extend `tests/protocol/properties_test.ts` (arbitrary bytes, arbitrary
 * cuts, FrameWriter → Connection, HttpRequestParser only throwing
 * HandshakeError) with what it does not check:
 *
 * - allocations: no buffer beyond what the limits allow, whatever length a
 *   header declares (observed by instrumenting `Uint8Array`/`ArrayBuffer`);
 * - limits are enforced at the header: a frame that would cross `maxPayload`
 *   or `maxFragments` fails before its first payload byte;
 * - mutated valid streams (deeper states than random bytes) fail with one
 *   documented error, a matching close frame, then silence;
 * - the HTTP head parser against an oracle for 431, and `rest`;
 * - two `Connection`s talking to each other (client masking, fragmented
 *   sends split mid-code-point, pings, the closing handshake).
 *
 * @module
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  Connection,
  type ConnectionEvent,
  FrameWriter,
  HandshakeError,
  type HttpRequestHead,
  HttpRequestParser,
  OPCODE,
  PROTOCOL_ERROR_CODE,
  ProtocolError,
} from "../protocol/_core.ts";
import { closeBody, concat, frame, MASK_KEY } from "../protocol/_helpers.ts";
import {
  type AllocationLog,
  isOutputArena,
  trackAllocations,
} from "../../tools/_allocations.ts";

const { Continuation, Text, Binary, Close, Ping } = OPCODE;
const DOCUMENTED = new Set<string>(Object.values(PROTOCOL_ERROR_CODE));
/** The close code each documented error must carry (RFC 6455 §7.4.1). */
const CLOSE_CODE_OF: Record<string, number> = {
  INVALID_UTF8: 1007,
  INVALID_COMPRESSED_DATA: 1007,
  MESSAGE_TOO_BIG: 1009,
  TOO_MANY_FRAGMENTS: 1009,
};
/** The assembler's smallest growth step (see message_assembler.ts). */
const MIN_BUFFER = 4096;
/** A control frame is read into a buffer of its declared length, <= 125. */
const CONTROL_MAX = 125;
/** Tolerance for bookkeeping buffers (close payloads and the like). */
const SLACK = 64;
const utf8 = new TextEncoder();

/** Cuts `bytes` into fresh pieces whose sizes cycle through `sizes`. */
function cutBy(bytes: Uint8Array, sizes: number[]): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const size = sizes.length === 0 ? bytes.length : sizes[i % sizes.length];
    pieces.push(bytes.slice(at, at + size));
    at += size;
  }
  return pieces;
}

const cuts = fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 12 });

/**
 * A frame header with an exact 64-bit length (`bigint`), which the shared
 * `header()` helper cannot express beyond 2^53.
 */
function header64(
  b0: number,
  length: bigint,
  key: Uint8Array | null = MASK_KEY,
): Uint8Array {
  const out = new Uint8Array(10 + (key ? 4 : 0));
  out[0] = b0;
  out[1] = (key ? 0x80 : 0) | 127;
  new DataView(out.buffer).setBigUint64(2, length);
  if (key) out.set(key, 10);
  return out;
}

/** A header with the shortest length encoding, or forced to 64 bits. */
function anyHeader(
  b0: number,
  length: bigint,
  force64: boolean,
  key: Uint8Array | null = MASK_KEY,
): Uint8Array {
  if (force64 || length > 0xffffn) return header64(b0, length, key);
  const n = Number(length);
  const m = key ? 0x80 : 0;
  const out = n < 126 ? [b0, m | n] : [b0, m | 126, n >> 8, n & 0xff];
  return concat(out, key ?? []);
}

/** Feeds chunks, recording allocations marked with the bytes fed so far. */
function feedTracked(
  chunks: Uint8Array[],
  options: ConstructorParameters<typeof Connection>[0],
  stackAbove: number,
): { events: ConnectionEvent[]; output: Uint8Array; log: AllocationLog } {
  const connection = new Connection(options);
  const events: ConnectionEvent[] = [];
  const { log } = trackAllocations((log) => {
    for (const chunk of chunks) {
      log.mark += chunk.length;
      connection.receive(chunk);
      events.push(...connection.takeEvents());
    }
  }, { stackAbove });
  return { events, output: concat(...connection.takeOutput()), log };
}

/** What the assembler may hold after `received` bytes (see its doc). */
function allocationBound(received: number, maxPayload: number): number {
  return Math.max(
    CONTROL_MAX,
    Math.min(maxPayload, Math.max(MIN_BUFFER, 2 * received)),
  ) + SLACK;
}

function assertAllocationsBounded(log: AllocationLog, maxPayload: number) {
  for (const allocation of log.allocations) {
    if (isOutputArena(allocation)) continue;
    const bound = allocationBound(allocation.mark, maxPayload);
    assert.ok(
      allocation.size <= bound,
      `allocated ${allocation.size} bytes after receiving ${allocation.mark} ` +
        `(maxPayload ${maxPayload}, bound ${bound})\n${allocation.stack ?? ""}`,
    );
  }
}

function assertOneDocumentedErrorAtMost(events: ConnectionEvent[]): void {
  const errors = events.filter((event) => event.type === "error");
  assert.ok(errors.length <= 1, `${errors.length} error events`);
  const error = errors[0];
  if (error === undefined) return;
  assert.equal(events.at(-1), error, "nothing follows an error");
  assert.ok(error.error instanceof ProtocolError);
  assert.ok(DOCUMENTED.has(error.error.code), error.error.code);
  assert.equal(error.error.closeCode, CLOSE_CODE_OF[error.error.code] ?? 1002);
}

// ---------------------------------------------------------------------------
// Allocation bound
// ---------------------------------------------------------------------------

/** Lengths a hostile header may declare, with the 2^63 boundary. */
const declared = fc.oneof(
  { weight: 4, arbitrary: fc.bigInt({ min: 0n, max: 300n }) },
  { weight: 2, arbitrary: fc.bigInt({ min: 0n, max: 70_000n }) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      125n,
      126n,
      0xffffn,
      0x10000n,
      2n ** 31n,
      2n ** 32n,
      2n ** 32n + 1n,
      2n ** 53n - 1n,
      2n ** 53n + 1n,
      2n ** 63n - 1n,
      2n ** 63n,
      2n ** 64n - 1n,
    ),
  },
);

const hostileFrame = fc.record({
  b0: fc.oneof(
    fc.constantFrom(0x81, 0x82, 0x01, 0x02, 0x00, 0x80, 0x89, 0x8a, 0x88),
    fc.integer({ min: 0, max: 255 }),
  ),
  length: declared,
  force64: fc.boolean(),
  masked: fc.oneof(
    { weight: 9, arbitrary: fc.constant(true) },
    { weight: 1, arbitrary: fc.constant(false) },
  ),
  // How many payload bytes actually follow: often fewer than declared.
  sent: fc.nat(400),
  fill: fc.integer({ min: 0, max: 255 }),
}).map(({ b0, length, force64, masked, sent, fill }) => {
  const n = Number(length < BigInt(sent) ? length : BigInt(sent));
  return concat(
    anyHeader(b0, length, force64, masked ? MASK_KEY : null),
    new Uint8Array(n).fill(fill),
  );
});

Deno.test("Connection never allocates beyond maxPayload or twice the bytes received, whatever the headers declare", () => {
  fc.assert(
    fc.property(
      fc.array(hostileFrame, { minLength: 1, maxLength: 8 }),
      cuts,
      fc.constantFrom(1, 125, 1000, 5000, 70_000, 16 * 1024 * 1024),
      fc.constantFrom(1, 3, 4096),
      (frames, sizes, maxPayload, maxFragments) => {
        const bytes = concat(...frames);
        const { events, log } = feedTracked(
          cutBy(bytes, sizes),
          { role: "server", maxPayload, maxFragments },
          MIN_BUFFER,
        );
        assertAllocationsBounded(log, maxPayload);
        assertOneDocumentedErrorAtMost(events);
        for (const event of events) {
          if (event.type === "binary") {
            assert.ok(event.data.length <= maxPayload);
          }
          if (event.type === "text") {
            assert.ok(utf8.encode(event.data).length <= maxPayload);
          }
        }
      },
    ),
    { numRuns: 400 },
  );
});

Deno.test("Connection grows a large fragmented message with the bytes received, not with what it declares (RFC 6455 §5.4)", () => {
  // The frames declare their full length up front; the payload trickles in.
  fc.assert(
    fc.property(
      fc.integer({ min: 5_000, max: 200_000 }),
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 100, max: 4_000 }),
      (size, fragments, piece) => {
        const payload = new Uint8Array(size).fill(0x5a);
        const writer = new FrameWriter({
          mask: true,
          generateMaskKey: (key) => key.set(MASK_KEY),
        });
        const step = Math.ceil(size / fragments);
        for (let at = 0, i = 0; at < size; at += step, i++) {
          writer.writeFrame(
            i === 0 ? Binary : Continuation,
            payload.subarray(at, at + step),
            at + step >= size,
          );
        }
        const bytes = concat(...writer.take());
        const chunks = cutBy(bytes, [piece]);
        const { events, log } = feedTracked(
          chunks,
          { role: "server", maxPayload: size },
          MIN_BUFFER,
        );
        assert.equal(events.length, 1);
        assert.equal(events[0].type, "binary");
        assertAllocationsBounded(log, size);
      },
    ),
    { numRuns: 40 },
  );
});

// ---------------------------------------------------------------------------
// Limits are checked when a frame starts
// ---------------------------------------------------------------------------

Deno.test("Connection fails a frame crossing maxPayload at its last header byte, before any payload (RFC 6455 §10.4)", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 100_000 }),
      // Fragments before the one that crosses, as shares of maxPayload.
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 4 }),
      fc.oneof(
        fc.bigInt({ min: 1n, max: 1000n }),
        fc.constantFrom(2n ** 32n, 2n ** 53n, 2n ** 63n - 1n),
      ),
      fc.boolean(),
      fc.boolean(),
      fc.boolean(),
      cuts,
      (maxPayload, shares, excess, force64, fin, text, sizes) => {
        // Prefix fragments whose total stays within maxPayload.
        const prefix: Uint8Array[] = [];
        let total = 0;
        for (const share of shares) {
          const size = Math.floor(share * (maxPayload - total) / 2);
          const first = prefix.length === 0;
          prefix.push(
            frame(
              first ? (text ? Text : Binary) : Continuation,
              new Uint8Array(size).fill(0x61),
              { fin: false },
            ),
          );
          total += size;
        }
        const opcode = prefix.length === 0
          ? (text ? Text : Binary)
          : Continuation;
        // Crossing the limit, within the 63 bits a length may use.
        const over = BigInt(maxPayload - total) + excess;
        const length = over < 2n ** 63n ? over : 2n ** 63n - 1n;
        const head = anyHeader((fin ? 0x80 : 0) | opcode, length, force64);
        const before = concat(...prefix, head.subarray(0, -1));
        const chunks = [
          ...cutBy(before, sizes),
          head.slice(-1),
          new Uint8Array(500).fill(0x61),
        ];
        const connection = new Connection({ role: "server", maxPayload });
        const { log } = trackAllocations((log) => {
          for (const chunk of chunks.slice(0, -2)) {
            log.mark += chunk.length;
            connection.receive(chunk);
          }
          assert.deepEqual(connection.takeEvents(), [], "no event yet");
          log.mark += 1;
          connection.receive(chunks.at(-2)!);
          const events = connection.takeEvents();
          assert.equal(events.length, 1);
          const [event] = events;
          assert.ok(event.type === "error");
          assert.equal(event.error.code, "MESSAGE_TOO_BIG");
          assert.equal(event.error.closeCode, 1009);
          // The payload that follows changes nothing.
          connection.receive(chunks.at(-1)!);
          assert.deepEqual(connection.takeEvents(), []);
        }, { stackAbove: MIN_BUFFER });
        // The declared length never sized a buffer: only what arrived did.
        assertAllocationsBounded(log, maxPayload);
        // (The writer's shared output arena is renewed whenever it fills up,
        // so the close frame may land in a fresh one: not a received size.)
        const largest = Math.max(
          0,
          ...log.allocations.filter((a) => !isOutputArena(a)).map((a) =>
            a.size
          ),
        );
        assert.ok(largest < Math.max(MIN_BUFFER, 2 * total) + SLACK);
        assert.deepEqual(
          concat(...connection.takeOutput()),
          frame(Close, closeBody(1009, "MESSAGE_TOO_BIG"), { mask: false }),
        );
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("Connection fails the fragment after maxFragments at its header (RFC 6455 §5.4)", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 300 }),
      fc.integer({ min: 0, max: 3 }),
      fc.boolean(),
      (maxFragments, payloadSize, fin) => {
        const frames = [frame(Binary, new Uint8Array(payloadSize), {
          fin: false,
        })];
        for (let i = 1; i < maxFragments; i++) {
          frames.push(
            frame(Continuation, new Uint8Array(payloadSize), { fin: false }),
          );
        }
        const last = frame(Continuation, new Uint8Array(payloadSize), { fin });
        const headerSize = 6;
        const connection = new Connection({ role: "server", maxFragments });
        connection.receive(concat(...frames, last.subarray(0, headerSize - 1)));
        assert.deepEqual(connection.takeEvents(), []);
        connection.receive(last.slice(headerSize - 1, headerSize));
        const [event, ...more] = connection.takeEvents();
        assert.deepEqual(more, []);
        assert.ok(event?.type === "error");
        assert.equal(event.error.code, "TOO_MANY_FRAGMENTS");
        assert.equal(event.error.closeCode, 1009);
      },
    ),
    { numRuns: 100 },
  );
});

Deno.test("Connection rejects any 64-bit length with the top bit set at the header (RFC 6455 §5.2)", () => {
  fc.assert(
    fc.property(
      fc.bigInt({ min: 2n ** 63n, max: 2n ** 64n - 1n }),
      fc.constantFrom(0x81, 0x82, 0x00, 0x89, 0x02),
      fc.constantFrom("server" as const, "client" as const),
      (length, b0, role) => {
        const head = header64(b0, length, role === "server" ? MASK_KEY : null);
        const connection = new Connection({ role });
        connection.receive(head.slice(0, 9));
        assert.deepEqual(connection.takeEvents(), []);
        connection.receive(head.slice(9));
        const events = connection.takeEvents();
        assert.equal(events.length, 1);
        assert.ok(events[0].type === "error");
        assert.equal(events[0].error.code, "INVALID_LENGTH");
        assert.equal(events[0].error.closeCode, 1002);
      },
    ),
    { numRuns: 100 },
  );
});

// ---------------------------------------------------------------------------
// Mutated valid streams
// ---------------------------------------------------------------------------

/** A valid client stream: messages, fragments, pings, maybe a close. */
const validStream = fc.record({
  messages: fc.array(
    fc.record({
      text: fc.boolean(),
      body: fc.string({ unit: "binary", maxLength: 80 }),
      splits: fc.array(fc.nat(), { maxLength: 3 }),
      ping: fc.option(fc.uint8Array({ maxLength: 20 }), { nil: null }),
    }),
    { minLength: 1, maxLength: 6 },
  ),
  close: fc.boolean(),
}).map(({ messages, close }) => {
  const writer = new FrameWriter({
    mask: true,
    generateMaskKey: (key) => key.set(MASK_KEY),
  });
  for (const message of messages) {
    const payload = utf8.encode(message.body);
    const points = [...new Set(message.splits.map((s) => s % payload.length))]
      .filter((p) => p > 0).sort((a, b) => a - b);
    const bounds = [0, ...points, payload.length];
    for (let i = 0; i + 1 < bounds.length; i++) {
      const opcode = i > 0 ? Continuation : message.text ? Text : Binary;
      writer.writeFrame(
        opcode,
        payload.subarray(bounds[i], bounds[i + 1]),
        i + 2 === bounds.length,
      );
      if (message.ping && i === 0) writer.writeFrame(Ping, message.ping);
    }
  }
  if (close) writer.writeFrame(Close, closeBody(1000, "bye"));
  return concat(...writer.take());
});

type Mutation = { op: number; at: number; value: number; length: number };

function mutate(bytes: Uint8Array, mutations: Mutation[]): Uint8Array {
  let out = bytes.slice();
  for (const { op, at, value, length } of mutations) {
    const i = out.length === 0 ? 0 : at % out.length;
    switch (op) {
      case 0: // flip one bit
        if (out.length > 0) out[i] ^= 1 << (value & 7);
        break;
      case 1: // overwrite a byte
        if (out.length > 0) out[i] = value;
        break;
      case 2: // insert bytes
        out = concat(
          out.subarray(0, i),
          new Uint8Array(length).fill(value),
          out.subarray(i),
        );
        break;
      case 3: // delete bytes
        out = concat(out.subarray(0, i), out.subarray(i + length));
        break;
      case 4: // duplicate a run
        out = concat(out.subarray(0, i + length), out.subarray(i));
        break;
      default: // truncate
        out = out.slice(0, i);
    }
  }
  return out;
}

const mutation: fc.Arbitrary<Mutation> = fc.record({
  op: fc.integer({ min: 0, max: 5 }),
  at: fc.nat(),
  value: fc.integer({ min: 0, max: 255 }),
  length: fc.integer({ min: 1, max: 16 }),
});

interface Run {
  events: unknown[];
  output: Uint8Array;
  state: string;
}

function run(chunks: Uint8Array[], maxPayload: number): Run {
  const connection = new Connection({ role: "server", maxPayload });
  const events: ConnectionEvent[] = [];
  for (const chunk of chunks) {
    connection.receive(chunk);
    events.push(...connection.takeEvents());
  }
  assertOneDocumentedErrorAtMost(events);
  const output = concat(...connection.takeOutput());
  if (connection.state === "closed") {
    // Silence afterwards: more input gives no event and no output.
    connection.receive(new Uint8Array([0x81, 0x80, 1, 2, 3, 4]));
    connection.receive(frame(Ping, "again?"));
    assert.deepEqual(connection.takeEvents(), []);
    assert.deepEqual(connection.takeOutput(), []);
  }
  return {
    events: events.map((event) =>
      event.type === "error"
        ? {
          type: "error",
          code: event.error.code,
          message: event.error.message,
        }
        : event
    ),
    output,
    state: connection.state,
  };
}

Deno.test("Connection handles mutated valid streams like the originals: same outcome in any cuts, one documented error, then silence", () => {
  fc.assert(
    fc.property(
      validStream,
      fc.array(mutation, { minLength: 1, maxLength: 4 }),
      cuts,
      fc.constantFrom(16, 1000, 16 * 1024 * 1024),
      (stream, mutations, sizes, maxPayload) => {
        const bytes = mutate(stream, mutations);
        const whole = run([bytes.slice()], maxPayload);
        const pieces = run(cutBy(bytes, sizes), maxPayload);
        assert.deepEqual(pieces, whole);
        const last = whole.events.at(-1) as { type: string; code?: string };
        if (last?.type === "error" && last.code !== undefined) {
          const code = last.code;
          const closeCode = CLOSE_CODE_OF[code] ?? 1002;
          const close = frame(Close, closeBody(closeCode, code), {
            mask: false,
          });
          assert.deepEqual(whole.output.subarray(-close.length), close);
          assert.equal(whole.state, "closed");
        }
      },
    ),
    { numRuns: 500 },
  );
});

// ---------------------------------------------------------------------------
// The HTTP request head
// ---------------------------------------------------------------------------

const requestLine = fc.constantFrom(
  "GET / HTTP/1.1",
  "GET /chat?room=1 HTTP/1.1",
  "",
  "GET  / HTTP/1.1",
  "GET / HTTP/1.1 extra",
  "G\x00T / HTTP/1.1",
  "GET / HTTP/2",
);

const fieldLine = fc.oneof(
  fc.constantFrom(
    "Host: 127.0.0.1",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
    "X-Empty:",
    "X-Obs: \xff\xfe",
    "Bad Name: 1",
    ": no name",
    "\tfolded",
    "X-Ctl: \x01",
  ),
  fc.string({ unit: "binary-ascii", maxLength: 24 }),
);

/** Header floods: one field repeated up to 400 times. */
const flood = fc.tuple(fieldLine, fc.integer({ min: 0, max: 400 })).map((
  [line, times],
) => Array.from({ length: times }, () => line));

const requestHead = fc.record({
  line: requestLine,
  fields: fc.array(fieldLine, { maxLength: 12 }),
  flood,
  terminator: fc.constantFrom("\r\n\r\n", "\r\n", "", "\n\n", "\r\n\r\n"),
  after: fc.uint8Array({ maxLength: 40 }),
}).map(({ line, fields, flood, terminator, after }) => {
  const text = [line, ...fields, ...flood].join("\r\n") + terminator;
  return concat(Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff), after);
});

/** The index just past the first CRLFCRLF, or -1. */
function headEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (
      bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 &&
      bytes[i + 3] === 10
    ) return i + 4;
  }
  return -1;
}

type HeadResult =
  | { status: number; at: number }
  | { head: HttpRequestHead; rest: Uint8Array[]; at: number }
  | { incomplete: true };

function parseChunks(
  chunks: Uint8Array[],
  maxHeadSize: number,
  maxHeaders: number,
): { result: HeadResult; log: AllocationLog } {
  const parser = new HttpRequestParser({ maxHeadSize, maxHeaders });
  const { result, log } = trackAllocations((log): HeadResult => {
    let fed = 0;
    for (const [i, chunk] of chunks.entries()) {
      fed += chunk.length;
      log.mark = chunk.length;
      try {
        const head = parser.receive(chunk);
        if (head !== undefined) {
          return { head, rest: [parser.rest, ...chunks.slice(i + 1)], at: fed };
        }
      } catch (error) {
        assert.ok(error instanceof HandshakeError, String(error));
        return { status: error.status, at: fed };
      }
    }
    return { incomplete: true };
  });
  return { result, log };
}

Deno.test("HttpRequestParser answers 431 exactly when a head outgrows maxHeadSize or has too many fields (414 when its request line does), 400 as soon as its method cannot be one, and never buffers beyond it (RFC 9112 §2, §3)", () => {
  fc.assert(
    fc.property(
      requestHead,
      cuts,
      fc.constantFrom(32, 200, 1024, 4096),
      fc.constantFrom(1, 5, 100),
      (bytes, sizes, maxHeadSize, maxHeaders) => {
        const chunks = cutBy(bytes, sizes);
        const { result, log } = parseChunks(chunks, maxHeadSize, maxHeaders);
        for (const allocation of log.allocations) {
          // The head buffer, or the rest of the chunk that ended the head.
          assert.ok(
            allocation.size <= Math.max(maxHeadSize, allocation.mark),
            `allocated ${allocation.size} with maxHeadSize ${maxHeadSize}`,
          );
        }
        // A byte that cannot be in a method (before the first space, after
        // empty lines) is answered with 400 as soon as it arrives.
        let i = 0;
        while (bytes[i] === 13 || bytes[i] === 10) i++;
        for (; i < bytes.length && ![32, 13, 10].includes(bytes[i]); i++) {
          if (
            !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]$/.test(String.fromCharCode(bytes[i]))
          ) break;
        }
        const end = headEnd(bytes);
        // So is a line that ends with a bare LF, not CRLF.
        if (i >= bytes.length || [32, 13, 10].includes(bytes[i])) {
          i = bytes.length;
        }
        const lf = bytes.findIndex((b, j) => b === 10 && bytes[j - 1] !== 13);
        if (lf !== -1 && lf < i) i = lf;
        if (
          i < Math.min(bytes.length, maxHeadSize) && (end === -1 || end > i)
        ) {
          assert.ok("status" in result, JSON.stringify(result));
          assert.equal(result.status, 400);
          let fed = 0;
          const arrived = chunks.findIndex((chunk) =>
            (fed += chunk.length) > i
          );
          assert.equal(
            result.at,
            chunks.slice(0, arrived + 1).reduce((n, c) => n + c.length, 0),
          );
          return;
        }
        if (end === -1 || end > maxHeadSize) {
          // No complete head within the limit: 431 once the limit is
          // reached, and not a byte earlier; until then, keep waiting. 414
          // when not even the request line (after an empty line) ended.
          if (bytes.length >= maxHeadSize) {
            assert.ok("status" in result, JSON.stringify(result));
            const skip = bytes[0] === 13 && bytes[1] === 10 ? 2 : 0;
            const line = bytes.subarray(skip, maxHeadSize);
            const lineEnded = line.some((b, i) =>
              b === 13 && line[i + 1] === 10
            );
            assert.equal(result.status, lineEnded ? 431 : 414);
            const reachedAt = chunks.findIndex((_, i) =>
              chunks.slice(0, i + 1).reduce((n, c) => n + c.length, 0) >=
                maxHeadSize
            );
            assert.equal(
              result.at,
              chunks.slice(0, reachedAt + 1).reduce(
                (n, c) => n + c.length,
                0,
              ),
            );
          } else {
            assert.deepEqual(result, { incomplete: true });
          }
          return;
        }
        const lines = new TextDecoder("latin1").decode(
          bytes.subarray(0, end - 4),
        ).split("\r\n");
        if (lines[0] === "") lines.shift();
        const fields = lines.length - 1;
        if ("status" in result) {
          assert.ok([400, 431].includes(result.status));
          if (result.status === 431) assert.ok(fields > maxHeaders);
        } else {
          assert.ok("head" in result);
          assert.ok(fields <= maxHeaders);
          assert.equal(result.head.headers.length, fields);
          // Whatever followed the head is handed on intact.
          assert.deepEqual(concat(...result.rest), bytes.slice(end));
        }
      },
    ),
    { numRuns: 400 },
  );
});

// ---------------------------------------------------------------------------
// Two connections talking
// ---------------------------------------------------------------------------

type Sent =
  | { kind: "text"; text: string; splits: number[] }
  | { kind: "binary"; size: number; fill: number; splits: number[] }
  | { kind: "ping"; data: Uint8Array };

const sent: fc.Arbitrary<Sent> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("text" as const),
      // Astral characters too: fragments may split a code point.
      text: fc.string({ unit: "grapheme", maxLength: 40 }),
      splits: fc.array(fc.nat(), { maxLength: 3 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("binary" as const),
      size: fc.oneof(
        fc.nat(300),
        fc.constantFrom(125, 126, 127, 0xffff, 0x10000, 0x10001),
      ),
      fill: fc.integer({ min: 0, max: 255 }),
      splits: fc.array(fc.nat(), { maxLength: 3 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("ping" as const),
      data: fc.uint8Array({ maxLength: 125 }),
    }),
  },
);

/** Splits `bytes` at the given points (deduplicated, in range). */
function fragments(bytes: Uint8Array, splits: number[]): Uint8Array[] {
  const points = [...new Set(splits.map((s) => s % (bytes.length + 1)))]
    .sort((a, b) => a - b);
  const bounds = [0, ...points, bytes.length];
  const out: Uint8Array[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    if (bounds[i + 1] > bounds[i] || out.length === 0) {
      out.push(bytes.subarray(bounds[i], bounds[i + 1]));
    }
  }
  return out;
}

/** Delivers `from`'s output to `to` in cuts; returns `to`'s events. */
function deliver(
  from: Connection,
  to: Connection,
  sizes: number[],
): ConnectionEvent[] {
  const bytes = concat(...from.takeOutput());
  const events: ConnectionEvent[] = [];
  for (const piece of cutBy(bytes, sizes)) {
    to.receive(piece);
    events.push(...to.takeEvents());
  }
  return events;
}

Deno.test("A client Connection and a server Connection exchange any messages, fragments and pings in any cuts, then close cleanly (RFC 6455 §5-7)", () => {
  fc.assert(
    fc.property(
      fc.array(sent, { maxLength: 10 }),
      fc.array(fc.uint8Array({ minLength: 4, maxLength: 4 }), {
        minLength: 1,
        maxLength: 4,
      }),
      cuts,
      cuts,
      fc.integer({ min: 3000, max: 4999 }),
      (items, keys, up, down, code) => {
        let k = 0;
        const client = new Connection({
          role: "client",
          generateMaskKey: (key) => key.set(keys[k++ % keys.length]),
        });
        const server = new Connection({ role: "server" });
        const expected: (string | Uint8Array)[] = [];
        let lastPing: Uint8Array | null = null;
        for (const item of items) {
          if (item.kind === "ping") {
            client.ping(item.data);
            lastPing = item.data;
            continue;
          }
          const bytes = item.kind === "text"
            ? utf8.encode(item.text)
            : new Uint8Array(item.size).fill(item.fill);
          const parts = fragments(bytes, item.splits);
          parts.forEach((part, i) =>
            client.sendFragment(
              i > 0 ? Continuation : item.kind === "text" ? Text : Binary,
              part,
              i === parts.length - 1,
            )
          );
          expected.push(item.kind === "text" ? item.text : bytes);
        }
        // The server echoes each message as it arrives.
        const atServer = deliver(client, server, up);
        const pingsSeen = atServer.filter((e) => e.type === "ping").length;
        assert.equal(pingsSeen, items.filter((i) => i.kind === "ping").length);
        for (const event of atServer) {
          if (event.type === "text") server.sendText(event.data);
          else if (event.type === "binary") server.sendBinary(event.data);
          else assert.equal(event.type, "ping");
        }
        const atClient = deliver(server, client, down);
        const messages = atClient.filter((e) =>
          e.type === "text" || e.type === "binary"
        ).map((e) => (e as { data: string | Uint8Array }).data);
        assert.deepEqual(messages, expected);
        const pongs = atClient.filter((e) => e.type === "pong");
        if (lastPing === null) assert.equal(pongs.length, 0);
        else {
          // Past 16 pings per delivery, pongs are coalesced; the last
          // answers the last ping.
          assert.ok(pongs.length >= 1);
          assert.deepEqual(
            (pongs.at(-1) as { data: Uint8Array }).data,
            lastPing,
          );
        }
        // The closing handshake (RFC 6455 §7.1.2).
        client.close(code, "done");
        assert.deepEqual(deliver(client, server, up), [
          { type: "close", code, reason: "done" },
        ]);
        assert.deepEqual(deliver(server, client, down), [
          { type: "close", code, reason: "done" },
        ]);
        assert.equal(client.state, "closed");
        assert.equal(server.state, "closed");
        assert.ok(client.closedCleanly && server.closedCleanly);
      },
    ),
    { numRuns: 150 },
  );
});
