/**
 * A coverage-blind, oracle-rich fuzzer for the sans-I/O core: random bytes,
 * valid frame streams and request heads, and mutations of them, fed whole
 * and in random cuts to `Connection` (both roles) and to
 * `HttpRequestParser` + `validateUpgradeRequest`.
 *
 * Every case is a pure function of its target and its 32-bit case seed, so
 * any crash is replayed with `--replay TARGET:SEED`. A crash is any broken
 * invariant:
 *
 * - anything thrown out of `receive()` (the core reports peer mistakes as
 *   events or `HandshakeError`, never by throwing anything else);
 * - more than one `error`/`close` event, an event after one, an undocumented
 *   error code or a close code that does not match it, a failure without the
 *   matching close frame at the end of the output, output after `closed`;
 * - a different outcome for the same bytes cut differently;
 * - a buffer larger than the limits allow (see `tools/_allocations.ts`);
 * - valid input (not mutated) that does not give exactly the events a
 *   simple model of RFC 6455 predicts;
 * - a head status other than 400/414/431 (parser) or 400/405/426
 *   (validation), a 414 or 431 the oracle does not expect, or bytes after the
 *   head going missing.
 *
 * ```sh
 * deno task fuzz --seconds 60            # all targets, a random seed
 * deno task fuzz --seconds 10 --seed 42  # reproducible run
 * deno task fuzz --replay http:12345     # one case, verbose
 * ```
 *
 * Exit code 0: no crash; 1: at least one crash (each printed with its seed
 * and a hex dump of the input); 2: bad arguments.
 *
 * @module
 */
import {
  Connection,
  type ConnectionEvent,
  type ConnectionOptions,
} from "../src/protocol/connection.ts";
import { FrameWriter } from "../src/protocol/frame_writer.ts";
import { concat } from "../src/protocol/_bytes.ts";
import {
  HandshakeError,
  PROTOCOL_ERROR_CODE,
  ProtocolError,
} from "../src/protocol/errors.ts";
import {
  type HttpRequestHead,
  HttpRequestParser,
} from "../src/protocol/http_request_parser.ts";
import { validateUpgradeRequest } from "../src/protocol/upgrade_request.ts";
import { isValidCloseCode } from "../src/protocol/close_payload.ts";
import {
  deflateMessage,
  inflateMessage,
} from "../src/protocol/deflate_codec.ts";
import { isOutputArena, trackAllocations } from "./_allocations.ts";

/** What the fuzzer can exercise. `canary` is a planted bug, for self-tests. */
export const TARGETS = [
  "connection-server",
  "connection-client",
  "http",
] as const;

/** A fuzz target's name. */
export type TargetName = typeof TARGETS[number] | "canary";

/** Options of {@linkcode fuzz}. */
export interface FuzzOptions {
  /**
   * How long to run, in seconds.
   * @default {10}
   */
  seconds?: number;
  /**
   * The run's seed; case seeds derive from it.
   * @default {a random one}
   */
  seed?: number;
  /**
   * Stop after this many cases even if time is left.
   * @default {Infinity}
   */
  maxIterations?: number;
  /**
   * The targets, taken in turn.
   * @default {TARGETS}
   */
  targets?: readonly TargetName[];
  /**
   * Stop after this many crashes.
   * @default {10}
   */
  maxCrashes?: number;
  /** Called with each crash as it is found. */
  onCrash?: (crash: Crash) => void;
}

/** A broken invariant, with what it takes to replay it. */
export interface Crash {
  /** The target that broke. */
  target: TargetName;
  /** The case seed: `--replay TARGET:SEED` runs the case again. */
  caseSeed: number;
  /** What the case fed. */
  input: Uint8Array;
  /** How the case described itself (generator, limits, cuts). */
  description: string;
  /** What broke. */
  message: string;
}

/** What {@linkcode fuzz} did. */
export interface FuzzReport {
  /** The run's seed. */
  seed: number;
  /** Cases run. */
  iterations: number;
  /** Cases per target. */
  perTarget: Record<string, number>;
  /** Cases per generator (`valid`, `mutated`, `random`, ...). */
  perGenerator: Record<string, number>;
  /** What broke, at most `maxCrashes`. */
  crashes: Crash[];
  /** Wall time, in milliseconds. */
  elapsedMs: number;
}

/** An invariant the fuzzer checks; thrown when broken. */
class Broken extends Error {
  override name = "Broken";
}

function check(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Broken(message);
}

// ---------------------------------------------------------------------------
// Randomness
// ---------------------------------------------------------------------------

/** A seeded PRNG (mulberry32) with the helpers the generators need. */
class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }

  /** Mostly small sizes, sometimes the length-encoding boundaries. */
  size(max: number): number {
    if (this.chance(0.1)) {
      return Math.min(max, this.pick([125, 126, 127, 0xffff, 0x10000]));
    }
    return this.int(Math.min(max, 200) + 1);
  }

  /** A string of random code points, astral ones included. */
  text(maxChars: number): string {
    const ranges = [[0x20, 0x7e], [0x80, 0x7ff], [0x800, 0xd7ff], [
      0xe000,
      0xfffd,
    ], [0x10000, 0x10ffff]];
    let out = "";
    const n = this.int(maxChars + 1);
    for (let i = 0; i < n; i++) {
      const [lo, hi] = ranges[this.chance(0.6) ? 0 : this.int(ranges.length)];
      out += String.fromCodePoint(lo + this.int(hi - lo + 1));
    }
    return out;
  }
}

/** The seed of case `i` of a run: a well-mixed function of both. */
function caseSeedOf(seed: number, i: number): number {
  let h = (seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** A short, comparable fingerprint of bytes: length and FNV-1a. */
function digest(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h = Math.imul(h ^ bytes[i], 0x01000193);
  }
  return `${bytes.length}:${(h >>> 0).toString(16)}`;
}

/**
 * Random cuts: one byte at a time (small inputs only), pieces of 1-8, or
 * pieces of 1-64.
 */
function cut(rng: Rng, bytes: Uint8Array): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  const mode = bytes.length > 4096 ? 1 + rng.int(3) : rng.int(4);
  for (let at = 0; at < bytes.length;) {
    const size = mode === 0 ? 1 : 1 + rng.int(mode === 1 ? 8 : 64);
    pieces.push(bytes.slice(at, at + size));
    at += size;
  }
  return pieces;
}

/** Mutations a fuzzer classically applies, a few at a time. */
function mutate(rng: Rng, input: Uint8Array, pool: Uint8Array[]): Uint8Array {
  let out: Uint8Array = input.slice();
  const count = 1 + rng.int(4);
  for (let m = 0; m < count; m++) {
    const i = out.length === 0 ? 0 : rng.int(out.length);
    const n = 1 + rng.int(16);
    switch (rng.int(8)) {
      case 0:
        if (out.length > 0) out[i] ^= 1 << rng.int(8);
        break;
      case 1:
        if (out.length > 0) out[i] = rng.pick([0, 0x7f, 0x80, 0xff, 13, 10]);
        break;
      case 2:
        out = concat([out.subarray(0, i), rng.bytes(n), out.subarray(i)]);
        break;
      case 3:
        out = concat([out.subarray(0, i), out.subarray(i + n)]);
        break;
      case 4:
        out = concat([out.subarray(0, i + n), out.subarray(i)]);
        break;
      case 5:
        out = out.slice(0, i);
        break;
      case 6: // splice in a hostile token
        out = concat([out.subarray(0, i), rng.pick(pool), out.subarray(i)]);
        break;
      default: // repeat a run many times (floods)
        out = concat([
          out.subarray(0, i),
          ...Array.from(
            { length: 2 + rng.int(200) },
            () => out.subarray(i, i + n),
          ),
          out.subarray(i),
        ]);
    }
  }
  return out;
}

export function hexDump(bytes: Uint8Array, limit = 1024): string {
  const lines: string[] = [];
  const shown = Math.min(bytes.length, limit);
  for (let at = 0; at < shown; at += 16) {
    const row = bytes.subarray(at, Math.min(at + 16, shown));
    const hex = [...row].map((b) => b.toString(16).padStart(2, "0")).join(" ");
    const text = [...row].map((b) =>
      b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : "."
    ).join("");
    lines.push(
      `${at.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${text}`,
    );
  }
  if (bytes.length > shown) {
    lines.push(`... ${bytes.length - shown} more bytes`);
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------
// WebSocket frames
// ---------------------------------------------------------------------------

// A byte a method (an HTTP token) may hold.
const METHOD_BYTE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]$/;
const DOCUMENTED = new Set<string>(Object.values(PROTOCOL_ERROR_CODE));
const CLOSE_CODE_OF: Record<string, number> = {
  INVALID_UTF8: 1007,
  INVALID_COMPRESSED_DATA: 1007,
  MESSAGE_TOO_BIG: 1009,
  TOO_MANY_FRAGMENTS: 1009,
};
const utf8 = new TextEncoder();
// As the core decodes: a leading U+FEFF is content, not a BOM.
const utf8Decoder = new TextDecoder("utf-8", { ignoreBOM: true });
const HOSTILE_LENGTHS = [
  125n,
  126n,
  0xffffn,
  0x10000n,
  2n ** 31n,
  2n ** 32n,
  2n ** 53n,
  2n ** 63n - 1n,
  2n ** 63n,
  2n ** 64n - 1n,
];

/** A frame header with any declared length. */
function frameHeader(b0: number, length: bigint, key: Uint8Array | null) {
  const m = key ? 0x80 : 0;
  let head: Uint8Array;
  if (length < 126n) head = Uint8Array.of(b0, m | Number(length));
  else if (length < 0x10000n) {
    head = Uint8Array.of(
      b0,
      m | 126,
      Number(length >> 8n),
      Number(length & 0xffn),
    );
  } else {
    head = new Uint8Array(10);
    head[0] = b0;
    head[1] = m | 127;
    new DataView(head.buffer).setBigUint64(2, length);
  }
  return key ? concat([head, key]) : head;
}

/** A frame the model below understands. */
interface ModelFrame {
  opcode: number;
  fin: boolean;
  payload: Uint8Array;
  /** RSV1 on the first frame: the message is compressed (RFC 7692). */
  compressed?: boolean;
  /** For the first frame of a compressed message: its inflated bytes. */
  original?: Uint8Array;
}

/** Observed events, comparable with JSON. */
type Seen =
  | { type: "text"; data: string }
  | { type: "binary" | "ping" | "pong"; data: string }
  | { type: "close"; code: number; reason: string }
  | { type: "error"; code: string; closeCode: number };

/**
 * Turns events into comparable ones. With `streamMessages`, the pieces of a
 * message are joined back into one `text`/`binary` (cuts decide where the
 * pieces fall, not what the message is); a message cut short by an error
 * was never delivered whole, so it is dropped as it would be unstreamed.
 */
class Collector {
  readonly events: Seen[] = [];
  #stream: { binary: boolean; parts: (string | Uint8Array)[] } | null = null;

  push(event: ConnectionEvent): void {
    switch (event.type) {
      case "stream-start":
        check(this.#stream === null, "stream-start inside a message");
        this.#stream = { binary: event.binary, parts: [] };
        return;
      case "stream-data":
        check(this.#stream !== null, "stream-data outside a message");
        check(
          (typeof event.data === "string") === !this.#stream.binary,
          "stream-data of the wrong type",
        );
        this.#stream.parts.push(event.data);
        return;
      case "stream-end": {
        const stream = this.#stream;
        check(stream !== null, "stream-end outside a message");
        this.#stream = null;
        this.events.push(
          stream.binary
            ? {
              type: "binary",
              data: digest(concat(stream.parts as Uint8Array[])),
            }
            : { type: "text", data: (stream.parts as string[]).join("") },
        );
        return;
      }
      case "text":
        this.events.push({ type: "text", data: event.data });
        return;
      case "binary":
      case "ping":
      case "pong":
        this.events.push({ type: event.type, data: digest(event.data) });
        return;
      case "close":
        this.events.push({
          type: "close",
          code: event.code,
          reason: event.reason,
        });
        return;
      case "error":
        check(
          event.error instanceof ProtocolError,
          "an error event without a ProtocolError",
        );
        this.#stream = null;
        this.events.push({
          type: "error",
          code: event.error.code,
          closeCode: event.error.closeCode,
        });
        return;
      default:
        throw new Broken(
          `an unknown event ${
            JSON.stringify((event as { type: string }).type)
          }`,
        );
    }
  }
}

/**
 * What a correct connection reports for valid frames under the limits: the
 * model of RFC 6455 §5.4-5.5 this fuzzer checks against.
 */
function model(
  frames: ModelFrame[],
  maxPayload: number,
  maxFragments: number,
): Seen[] {
  const out: Seen[] = [];
  let parts: Uint8Array[] = [];
  let size = 0;
  let text = false;
  let original: Uint8Array | undefined;
  for (const frame of frames) {
    if (frame.opcode >= 8) {
      if (frame.opcode === 9) {
        out.push({ type: "ping", data: digest(frame.payload) });
      } else if (frame.opcode === 10) {
        out.push({ type: "pong", data: digest(frame.payload) });
      } else {
        const p = frame.payload;
        out.push({
          type: "close",
          code: p.length === 0 ? 1005 : (p[0] << 8) | p[1],
          reason: utf8Decoder.decode(p.subarray(2)),
        });
        return out;
      }
      continue;
    }
    if (frame.opcode !== 0) {
      text = frame.opcode === 1;
      parts = [];
      size = 0;
      original = frame.original;
    }
    if (parts.length + 1 > maxFragments) {
      out.push({ type: "error", code: "TOO_MANY_FRAGMENTS", closeCode: 1009 });
      return out;
    }
    if (size + frame.payload.length > maxPayload) {
      out.push({ type: "error", code: "MESSAGE_TOO_BIG", closeCode: 1009 });
      return out;
    }
    parts.push(frame.payload);
    size += frame.payload.length;
    if (frame.fin) {
      if (original !== undefined && original.length > maxPayload) {
        out.push({ type: "error", code: "MESSAGE_TOO_BIG", closeCode: 1009 });
        return out;
      }
      const whole = original ?? concat(parts);
      out.push(
        text
          ? { type: "text", data: utf8Decoder.decode(whole) }
          : { type: "binary", data: digest(whole) },
      );
    }
  }
  return out;
}

/** The settings both ends of the fuzzed compression use. */
const DEFLATE = { serverMaxWindowBits: 15, level: 6, memLevel: 8 };

/**
 * Valid frames a peer receives: messages, fragments, controls; with
 * `compress`, some messages are compressed (RSV1, RFC 7692 §6), a few of
 * them small bombs that inflate far beyond their size.
 */
function validFrames(rng: Rng, compress = false): ModelFrame[] {
  const frames: ModelFrame[] = [];
  const control = () => {
    const opcode = rng.chance(0.5) ? 9 : 10;
    frames.push({ opcode, fin: true, payload: rng.bytes(rng.int(126)) });
  };
  const count = rng.int(8);
  for (let m = 0; m < count; m++) {
    if (rng.chance(0.15)) {
      control();
      continue;
    }
    const text = rng.chance(0.5);
    let payload = text
      ? utf8.encode(rng.text(60))
      : rng.bytes(rng.size(70_000));
    let original: Uint8Array | undefined;
    if (compress && rng.chance(0.6)) {
      if (rng.chance(0.2)) {
        // A bomb: kilobytes of zeros or spaces, a few bytes compressed.
        payload = new Uint8Array(rng.pick([1000, 70_000, 1_000_000]))
          .fill(text ? 0x20 : 0);
      }
      original = payload;
      payload = deflateMessage(payload, DEFLATE);
    }
    // Split anywhere, even inside a UTF-8 sequence.
    const cuts = [
      ...new Set(
        Array.from({ length: rng.int(4) }, () => rng.int(payload.length + 1)),
      ),
    ].sort((a, b) => a - b);
    const bounds = [0, ...cuts, payload.length];
    for (let i = 0; i + 1 < bounds.length; i++) {
      frames.push({
        opcode: i === 0 ? (text ? 1 : 2) : 0,
        fin: i + 2 === bounds.length,
        payload: payload.subarray(bounds[i], bounds[i + 1]),
        compressed: i === 0 && original !== undefined,
        original: i === 0 ? original : undefined,
      });
      if (i + 2 < bounds.length && rng.chance(0.3)) control();
    }
  }
  if (rng.chance(0.3)) {
    let code = 1000 + rng.int(4000);
    while (!isValidCloseCode(code)) code = 1000 + rng.int(4000);
    // At most 20 code points: at most 80 bytes, within the 123 allowed.
    const reason = utf8.encode(rng.text(20));
    frames.push({
      opcode: 8,
      fin: true,
      payload: concat([Uint8Array.of(code >> 8, code & 0xff), reason]),
    });
  }
  return frames;
}

function encodeFrames(rng: Rng, frames: ModelFrame[], mask: boolean) {
  const writer = new FrameWriter({
    mask,
    generateMaskKey: (key) => key.set(rng.bytes(4)),
  });
  for (const frame of frames) {
    writer.writeFrame(
      frame.opcode,
      frame.payload,
      frame.fin,
      frame.compressed ? 0x40 : 0,
    );
  }
  return concat(writer.take());
}

/** Frame-shaped noise: random first bytes and hostile declared lengths. */
function frameSoup(rng: Rng, mask: boolean): Uint8Array {
  const parts: Uint8Array[] = [];
  const count = 1 + rng.int(6);
  for (let i = 0; i < count; i++) {
    const b0 = rng.chance(0.7)
      ? rng.pick([0x81, 0x82, 0x01, 0x02, 0x00, 0x80, 0x88, 0x89, 0x8a])
      : rng.int(256);
    const length = rng.chance(0.4)
      ? rng.pick(HOSTILE_LENGTHS)
      : BigInt(rng.size(70_000));
    const masked = rng.chance(0.9) ? mask : !mask;
    parts.push(frameHeader(b0, length, masked ? rng.bytes(4) : null));
    const follows = Number(length < 300n ? length : BigInt(rng.int(300)));
    parts.push(rng.bytes(rng.chance(0.8) ? follows : rng.int(follows + 1)));
  }
  return concat(parts);
}

function frameTokens(rng: Rng, mask: boolean): Uint8Array[] {
  const key = mask ? rng.bytes(4) : null;
  return [
    frameHeader(0x82, rng.pick(HOSTILE_LENGTHS), key),
    frameHeader(0x00, 1n, key),
    frameHeader(0x89, 125n, key),
    frameHeader(0x88, 1n, key),
    Uint8Array.of(0xc3, 0x28),
    Uint8Array.of(0xf4, 0x90, 0x80, 0x80),
    Uint8Array.of(0xed, 0xa0, 0x80),
  ];
}

interface ConnectionRun {
  events: Seen[];
  output: Uint8Array;
  state: string;
}

/** A run as one comparable string. */
function fingerprint(run: ConnectionRun): string {
  return JSON.stringify([run.events, digest(run.output), run.state]);
}

function runConnection(
  chunks: Uint8Array[],
  options: ConnectionOptions,
): ConnectionRun {
  const connection = new Connection(options);
  const collector = new Collector();
  for (const chunk of chunks) {
    try {
      connection.receive(chunk);
    } catch (error) {
      throw new Broken(`receive() threw ${describeError(error)}`);
    }
    for (const event of connection.takeEvents()) collector.push(event);
  }
  const events = collector.events;
  const output = concat(connection.takeOutput());
  if (connection.state === "closed") {
    connection.receive(Uint8Array.of(0x89, 0x80, 1, 2, 3, 4, 0x89, 0x00));
    check(
      connection.takeEvents().length === 0,
      "events after the connection closed",
    );
    check(
      connection.takeOutput().length === 0,
      "output after the connection closed",
    );
  }
  return { events, output, state: connection.state };
}

function checkEvents(run: ConnectionRun, role: "server" | "client"): void {
  const { events } = run;
  const ends = events.filter((e) => e.type === "error" || e.type === "close");
  check(ends.length <= 1, `${ends.length} error/close events`);
  if (ends.length === 1) {
    check(events.at(-1) === ends[0], "an event after an error or close");
  }
  const last = events.at(-1);
  if (last?.type !== "error") return;
  check(DOCUMENTED.has(last.code), `undocumented error code ${last.code}`);
  const closeCode = CLOSE_CODE_OF[last.code] ?? 1002;
  check(
    last.closeCode === closeCode,
    `${last.code} carries close code ${last.closeCode}, not ${closeCode}`,
  );
  check(run.state === "closed", `state ${run.state} after an error`);
  // The close frame ends the output: code then the error code as reason.
  const reason = utf8.encode(last.code);
  const payloadSize = 2 + reason.length;
  const headerSize = 2 + (role === "client" ? 4 : 0);
  const frame = run.output.slice(-(headerSize + payloadSize));
  check(
    frame[0] === 0x88 && (frame[1] & 0x7f) === payloadSize,
    "no close frame at the end of the output after an error",
  );
  if (role === "server") {
    check(
      ((frame[2] << 8) | frame[3]) === closeCode,
      "the close frame does not carry the error's close code",
    );
  }
}

function fuzzConnection(
  rng: Rng,
  role: "server" | "client",
  note: (key: string, value: unknown) => void,
  setInput: (input: Uint8Array) => void,
): void {
  const mask = role === "server"; // what the peer must do
  const maxPayload = rng.pick([1, 16, 125, 1000, 65_536, 16 * 1024 * 1024]);
  const maxFragments = rng.pick([1, 2, 8, 4096]);
  const streamMessages = rng.chance(0.3);
  const compress = rng.chance(0.3);
  const options: ConnectionOptions = {
    role,
    maxPayload,
    maxFragments,
    generateMaskKey: (key) => key.fill(7),
    streamMessages,
    perMessageDeflate: compress
      ? {
        inflate: inflateMessage,
        deflate: (data) => deflateMessage(data, DEFLATE),
        threshold: 1024,
      }
      : undefined,
  };
  const generator = rng.pick(["valid", "mutated", "mutated", "soup", "random"]);
  note("generator", generator);
  note("maxPayload", maxPayload);
  note("maxFragments", maxFragments);
  note("streamMessages", streamMessages);
  note("perMessageDeflate", compress);
  let input: Uint8Array;
  let expected: Seen[] | null = null;
  if (generator === "valid" || generator === "mutated") {
    const frames = validFrames(rng, compress);
    input = encodeFrames(rng, frames, mask);
    if (generator === "valid") {
      expected = model(frames, maxPayload, maxFragments);
    } else input = mutate(rng, input, frameTokens(rng, mask));
  } else if (generator === "soup") input = frameSoup(rng, mask);
  else input = rng.bytes(rng.int(600));
  setInput(input);
  const chunks = cut(rng, input);
  note("chunks", chunks.length);
  const whole = runConnection([input.slice()], options);
  checkEvents(whole, role);
  if (expected !== null) {
    check(
      JSON.stringify(whole.events) === JSON.stringify(expected),
      `valid input: events differ from the model\n  got      ${
        JSON.stringify(whole.events).slice(0, 400)
      }\n  expected ${JSON.stringify(expected).slice(0, 400)}`,
    );
  }
  // The cut run, with every buffer it allocates recorded.
  const { result: pieces, log } = trackAllocations((log) => {
    const connection = new Connection(options);
    const events: ConnectionEvent[] = [];
    for (const chunk of chunks) {
      log.mark += chunk.length;
      connection.receive(chunk);
      events.push(...connection.takeEvents());
    }
    return {
      events,
      output: concat(connection.takeOutput()),
      state: connection.state,
    };
  }, { stackAbove: 4096 });
  for (const allocation of log.allocations) {
    if (isOutputArena(allocation)) continue;
    // Inflating may legitimately turn a few bytes into maxPayload. The
    // output taken at the end is joined into one buffer: up to 16 pongs
    // answered each, the latest of the rest, and a close frame (masked, as
    // a client's), whatever maxPayload is.
    const bound = Math.max(
      18 * (6 + 125),
      Math.min(
        maxPayload,
        compress ? Infinity : Math.max(4096, 2 * allocation.mark),
      ),
    ) + 64;
    check(
      allocation.size <= bound,
      `allocated ${allocation.size} bytes after receiving ${allocation.mark} (bound ${bound})\n${
        allocation.stack ?? ""
      }`,
    );
  }
  const collector = new Collector();
  for (const event of pieces.events) collector.push(event);
  check(
    fingerprint({ ...pieces, events: collector.events }) ===
      fingerprint(whole),
    "the same bytes in different cuts gave a different outcome",
  );
}

// ---------------------------------------------------------------------------
// HTTP request heads
// ---------------------------------------------------------------------------

const latin1 = (text: string) =>
  Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);

function validHead(rng: Rng): string {
  const path = rng.pick([
    "/",
    "/chat",
    "/a/b?x=1&y=%20",
    "/" + "p".repeat(rng.int(300)),
  ]);
  const keyBytes = rng.bytes(16);
  const key = btoa(String.fromCharCode(...keyBytes));
  const fields: [string, string][] = [
    [
      rng.pick(["Host", "host", "HOST"]),
      rng.pick(["127.0.0.1:8080", "example.com", "[::1]:80"]),
    ],
    [
      rng.pick(["Upgrade", "upgrade"]),
      rng.pick(["websocket", "WebSocket", "h2c, websocket"]),
    ],
    ["Connection", rng.pick(["Upgrade", "keep-alive, Upgrade", "upgrade"])],
    ["Sec-WebSocket-Key", key],
    ["Sec-WebSocket-Version", "13"],
  ];
  for (let i = rng.int(6); i > 0; i--) {
    fields.push([`X-Extra-${i}`, "v".repeat(rng.int(100))]);
  }
  if (rng.chance(0.3)) {
    fields.push(["Sec-WebSocket-Protocol", "chat, superchat"]);
  }
  // Any field order.
  for (let i = fields.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [fields[i], fields[j]] = [fields[j], fields[i]];
  }
  const space = () => rng.pick(["", " ", "  ", "\t"]);
  return `GET ${path} HTTP/1.1\r\n` +
    fields.map(([n, v]) => `${n}:${space()}${v}${space()}\r\n`).join("") +
    "\r\n";
}

function headTokens(rng: Rng): Uint8Array[] {
  return [
    "\r\n",
    "\r\n\r\n",
    "\n",
    ":",
    " ",
    "\x00",
    "\xff",
    "X-Flood: " + "a".repeat(rng.int(5000)) + "\r\n",
    "a:b\r\n".repeat(rng.int(400)),
    "Host: other\r\n",
  ].map(latin1);
}

function headEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (
      bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 &&
      bytes[i + 3] === 10
    ) return i + 4;
  }
  return -1;
}

type HeadOutcome =
  | {
    kind: "head";
    head: HttpRequestHead;
    rest: string;
    upgrade: string | number;
  }
  | { kind: "status"; status: number }
  | { kind: "incomplete" };

function parseHead(
  chunks: Uint8Array[],
  maxHeadSize: number,
  maxHeaders: number,
  track: boolean,
): HeadOutcome {
  const parser = new HttpRequestParser({ maxHeadSize, maxHeaders });
  let index = -1;
  type Fed = { status: number } | { head: HttpRequestHead } | null;
  const feed = (log?: { mark: number }): Fed => {
    for (const [i, chunk] of chunks.entries()) {
      if (log) log.mark = chunk.length;
      let head: HttpRequestHead | undefined;
      try {
        head = parser.receive(chunk);
      } catch (error) {
        check(
          error instanceof HandshakeError,
          `HttpRequestParser threw ${describeError(error)}`,
        );
        check(
          [400, 414, 431].includes(error.status),
          `HttpRequestParser answered ${error.status}`,
        );
        return { status: error.status };
      }
      if (head !== undefined) {
        index = i;
        return { head };
      }
    }
    return null;
  };
  let result: Fed;
  if (track) {
    const tracked = trackAllocations((log) => feed(log));
    for (const allocation of tracked.log.allocations) {
      check(
        allocation.size <= Math.max(maxHeadSize, allocation.mark),
        `the head parser allocated ${allocation.size} bytes (maxHeadSize ${maxHeadSize})`,
      );
    }
    result = tracked.result;
  } else result = feed();
  if (result === null) return { kind: "incomplete" };
  if ("status" in result) return { kind: "status", status: result.status };
  let upgrade: string | number;
  try {
    upgrade = validateUpgradeRequest(result.head, "ws").url.href;
  } catch (error) {
    check(
      error instanceof HandshakeError,
      `validateUpgradeRequest threw ${describeError(error)}`,
    );
    check(
      [400, 405, 426].includes(error.status),
      `validateUpgradeRequest answered ${error.status}`,
    );
    upgrade = error.status;
  }
  const rest = digest(concat([parser.rest, ...chunks.slice(index + 1)]));
  return { kind: "head", head: result.head, rest, upgrade };
}

function fuzzHttp(
  rng: Rng,
  note: (key: string, value: unknown) => void,
  setInput: (input: Uint8Array) => void,
): void {
  const maxHeadSize = rng.pick([64, 1024, 4096, 16 * 1024]);
  const maxHeaders = rng.pick([2, 10, 100]);
  const generator = rng.pick(["valid", "mutated", "mutated", "random"]);
  note("generator", generator);
  note("maxHeadSize", maxHeadSize);
  note("maxHeaders", maxHeaders);
  let input: Uint8Array;
  if (generator === "random") input = rng.bytes(rng.int(2000));
  else {
    input = latin1(validHead(rng));
    if (rng.chance(0.3)) input = concat([input, rng.bytes(rng.int(40))]);
    if (generator === "mutated") input = mutate(rng, input, headTokens(rng));
  }
  setInput(input);
  const chunks = cut(rng, input);
  const whole = parseHead([input.slice()], maxHeadSize, maxHeaders, false);
  const pieces = parseHead(chunks, maxHeadSize, maxHeaders, true);
  check(
    JSON.stringify(pieces) === JSON.stringify(whole),
    `different cuts gave a different outcome: ${
      JSON.stringify(whole).slice(0, 200)
    } vs ${JSON.stringify(pieces).slice(0, 200)}`,
  );
  const end = headEnd(input);
  // A byte no method may hold (before the first space, after empty lines)
  // is answered with 400 as soon as it arrives.
  let i = 0;
  while (input[i] === 0x0d || input[i] === 0x0a) i++;
  while (i < input.length && METHOD_BYTE.test(String.fromCharCode(input[i]))) {
    i++;
  }
  // So is a line that ends with a bare LF, not CRLF.
  if (i >= input.length || [0x20, 0x0d, 0x0a].includes(input[i])) {
    i = input.length;
  }
  const lf = input.findIndex((b, j) => b === 0x0a && input[j - 1] !== 0x0d);
  if (lf !== -1 && lf < i) i = lf;
  if (i < Math.min(input.length, maxHeadSize) && (end === -1 || end > i)) {
    check(
      whole.kind === "status" && whole.status === 400,
      `byte 0x${input[i].toString(16)} at ${i}, got ${
        JSON.stringify(whole).slice(0, 100)
      } (expected 400)`,
    );
    return;
  }
  if (end === -1 || end > maxHeadSize) {
    // 414 when not even the request line ended within the limit.
    const first = input[0] === 0x0d && input[1] === 0x0a ? 2 : 0;
    const line = input.subarray(first, maxHeadSize);
    const status = line.some((b, i) => b === 13 && line[i + 1] === 10)
      ? 431
      : 414;
    check(
      input.length >= maxHeadSize
        ? whole.kind === "status" && whole.status === status
        : whole.kind === "incomplete",
      `no head within ${maxHeadSize} bytes of ${input.length}, got ${
        JSON.stringify(whole).slice(0, 100)
      } (expected ${status})`,
    );
    return;
  }
  if (whole.kind === "head") {
    check(
      whole.rest === digest(input.subarray(end)),
      "bytes after the head went missing",
    );
  }
  const lines = String.fromCharCode(...input.subarray(0, end - 4)).split(
    "\r\n",
  );
  if (lines[0] === "") lines.shift();
  const fields = lines.length - 1;
  if (whole.kind === "status" && whole.status === 431) {
    check(fields > maxHeaders, `431 for ${fields} fields of ${maxHeaders}`);
  }
  if (generator === "valid") {
    if (whole.kind === "status") {
      check(
        whole.status === 431,
        `a valid head was rejected with ${whole.status}`,
      );
    } else {
      check(whole.kind === "head", "a valid head did not parse");
      check(
        typeof whole.upgrade === "string",
        `a valid head failed validation with ${whole.upgrade}`,
      );
      check(fields <= maxHeaders, "more fields than maxHeaders accepted");
      check(whole.head.headers.length === fields, "fields went missing");
    }
  }
}

// ---------------------------------------------------------------------------
// The canary: a planted bug the fuzzer must find (self-test)
// ---------------------------------------------------------------------------

/** A naive frame reader that sizes its buffer by the declared length. */
function naiveReader(bytes: Uint8Array): void {
  if (bytes.length < 2) return;
  let length = bytes[1] & 0x7f;
  if (length === 126 && bytes.length >= 4) length = (bytes[2] << 8) | bytes[3];
  const payload = new Uint8Array(length); // the bug: trusts the peer
  payload.set(bytes.subarray(2, 2 + length));
}

function fuzzCanary(
  rng: Rng,
  note: (key: string, value: unknown) => void,
  setInput: (input: Uint8Array) => void,
): void {
  note("generator", "random");
  const input = rng.bytes(2 + rng.int(8));
  setInput(input);
  const { log } = trackAllocations((log) => {
    log.mark = input.length;
    naiveReader(input);
  });
  for (const allocation of log.allocations) {
    check(
      allocation.size <= Math.max(4096, 2 * allocation.mark),
      `allocated ${allocation.size} bytes after receiving ${allocation.mark}`,
    );
  }
}

// ---------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------

function describeError(error: unknown): string {
  return error instanceof Error
    ? `${error.name}: ${error.message}`
    : String(error);
}

/**
 * Runs one case. Returns its description; throws a crash when an invariant
 * breaks.
 *
 * @param target The target.
 * @param caseSeed The case seed.
 * @returns The case's description and generator.
 */
export function runCase(
  target: TargetName,
  caseSeed: number,
): { description: string; generator: string } {
  const rng = new Rng(caseSeed);
  const notes: Record<string, unknown> = {};
  const note = (key: string, value: unknown) => notes[key] = value;
  let input: Uint8Array = new Uint8Array(0);
  const setInput = (bytes: Uint8Array) => input = bytes;
  try {
    if (target === "connection-server" || target === "connection-client") {
      fuzzConnection(
        rng,
        target === "connection-server" ? "server" : "client",
        note,
        setInput,
      );
    } else if (target === "http") fuzzHttp(rng, note, setInput);
    else fuzzCanary(rng, note, setInput);
  } catch (error) {
    const crash: Crash = {
      target,
      caseSeed,
      input,
      description: JSON.stringify(notes),
      message: error instanceof Broken
        ? error.message
        : `the fuzzer's own check threw ${describeError(error)}\n${
          (error as Error)?.stack ?? ""
        }`,
    };
    throw new CrashError(crash);
  }
  return {
    description: JSON.stringify(notes),
    generator: String(notes.generator),
  };
}

/** Carries a {@linkcode Crash} out of {@linkcode runCase}. */
export class CrashError extends Error {
  /** The crash. */
  readonly crash: Crash;

  /**
   * @param crash The crash.
   */
  constructor(crash: Crash) {
    super(crash.message);
    this.name = "CrashError";
    this.crash = crash;
  }
}

/**
 * Runs cases until time, iterations or crashes run out.
 *
 * @param options How long, which seed, which targets.
 * @returns What it did and what broke.
 */
export function fuzz(options: FuzzOptions = {}): FuzzReport {
  const seed =
    (options.seed ?? crypto.getRandomValues(new Uint32Array(1))[0]) >>>
    0;
  const targets = options.targets ?? TARGETS;
  const deadline = performance.now() + (options.seconds ?? 10) * 1000;
  const maxIterations = options.maxIterations ?? Infinity;
  const maxCrashes = options.maxCrashes ?? 10;
  const started = performance.now();
  const report: FuzzReport = {
    seed,
    iterations: 0,
    perTarget: {},
    perGenerator: {},
    crashes: [],
    elapsedMs: 0,
  };
  for (let i = 0; i < maxIterations; i++) {
    if ((i & 15) === 0 && performance.now() >= deadline) break;
    const target = targets[i % targets.length];
    const caseSeed = caseSeedOf(seed, i);
    report.iterations++;
    report.perTarget[target] = (report.perTarget[target] ?? 0) + 1;
    try {
      const { generator } = runCase(target, caseSeed);
      const key = `${target}/${generator}`;
      report.perGenerator[key] = (report.perGenerator[key] ?? 0) + 1;
    } catch (error) {
      if (!(error instanceof CrashError)) throw error;
      report.crashes.push(error.crash);
      options.onCrash?.(error.crash);
      if (report.crashes.length >= maxCrashes) break;
    }
  }
  report.elapsedMs = performance.now() - started;
  return report;
}

/**
 * Formats a crash for the terminal: what broke, how to replay it, the input.
 *
 * @param crash The crash.
 * @returns Printable lines.
 */
export function formatCrash(crash: Crash): string {
  return [
    `CRASH in ${crash.target}, case seed ${crash.caseSeed}`,
    `  replay: deno task fuzz --replay ${crash.target}:${crash.caseSeed}`,
    `  case:   ${crash.description}`,
    `  broke:  ${crash.message.split("\n").join("\n          ")}`,
    `  input (${crash.input.length} bytes):`,
    hexDump(crash.input).replace(/^/gm, "    "),
  ].join("\n");
}

const USAGE =
  `Usage: deno task fuzz [--seconds N] [--seed S] [--targets a,b] [--replay TARGET:SEED]
Targets: ${TARGETS.join(", ")}`;

function parseArgs(args: string[]): Map<string, string> | null {
  const flags = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--help" || arg === "-h") return null;
    const match = /^--(seconds|seed|targets|replay|max-crashes)(?:=(.*))?$/
      .exec(arg);
    if (match === null) {
      throw new TypeError(`Unknown argument ${JSON.stringify(arg)}`);
    }
    const value = match[2] ?? args[++i];
    if (value === undefined) {
      throw new TypeError(`Missing value for --${match[1]}`);
    }
    flags.set(match[1], value);
  }
  return flags;
}

function number(flags: Map<string, string>, name: string): number | undefined {
  const text = flags.get(name);
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(
      `--${name} must be a non-negative number, got ${text}`,
    );
  }
  return value;
}

function main(args: string[]): number {
  let flags: Map<string, string> | null;
  let seconds: number | undefined, seed: number | undefined;
  let maxCrashes: number | undefined;
  try {
    flags = parseArgs(args);
    if (flags === null) {
      console.log(USAGE);
      return 0;
    }
    seconds = number(flags, "seconds");
    seed = number(flags, "seed");
    maxCrashes = number(flags, "max-crashes");
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const known = [...TARGETS, "canary"] as string[];
  const replay = flags.get("replay");
  if (replay !== undefined) {
    const [target, caseSeed] = replay.split(":");
    if (!known.includes(target) || !/^\d+$/.test(caseSeed ?? "")) {
      console.error(`--replay takes TARGET:SEED, got ${replay}\n${USAGE}`);
      return 2;
    }
    try {
      const { description } = runCase(target as TargetName, Number(caseSeed));
      console.log(`ok: ${target}:${caseSeed} ${description}`);
      return 0;
    } catch (error) {
      if (!(error instanceof CrashError)) throw error;
      console.log(formatCrash(error.crash));
      return 1;
    }
  }
  const targets =
    (flags.get("targets")?.split(",") ?? [...TARGETS]) as TargetName[];
  const unknown = targets.filter((t) => !known.includes(t));
  if (unknown.length > 0) {
    console.error(`Unknown target(s) ${unknown.join(", ")}\n${USAGE}`);
    return 2;
  }
  const report = fuzz({
    seconds: seconds ?? 10,
    seed,
    targets,
    maxCrashes,
    onCrash: (crash) => console.log(formatCrash(crash) + "\n"),
  });
  console.log(
    `fuzz: ${report.iterations} iterations in ${
      (report.elapsedMs / 1000).toFixed(1)
    } s, seed ${report.seed}, ${report.crashes.length} crash(es)`,
  );
  for (const [key, count] of Object.entries(report.perGenerator).sort()) {
    console.log(`  ${key.padEnd(32)} ${count}`);
  }
  return report.crashes.length > 0 ? 1 : 0;
}

if (import.meta.main) Deno.exit(main(Deno.args));
