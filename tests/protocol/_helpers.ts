/**
 * Shared fixtures for the protocol core tests: a frame builder with a fixed
 * masking key, a seeded PRNG, and {@linkcode feedAllWays}, which feeds one
 * byte fixture to fresh connections whole, one byte at a time and in seeded
 * random cuts, and asserts that every way observes the same thing.
 *
 * @module
 */
import assert from "node:assert/strict";
import { concat as joinBytes } from "../../src/protocol/_bytes.ts";
import {
  Connection,
  type ConnectionEvent,
  type ConnectionOptions,
  type ConnectionState,
  ProtocolError,
} from "./_core.ts";

/**
 * Asserts two byte arrays are equal, naming the first differing index: on
 * large arrays a failure reads better, and comes faster, than a deep-equal
 * diff.
 */
export function assertBytes(
  actual: unknown,
  expected: Uint8Array,
  message = "",
): void {
  assert.ok(
    actual instanceof Uint8Array,
    `expected a Uint8Array, got ${
      Object.prototype.toString.call(actual)
    } ${message}`,
  );
  assert.equal(actual.length, expected.length, `byte length ${message}`);
  for (let i = 0; i < expected.length; i++) {
    if (actual[i] !== expected[i]) {
      assert.fail(
        `bytes differ at index ${i} of ${expected.length}: ${actual[i]} !== ${
          expected[i]
        } ${message}`,
      );
    }
  }
}

/** The masking key of the RFC 6455 §5.7 examples; every client fixture uses it. */
export const MASK_KEY: Uint8Array<ArrayBuffer> = Uint8Array.of(
  0x37,
  0xfa,
  0x21,
  0x3d,
);

/** The seeds of the random cuts {@linkcode feedAllWays} tries. */
export const SEEDS: readonly number[] = [1, 2, 3, 5, 8, 13];

const encoder = new TextEncoder();

/** UTF-8 bytes of `text`. */
export function utf8(text: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(text);
}

/** Concatenates byte arrays and plain byte lists into one fresh array. */
export function concat(
  ...parts: (Uint8Array | readonly number[])[]
): Uint8Array<ArrayBuffer> {
  return joinBytes(
    parts.map((part) =>
      part instanceof Uint8Array ? part : Uint8Array.from(part)
    ),
  );
}

/** `length` bytes counting up from `start`, modulo 256. */
export function pattern(length: number, start = 0): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (start + i) & 0xff;
  return out;
}

/**
 * Records the size of every buffer freed by detaching
 * (`ArrayBuffer.prototype.transfer`) until disposed.
 */
export function recordFrees(): { freed: number[] } & Disposable {
  const freed: number[] = [];
  const transfer = ArrayBuffer.prototype.transfer;
  ArrayBuffer.prototype.transfer = function (this: ArrayBuffer, length) {
    freed.push(this.byteLength);
    return transfer.call(this, length);
  };
  return {
    freed,
    [Symbol.dispose]: () => {
      ArrayBuffer.prototype.transfer = transfer;
    },
  };
}

/** XORs a copy of `data` with `key`, byte by byte: the reference masking. */
export function naiveMask(
  data: Uint8Array,
  key: Uint8Array,
  offset = 0,
): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) {
    out[i] = data[i] ^ key[(offset + i) % 4];
  }
  return out;
}

/** How {@linkcode frame} lays out one frame. */
export interface FrameSpec {
  /** FIN bit. @default {true} */
  fin?: boolean;
  /** RSV bits as a mask of the first byte (0x40 = RSV1). @default {0} */
  rsv?: number;
  /** Whether the frame is masked. @default {true} */
  mask?: boolean;
  /** The masking key. @default {MASK_KEY} */
  key?: Uint8Array;
  /**
   * The declared payload length, when it should differ from the payload's
   * (headers announcing more than follows). @default {payload.length}
   */
  length?: number;
  /**
   * Forces the length encoding: 7-bit, 16-bit or 64-bit. @default {minimal}
   */
  lengthBytes?: 0 | 2 | 8;
}

/**
 * Builds one frame: masked with {@linkcode MASK_KEY} unless `spec.mask` is
 * `false`, with minimal length encoding unless told otherwise.
 */
export function frame(
  opcode: number,
  payload: Uint8Array | string = new Uint8Array(0),
  spec: FrameSpec = {},
): Uint8Array<ArrayBuffer> {
  const body = typeof payload === "string" ? utf8(payload) : payload;
  const mask = spec.mask ?? true;
  const key = spec.key ?? MASK_KEY;
  const head = header(opcode, spec.length ?? body.length, { ...spec, mask });
  return concat(
    head,
    mask ? naiveMask(body, key) : body,
  );
}

/** A masked frame, as a client sends it. */
export function clientFrame(
  opcode: number,
  payload: Uint8Array | string = new Uint8Array(0),
  spec: Omit<FrameSpec, "mask"> = {},
): Uint8Array<ArrayBuffer> {
  return frame(opcode, payload, { ...spec, mask: true });
}

/** An unmasked frame, as a server sends it. */
export function serverFrame(
  opcode: number,
  payload: Uint8Array | string = new Uint8Array(0),
  spec: Omit<FrameSpec, "mask" | "key"> = {},
): Uint8Array<ArrayBuffer> {
  return frame(opcode, payload, { ...spec, mask: false });
}

/** Only the header of a frame declaring `length` payload bytes. */
export function header(
  opcode: number,
  length: number,
  spec: FrameSpec = {},
): Uint8Array<ArrayBuffer> {
  const fin = spec.fin ?? true;
  const mask = spec.mask ?? true;
  const key = spec.key ?? MASK_KEY;
  const lengthBytes = spec.lengthBytes ??
    (length < 126 ? 0 : length < 0x10000 ? 2 : 8);
  const out: number[] = [(fin ? 0x80 : 0) | (spec.rsv ?? 0) | opcode];
  const maskBit = mask ? 0x80 : 0;
  if (lengthBytes === 0) out.push(maskBit | length);
  else if (lengthBytes === 2) {
    out.push(maskBit | 126, (length >>> 8) & 0xff, length & 0xff);
  } else {
    out.push(maskBit | 127);
    const high = Math.floor(length / 0x100000000);
    const low = length % 0x100000000;
    for (const word of [high, low]) {
      out.push(
        (word >>> 24) & 0xff,
        (word >>> 16) & 0xff,
        (word >>> 8) & 0xff,
        word & 0xff,
      );
    }
  }
  if (mask) out.push(...key);
  return Uint8Array.from(out);
}

/** A close frame payload: the code big-endian, then the UTF-8 reason. */
export function closeBody(
  code: number,
  reason: Uint8Array | string = "",
): Uint8Array<ArrayBuffer> {
  return concat(
    [code >>> 8, code & 0xff],
    typeof reason === "string" ? utf8(reason) : reason,
  );
}

/** A seeded PRNG (mulberry32): the same seed gives the same cuts. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Cuts `bytes` into pieces of 1 to `maxPiece` bytes chosen by `random`.
 * Pieces are fresh copies, so feeding them never alters `bytes`.
 */
export function cut(
  bytes: Uint8Array,
  random: () => number,
  maxPiece = Math.max(2, Math.ceil(bytes.length / 4)),
): Uint8Array<ArrayBuffer>[] {
  const pieces: Uint8Array<ArrayBuffer>[] = [];
  let at = 0;
  while (at < bytes.length) {
    const size = 1 + Math.floor(random() * maxPiece);
    pieces.push(bytes.slice(at, at + size));
    at += size;
  }
  return pieces;
}

/** Splits `bytes` at the given offsets; pieces are fresh copies. */
export function splitAt(
  bytes: Uint8Array,
  ...offsets: number[]
): Uint8Array<ArrayBuffer>[] {
  const pieces: Uint8Array<ArrayBuffer>[] = [];
  let from = 0;
  for (const offset of [...offsets, bytes.length]) {
    pieces.push(bytes.slice(from, offset));
    from = offset;
  }
  return pieces;
}

/** A connection event with any error reduced to comparable fields. */
export type Observed =
  | Exclude<ConnectionEvent, { type: "error" }>
  | {
    type: "error";
    code: string;
    closeCode: number;
    message: string;
  };

/** Reduces events to plain, deeply comparable values. */
export function observe(events: ConnectionEvent[]): Observed[] {
  return events.map((event) => {
    if (event.type !== "error") return event;
    assert.ok(
      event.error instanceof ProtocolError,
      "an error event carries a ProtocolError",
    );
    const { code, closeCode, message } = event.error;
    return { type: "error", code, closeCode, message };
  });
}

/** Everything one run of a fixture produced. */
export interface Outcome {
  /** The events, taken after every chunk and concatenated. */
  events: Observed[];
  /** The output bytes, taken once at the end and concatenated. */
  output: Uint8Array<ArrayBuffer>;
  /** The state after the last chunk. */
  state: ConnectionState;
  /** Whether both close frames were exchanged. */
  closedCleanly: boolean;
}

/** Options of {@linkcode feedAllWays}. */
export interface FeedOptions extends Partial<ConnectionOptions> {
  /** Called on each fresh connection before any byte is fed. */
  setup?: (connection: Connection) => void;
}

/** Feeds `chunks` to a fresh connection and records what it produced. */
export function feed(
  chunks: Iterable<Uint8Array>,
  options: FeedOptions = {},
): Outcome {
  const { setup, ...connectionOptions } = options;
  const connection = new Connection({ role: "server", ...connectionOptions });
  const events: Observed[] = [];
  setup?.(connection);
  events.push(...observe(connection.takeEvents()));
  for (const chunk of chunks) {
    connection.receive(chunk);
    events.push(...observe(connection.takeEvents()));
  }
  return {
    events,
    output: concat(...connection.takeOutput()),
    state: connection.state,
    closedCleanly: connection.closedCleanly,
  };
}

/**
 * Feeds `fixture` to fresh connections whole, one byte at a time, and in
 * random cuts for each of {@linkcode SEEDS}; asserts every way observes the
 * same events, output, state and clean-close flag; returns that outcome.
 * The fixture itself is never modified (each way feeds copies).
 */
export function feedAllWays(
  fixture: Uint8Array,
  options: FeedOptions = {},
): Outcome {
  const whole = feed([fixture.slice()], options);
  const ways: [string, Uint8Array[]][] = [
    ["one byte at a time", cut(fixture, () => 0, 1)],
    ...SEEDS.map((seed): [string, Uint8Array[]] => [
      `random cuts, seed ${seed}`,
      cut(fixture, prng(seed)),
    ]),
  ];
  for (const [label, chunks] of ways) {
    assert.deepEqual(feed(chunks, options), whole, `fed ${label}`);
  }
  return whole;
}

/** Injects {@linkcode MASK_KEY} as every masking key. */
export function fixedMaskKey(key: Uint8Array): void {
  key.set(MASK_KEY);
}

/** What {@linkcode assertFailed} expects besides the error itself. */
export interface FailedExpectation {
  /** Events before the error. @default {[]} */
  before?: Observed[];
  /** Output bytes before the close frame. @default {empty} */
  outputBefore?: Uint8Array;
  /** The role that failed; a client masks its close frame. @default {"server"} */
  role?: "server" | "client";
}

/**
 * Asserts that a run failed the connection with `code`: the last event is an
 * `error` with that code and close code, the output ends with a close frame
 * carrying the close code and the error code as reason, and the connection
 * is closed (not cleanly).
 */
export function assertFailed(
  outcome: Outcome,
  code: string,
  closeCode: number,
  expectation: FailedExpectation = {},
): void {
  const { before = [], outputBefore = new Uint8Array(0) } = expectation;
  assert.deepEqual(outcome.events.slice(0, -1), before, "events before");
  const last = outcome.events.at(-1);
  assert.ok(last?.type === "error", "the last event is an error");
  assert.equal(last.code, code);
  assert.equal(last.closeCode, closeCode);
  const close = expectation.role === "client"
    ? clientFrame(0x8, closeBody(closeCode, code))
    : serverFrame(0x8, closeBody(closeCode, code));
  assert.deepEqual(outcome.output, concat(outputBefore, close), "output");
  assert.equal(outcome.state, "closed");
  assert.equal(outcome.closedCleanly, false);
}

/**
 * Feeds `fixture` one byte at a time to a fresh connection and returns the
 * index of the byte after which the first `error` event appeared, or -1.
 */
export function errorIndex(
  fixture: Uint8Array,
  options: Partial<ConnectionOptions> = {},
): number {
  const connection = new Connection({ role: "server", ...options });
  for (let i = 0; i < fixture.length; i++) {
    connection.receive(fixture.slice(i, i + 1));
    if (connection.takeEvents().some((event) => event.type === "error")) {
      return i;
    }
  }
  return -1;
}
