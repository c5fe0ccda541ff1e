/**
 * Properties of permessage-deflate with context takeover (RFC 7692 §7.2):
 * {@linkcode ContextInflater} against node:zlib as the sender, and against a
 * small DEFLATE encoder of our own that refers back exactly as far as the
 * window allows (zlib never does: it stops 262 bytes short of its window);
 * {@linkcode ContextDeflater} against node:zlib as the receiver; and the
 * `maxLength` bound with any amount of window in front.
 *
 * Runs are bounded and seeded: set `DUPLEX_FC_SEED` to explore other seeds;
 * fast-check prints the seed and path of a failure to replay it.
 *
 * @module
 */
import assert from "node:assert/strict";
import zlib from "node:zlib";
import fc from "fast-check";
import {
  ContextDeflater,
  ContextInflater,
  PROTOCOL_ERROR_CODE,
  ProtocolError,
} from "../../mod.ts";
import { concat, prng } from "../protocol/_helpers.ts";
import { contextCompress, TAIL } from "./_helpers.ts";

const { Z_SYNC_FLUSH } = zlib.constants;
const SEED = Number(Deno.env.get("DUPLEX_FC_SEED") ?? 7692);

/** fast-check parameters: `numRuns` runs from the fixed seed. */
function runs(numRuns: number): fc.Parameters<unknown> {
  return { numRuns, seed: SEED };
}

/** What a window of `windowBits` holds at the receiver: 512 bytes at least. */
function windowSize(windowBits: number): number {
  return 1 << Math.max(9, windowBits);
}

/** Asserts byte equality without diffing 100 KiB arrays. */
function assertSame(actual: Uint8Array, expected: Uint8Array, label: string) {
  if (actual.length !== expected.length) {
    assert.fail(
      `${label}: ${actual.length} bytes, expected ${expected.length}`,
    );
  }
  for (let i = 0; i < actual.length; i++) {
    if (actual[i] !== expected[i]) {
      assert.fail(
        `${label}: byte ${i} of ${actual.length} is ${actual[i]}, expected ${
          expected[i]
        }`,
      );
    }
  }
}

function assertTooBig(error: unknown, maxLength: number): true {
  assert.ok(error instanceof ProtocolError, String(error));
  assert.equal(error.code, PROTOCOL_ERROR_CODE.MessageTooBig);
  assert.equal(error.closeCode, 1009);
  assert.equal(
    error.message,
    `Compressed message inflates past maxPayload (${maxLength})`,
  );
  return true;
}

function assertInvalid(error: unknown): true {
  assert.ok(error instanceof ProtocolError, String(error));
  assert.equal(error.code, PROTOCOL_ERROR_CODE.InvalidCompressedData);
  assert.equal(error.closeCode, 1007);
  return true;
}

// ---------------------------------------------------------------------------
// Messages: low-entropy, repeats of earlier ones, incompressible
// ---------------------------------------------------------------------------

/** How to build one message, given the ones before it. */
type Spec =
  | {
    kind: "runs";
    length: number;
    alphabet: number;
    runMax: number;
    seed: number;
  }
  | { kind: "random"; length: number; seed: number }
  | {
    kind: "repeat";
    of: number;
    from: number;
    length: number;
    edits: number[];
  }
  | { kind: "bytes"; bytes: Uint8Array };

/** Mostly short, some past any window, up to 100 KiB. */
const length = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom(0, 1) },
  { weight: 3, arbitrary: fc.integer({ min: 2, max: 300 }) },
  { weight: 3, arbitrary: fc.integer({ min: 301, max: 5_000 }) },
  { weight: 2, arbitrary: fc.integer({ min: 5_001, max: 40_000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 40_001, max: 102_400 }) },
);

const spec: fc.Arbitrary<Spec> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("runs" as const),
      length,
      alphabet: fc.integer({ min: 1, max: 8 }),
      runMax: fc.integer({ min: 1, max: 40 }),
      seed: fc.nat(),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("repeat" as const),
      of: fc.nat(),
      from: fc.nat(),
      length,
      edits: fc.array(fc.nat(), { maxLength: 4 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("random" as const),
      length,
      seed: fc.nat(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("bytes" as const),
      bytes: fc.uint8Array({ maxLength: 2 }),
    }),
  },
);

const specs = fc.array(spec, { minLength: 1, maxLength: 10 });

/** Builds the messages `specs` describe, in order. */
function build(specs: Spec[]): Uint8Array<ArrayBuffer>[] {
  const messages: Uint8Array<ArrayBuffer>[] = [];
  for (const s of specs) messages.push(buildOne(s, messages));
  return messages;
}

function buildOne(
  s: Spec,
  earlier: Uint8Array[],
): Uint8Array<ArrayBuffer> {
  switch (s.kind) {
    case "bytes":
      return new Uint8Array(s.bytes);
    case "random": {
      const random = prng(s.seed);
      const out = new Uint8Array(s.length);
      for (let i = 0; i < out.length; i++) out[i] = (random() * 256) | 0;
      return out;
    }
    case "runs": {
      // Runs of symbols from a small alphabet: matches everywhere.
      const random = prng(s.seed);
      const symbols = Array.from(
        { length: s.alphabet },
        () => (random() * 256) | 0,
      );
      const out = new Uint8Array(s.length);
      for (let i = 0; i < out.length;) {
        const symbol = symbols[(random() * symbols.length) | 0];
        const run = 1 + ((random() * s.runMax) | 0);
        out.fill(symbol, i, Math.min(out.length, i + run));
        i += run;
      }
      return out;
    }
    case "repeat": {
      // An earlier message again, cyclically from some offset, a few bytes
      // changed: matches reach back across messages.
      const source =
        earlier.findLast((m, i) =>
          m.length > 0 && i >= earlier.length - 1 - (s.of % 4)
        ) ?? earlier.findLast((m) => m.length > 0);
      const out = new Uint8Array(s.length);
      if (source === undefined) return out;
      for (let i = 0; i < out.length; i++) {
        out[i] = source[(s.from + i) % source.length];
      }
      for (const at of s.edits) {
        if (out.length > 0) out[at % out.length] ^= 0x5a;
      }
      return out;
    }
  }
}

// ---------------------------------------------------------------------------
// References: node:zlib as the other side
// ---------------------------------------------------------------------------

/** zlib's settings for a sender. */
interface SenderSettings {
  windowBits: number;
  memLevel: number;
  level: number;
  strategy: number;
}

const senderSettings = (
  windowBits: fc.Arbitrary<number>,
): fc.Arbitrary<SenderSettings> =>
  fc.record({
    windowBits,
    memLevel: fc.integer({ min: 1, max: 9 }),
    level: fc.integer({ min: 0, max: 9 }),
    strategy: fc.constantFrom(
      zlib.constants.Z_DEFAULT_STRATEGY,
      zlib.constants.Z_FILTERED,
      zlib.constants.Z_HUFFMAN_ONLY,
      zlib.constants.Z_RLE,
      zlib.constants.Z_FIXED,
    ),
  });

/** Waits for a sync flush of `stream` and takes what it produced. */
function flushed(
  stream: zlib.DeflateRaw | zlib.InflateRaw,
  chunks: Uint8Array[],
): Promise<Uint8Array<ArrayBuffer>> {
  return new Promise((resolve) =>
    stream.flush(Z_SYNC_FLUSH, () => resolve(concat(...chunks.splice(0))))
  );
}

/**
 * Inflates `payloads` as RFC 7692 §7.2.2 says, with one node:zlib raw
 * inflate stream kept across messages: `00 00 ff ff` appended to each.
 */
async function referenceInflate(
  payloads: Uint8Array[],
  windowBits: number,
): Promise<Uint8Array<ArrayBuffer>[]> {
  const stream = zlib.createInflateRaw({ windowBits });
  const chunks: Uint8Array[] = [];
  stream.on("data", (chunk: Uint8Array) => chunks.push(chunk));
  let failure: Error | undefined;
  stream.on("error", (error: Error) => failure = error);
  const messages: Uint8Array<ArrayBuffer>[] = [];
  try {
    for (const payload of payloads) {
      stream.write(concat(payload, TAIL));
      messages.push(await flushed(stream, chunks));
      if (failure) throw failure;
    }
  } finally {
    stream.close();
  }
  return messages;
}

// ---------------------------------------------------------------------------
// A fixed-Huffman DEFLATE encoder (RFC 1951 §3.2.6) for exact distances
// ---------------------------------------------------------------------------

const LENGTH_BASE = [
  3,
  4,
  5,
  6,
  7,
  8,
  9,
  10,
  11,
  13,
  15,
  17,
  19,
  23,
  27,
  31,
  35,
  43,
  51,
  59,
  67,
  83,
  99,
  115,
  131,
  163,
  195,
  227,
  258,
];
const LENGTH_EXTRA = [
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  1,
  1,
  1,
  1,
  2,
  2,
  2,
  2,
  3,
  3,
  3,
  3,
  4,
  4,
  4,
  4,
  5,
  5,
  5,
  5,
  0,
];
const DISTANCE_BASE = [
  1,
  2,
  3,
  4,
  5,
  7,
  9,
  13,
  17,
  25,
  33,
  49,
  65,
  97,
  129,
  193,
  257,
  385,
  513,
  769,
  1025,
  1537,
  2049,
  3073,
  4097,
  6145,
  8193,
  12289,
  16385,
  24577,
];
const DISTANCE_EXTRA = [
  0,
  0,
  0,
  0,
  1,
  1,
  2,
  2,
  3,
  3,
  4,
  4,
  5,
  5,
  6,
  6,
  7,
  7,
  8,
  8,
  9,
  9,
  10,
  10,
  11,
  11,
  12,
  12,
  13,
  13,
];

/** Bits packed least significant first, as DEFLATE packs them. */
class BitWriter {
  readonly bytes: number[] = [];
  #bits = 0;
  #count = 0;

  /** Writes `count` bits of `value`, least significant first. */
  bits(value: number, count: number): void {
    for (let i = 0; i < count; i++) {
      this.#bits |= ((value >> i) & 1) << this.#count;
      if (++this.#count === 8) this.#flush();
    }
  }

  /** Writes a Huffman code of `length` bits, most significant first. */
  code(code: number, length: number): void {
    for (let i = length - 1; i >= 0; i--) this.bits((code >> i) & 1, 1);
  }

  /** Pads to the byte. */
  align(): void {
    if (this.#count > 0) this.#flush();
  }

  #flush(): void {
    this.bytes.push(this.#bits);
    this.#bits = 0;
    this.#count = 0;
  }
}

function literalLength(out: BitWriter, symbol: number): void {
  if (symbol < 144) out.code(0x30 + symbol, 8);
  else if (symbol < 256) out.code(0x190 + symbol - 144, 9);
  else if (symbol < 280) out.code(symbol - 256, 7);
  else out.code(0xc0 + symbol - 280, 8);
}

function lastAtMost(table: number[], value: number): number {
  let i = table.length - 1;
  while (table[i] > value) i--;
  return i;
}

/** One LZ77 token: a literal byte, or a copy of `length` bytes `distance` back. */
type Token = { literal: number } | { length: number; distance: number };

/**
 * One message as a sender with context takeover compresses it: a fixed
 * Huffman block of `tokens`, then a sync flush (an empty stored block) whose
 * `00 00 ff ff` is removed (RFC 7692 §7.2.1).
 */
function encodeMessage(tokens: Token[]): Uint8Array<ArrayBuffer> {
  const out = new BitWriter();
  if (tokens.length > 0) {
    out.bits(0, 1); // BFINAL
    out.bits(1, 2); // BTYPE 01: fixed Huffman codes
    for (const token of tokens) {
      if ("literal" in token) {
        literalLength(out, token.literal);
        continue;
      }
      const l = lastAtMost(LENGTH_BASE, token.length);
      literalLength(out, 257 + l);
      out.bits(token.length - LENGTH_BASE[l], LENGTH_EXTRA[l]);
      const d = lastAtMost(DISTANCE_BASE, token.distance);
      out.code(d, 5);
      out.bits(token.distance - DISTANCE_BASE[d], DISTANCE_EXTRA[d]);
    }
    literalLength(out, 256); // end of block
  }
  out.bits(0, 3); // the flush's stored block: BFINAL 0, BTYPE 00
  out.align();
  return Uint8Array.from(out.bytes);
}

/** How a generated op picks its distance among those the window allows. */
type Op =
  | { literal: number }
  | { length: number; reach: "oldest" | "newest" | number };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({ literal: fc.integer({ min: 0, max: 255 }) }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      length: fc.oneof(
        fc.integer({ min: 3, max: 10 }),
        fc.integer({ min: 3, max: 258 }),
        fc.constant(258),
      ),
      reach: fc.oneof(
        fc.constant("oldest" as const),
        fc.constant("newest" as const),
        fc.nat(),
      ),
    }),
  },
);

/**
 * The sender's side of a context-takeover stream, simulated: every byte
 * sent so far, so a copy's bytes and how far back the window reaches are
 * known.
 */
class Lz77Sender {
  readonly #window: number;
  #history: number[] = [];

  constructor(windowBits: number) {
    // The sender's window: 2^windowBits bytes (RFC 7692 §7.1.2).
    this.#window = 1 << windowBits;
  }

  /** How far back a copy may reach now: the window, or all that was sent. */
  get reach(): number {
    return Math.min(this.#window, this.#history.length, 32768);
  }

  /** Turns `ops` into tokens the window allows, and the message they make. */
  message(ops: Op[]): { tokens: Token[]; bytes: Uint8Array<ArrayBuffer> } {
    const start = this.#history.length;
    const tokens: Token[] = [];
    for (const o of ops) {
      const reach = this.reach;
      if ("literal" in o || reach === 0) {
        const literal = "literal" in o ? o.literal : o.length & 0xff;
        tokens.push({ literal });
        this.#history.push(literal);
        continue;
      }
      const distance = o.reach === "oldest"
        ? reach
        : o.reach === "newest"
        ? 1
        : 1 + (o.reach % reach);
      tokens.push({ length: o.length, distance });
      this.copy(o.length, distance);
    }
    return { tokens, bytes: Uint8Array.from(this.#history.slice(start)) };
  }

  /** Appends `length` bytes copied from `distance` back (they may overlap). */
  copy(length: number, distance: number): void {
    const from = this.#history.length - distance;
    for (let i = 0; i < length; i++) {
      this.#history.push(this.#history[from + i]);
    }
  }

  get length(): number {
    return this.#history.length;
  }
}

// ---------------------------------------------------------------------------
// 1. node:zlib compresses, ContextInflater inflates
// ---------------------------------------------------------------------------

Deno.test("ContextInflater inflates any node:zlib context-takeover stream byte-exact, in order, in windows of 9 to 15 bits (RFC 7692 §7.2.2)", async () => {
  await fc.assert(
    fc.asyncProperty(
      specs,
      senderSettings(fc.integer({ min: 9, max: 15 })),
      fc.boolean(),
      fc.boolean(),
      async (specs, settings, tight, eightBits) => {
        const messages = build(specs);
        const payloads = await contextCompress(messages, settings);
        // A receiver that agreed to 8 bits keeps 512 bytes: a 9-bit sender.
        const bits = eightBits && settings.windowBits === 9
          ? 8
          : settings.windowBits;
        const inflater = new ContextInflater(bits);
        let total = 0;
        for (let i = 0; i < messages.length; i++) {
          const message = messages[i];
          // The payload as a view inside a larger buffer, then scribbled on:
          // not kept.
          const view = concat([7, 7, 7], payloads[i], [7]).subarray(3, -1);
          // maxLength exactly the message's length: a message that fits
          // passes, however much window is in front of it.
          const maxLength = tight ? Math.max(1, message.length) : 1 << 20;
          const inflated = inflater.inflate(view, maxLength);
          view.fill(0xee);
          assertSame(inflated, message, `message ${i} of ${messages.length}`);
          assert.ok(inflated.length <= maxLength);
          total += message.length;
          assert.equal(
            inflater.windowLength,
            Math.min(windowSize(bits), total),
            `window after message ${i}`,
          );
          // The caller owns what it got: scribbling on it leaves the window.
          inflated.fill(0xa5);
        }
      },
    ),
    runs(200),
  );
});

Deno.test("ContextInflater follows copies reaching back exactly as far as the sender's window, across messages (RFC 7692 §7.2.2, RFC 1951 §3.2.5)", () => {
  // zlib stops 262 bytes short of its window, so its output never tests
  // the window's last bytes: this encoder reaches them on purpose.
  fc.assert(
    fc.property(
      fc.integer({ min: 8, max: 15 }),
      fc.array(fc.array(op, { maxLength: 300 }), {
        minLength: 1,
        maxLength: 8,
      }),
      fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 8, maxLength: 8 }),
      (bits, messagesOps, fills) => {
        // A sender that agreed to 8 bits compresses within 9 (zlib's least).
        const sender = new Lz77Sender(Math.max(9, bits));
        const inflater = new ContextInflater(bits);
        for (let i = 0; i < messagesOps.length; i++) {
          // Some messages are long runs of copies: the window fills and
          // slides, so "oldest" is exactly the window's size back.
          const ops: Op[] = [
            ...Array.from(
              { length: fills[i] * 60 },
              (_, k): Op => ({ length: 258, reach: k % 2 ? "newest" : 7 }),
            ),
            ...messagesOps[i],
          ];
          const { tokens, bytes } = sender.message(ops);
          const inflated = inflater.inflate(
            encodeMessage(tokens),
            Math.max(1, bytes.length),
          );
          assertSame(inflated, bytes, `message ${i}`);
          assert.equal(
            inflater.windowLength,
            Math.min(windowSize(bits), sender.length),
          );
        }
      },
    ),
    runs(200),
  );
});

Deno.test("ContextInflater fails a copy reaching back before anything it was sent with INVALID_COMPRESSED_DATA (1007)", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 8, max: 14 }),
      fc.array(fc.array(op, { maxLength: 200 }), { maxLength: 4 }),
      fc.array(op, { maxLength: 50 }),
      fc.integer({ min: 3, max: 258 }),
      (bits, before, ops, length) => {
        const sender = new Lz77Sender(Math.max(9, bits));
        const inflater = new ContextInflater(bits);
        for (const [i, o] of before.entries()) {
          const { tokens, bytes } = sender.message(o);
          assertSame(
            inflater.inflate(encodeMessage(tokens), 1 << 20),
            bytes,
            `${i}`,
          );
        }
        const kept = Math.min(windowSize(bits), sender.length);
        const { tokens, bytes } = sender.message(ops);
        // One byte further back than the window kept and this message so
        // far: a byte the receiver never had, or one the sender's window
        // had let go.
        const distance = kept + bytes.length + 1;
        fc.pre(distance <= 32768);
        tokens.push({ length, distance });
        assert.throws(
          () => inflater.inflate(encodeMessage(tokens), 1 << 20),
          assertInvalid,
        );
      },
    ),
    runs(100),
  );
});

// ---------------------------------------------------------------------------
// 2. ContextDeflater compresses, node:zlib and ContextInflater inflate
// ---------------------------------------------------------------------------

Deno.test("ContextDeflater's messages inflate byte-exact in a node:zlib stream that keeps its context, and in ContextInflater (RFC 7692 §7.2.1)", async () => {
  await fc.assert(
    fc.asyncProperty(
      specs,
      senderSettings(fc.integer({ min: 9, max: 15 })),
      fc.constantFrom("server" as const, "client" as const),
      fc.boolean(),
      async (specs, settings, role, together) => {
        const messages = build(specs);
        const { windowBits, level, memLevel } = settings;
        // The other side's window must not matter.
        const other = 24 - windowBits;
        const deflater = new ContextDeflater(
          role === "server"
            ? { serverMaxWindowBits: windowBits, level, memLevel }
            : {
              serverMaxWindowBits: other,
              clientMaxWindowBits: windowBits,
              level,
              memLevel,
            },
          role,
        );
        let payloads: Uint8Array<ArrayBuffer>[];
        try {
          if (together) {
            // All at once, as a burst of sends queues them: still in order.
            payloads = await Promise.all(
              messages.map((m) => deflater.deflate(m)),
            );
          } else {
            payloads = [];
            for (const m of messages) payloads.push(await deflater.deflate(m));
          }
        } finally {
          deflater.close();
        }
        // Each payload ends its message: no sync flush tail left on it.
        for (const [i, payload] of payloads.entries()) {
          assert.ok(payload.length > 0, `message ${i} is at least a block`);
        }
        const reference = await referenceInflate(payloads, windowBits);
        const inflater = new ContextInflater(windowBits);
        for (let i = 0; i < messages.length; i++) {
          assertSame(reference[i], messages[i], `node:zlib, message ${i}`);
          assertSame(
            inflater.inflate(payloads[i], Math.max(1, messages[i].length)),
            messages[i],
            `ContextInflater, message ${i}`,
          );
        }
        // The same zlib with the same settings: the same bytes.
        const expected = await contextCompress(messages, {
          ...settings,
          strategy: zlib.constants.Z_DEFAULT_STRATEGY,
        });
        for (let i = 0; i < messages.length; i++) {
          assertSame(payloads[i], expected[i], `payload ${i}`);
        }
      },
    ),
    runs(100),
  );
});

// ---------------------------------------------------------------------------
// 3. maxLength, with any amount of window in front
// ---------------------------------------------------------------------------

Deno.test("ContextInflater fails exactly the messages longer than maxLength with MESSAGE_TOO_BIG (1009), however much window is in front", async () => {
  await fc.assert(
    fc.asyncProperty(
      specs,
      spec,
      fc.integer({ min: 9, max: 15 }),
      fc.oneof(
        fc.constant(0),
        fc.constant(1),
        fc.integer({ min: 0, max: 40_000 }),
      ),
      fc.oneof(
        fc.constant(0),
        fc.constant(1),
        fc.integer({ min: 0, max: 40_000 }),
        fc.constantFrom(2 ** 31, 2 ** 32, 2 ** 40),
        fc.integer({
          min: Number.MAX_SAFE_INTEGER - 2 ** 16,
          max: Number.MAX_SAFE_INTEGER,
        }),
      ),
      async (before, last, windowBits, under, over) => {
        const messages = build([...before, last]);
        const target = messages[messages.length - 1];
        const payloads = await contextCompress(messages, {
          windowBits,
          level: 6,
          memLevel: 8,
          strategy: zlib.constants.Z_DEFAULT_STRATEGY,
        });
        const fits = new ContextInflater(windowBits);
        const tooBig = new ContextInflater(windowBits);
        for (let i = 0; i < messages.length - 1; i++) {
          fits.inflate(payloads[i], 1 << 20);
          tooBig.inflate(payloads[i], 1 << 20);
        }
        const payload = payloads[messages.length - 1];
        // At least its length (and 1): the message, whatever the window.
        const enough = Math.min(
          Number.MAX_SAFE_INTEGER,
          Math.max(1, target.length + over),
        );
        assertSame(
          fits.inflate(payload, enough),
          target,
          `maxLength ${enough}`,
        );
        // Shorter than it: 1009, never a message longer than maxLength.
        const short = target.length - 1 - under;
        if (short >= 1) {
          assert.throws(
            () => tooBig.inflate(payload, short),
            (error) => assertTooBig(error, short),
          );
        }
      },
    ),
    runs(200),
  );
});
