import { applyMask } from "./mask.ts";
import { sharedFramesIn } from "./_shared_copies.ts";
import { free } from "./_bytes.ts";
import { describe, shown } from "./_describe.ts";

/**
 * Payloads up to this many bytes (256 KiB) are copied next to their header, so
 * a frame leaves in one write and the caller may reuse its buffer at once.
 * Larger payloads are referenced, not copied (unless masking needs a copy):
 * the caller must leave them untouched until they are written.
 *
 * @example
 * ```ts
 * import { COPY_LIMIT, FrameWriter, OPCODE } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const writer = new FrameWriter();
 * assert.equal(writer.writeFrame(OPCODE.Binary, new Uint8Array(COPY_LIMIT)), false);
 * // Referenced: keep the buffer as it is until the output is written.
 * assert.equal(writer.writeFrame(OPCODE.Binary, new Uint8Array(COPY_LIMIT + 1)), true);
 * ```
 */
export const COPY_LIMIT = 256 * 1024;

// Frames up to this size share the arena below; larger copied frames get a
// buffer of their own.
const ARENA_FRAME_LIMIT = 16 * 1024;

// Small frames of every connection are laid out in one shared arena. Regions
// handed out by take() are never written again, so a pending write can keep
// a view of the arena while later frames fill the rest of it.
const ARENA_SIZE = 64 * 1024;
// The most bytes of shared frames (writeEncoded()) that take() copies into
// one run for one write: a published message is queued on thousands of
// sockets, and every copy costs memory.
const SHARED_JOIN_LIMIT = 4096;
let arena = new Uint8Array(ARENA_SIZE);
let arenaUsed = 0;

function reserve(size: number): number {
  if (arenaUsed + size > arena.length) {
    arena = new Uint8Array(Math.max(ARENA_SIZE, size));
    arenaUsed = 0;
  }
  const at = arenaUsed;
  arenaUsed += size;
  return at;
}

// A writer keeps the last frame buffers it released (MAX_SPARES) and fills
// them with its next large frames instead of allocating: a fresh buffer per
// frame costs zero-filling and, as the allocator hands memory back to the
// system and takes it again, a page fault per 4 KiB. Spares are only ever
// reused by the writer that released them, and all of them together stay
// under this.
const SPARE_BUDGET = 8 * 1024 * 1024;
// Spares per writer: as many as the large frames of one write (a pipelined
// echo has several in flight).
const MAX_SPARES = 4;
let spareBytes = 0;
// Returns the budget of a writer collected while holding a spare.
const spareAccounts = new FinalizationRegistry<{ bytes: number }>(
  (account) => spareBytes -= account.bytes,
);

const utf8 = new TextEncoder();

/**
 * Options of {@linkcode FrameWriter}.
 *
 * @example A client writer with a fixed masking key, for a test
 * ```ts
 * import { FrameWriter, type FrameWriterOptions, OPCODE } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * // The key of RFC 6455 §5.7; a real client uses a fresh random one per frame.
 * const options: FrameWriterOptions = { mask: true, generateMaskKey: (key) => key.set([0x37, 0xfa, 0x21, 0x3d]) };
 * const writer = new FrameWriter(options);
 * writer.writeFrame(OPCODE.Text, new TextEncoder().encode("Hello"));
 * assert.deepEqual(writer.take(), [
 *   new Uint8Array([0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]),
 * ]);
 * ```
 */
export interface FrameWriterOptions {
  /**
   * Whether frames are masked: `true` for a client (RFC 6455 §5.3).
   * @default {false}
   */
  mask?: boolean;
  /**
   * Fills a fresh 4-byte masking key. Inject a fixed key only in tests.
   * @default {crypto.getRandomValues}
   */
  generateMaskKey?: (key: Uint8Array) => void;
}

const NO_KEY = new Uint8Array(0);

// Up to this length, an ASCII string is copied byte by byte rather than
// through the encoder (a call into the runtime).
const SHORT_TEXT = 64;

/** Writes `text` at `at` if it is ASCII; returns its length, or -1 if not. */
function writeAscii(text: string, into: Uint8Array, at: number): number {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0x80) return -1;
    into[at + i] = code;
  }
  return text.length;
}

function randomKey(key: Uint8Array): void {
  crypto.getRandomValues(key);
}

/**
 * Encodes frames into the bytes to write, with minimal length encoding
 * (RFC 6455 §5.2) and, for a client, a fresh masking key per frame.
 *
 * Frames queue until {@linkcode FrameWriter.prototype.take}, which returns
 * them as few chunks as possible: consecutive small frames share one chunk.
 *
 * @example Encoding an unmasked text frame (RFC 6455 §5.7)
 * ```ts
 * import { FrameWriter, OPCODE } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const writer = new FrameWriter();
 * writer.writeFrame(OPCODE.Text, new TextEncoder().encode("Hello"));
 * assert.deepEqual(writer.take(), [new Uint8Array([0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f])]);
 * ```
 */
export class FrameWriter {
  readonly #mask: boolean;
  readonly #generateMaskKey: (key: Uint8Array) => void;
  // Only a masking (client) writer needs a key.
  readonly #key: Uint8Array;
  #chunks: Uint8Array[] = [];
  // Where in #chunks the frames queued by writeEncoded() are, in order.
  #encoded: number[] | null = null;
  #size = 0;
  // The arena region this writer is still appending to.
  #openArena: Uint8Array | null = null;
  #openStart = 0;
  #openEnd = 0;
  // Buffers allocated for a frame of their own, which release() may free.
  // Per writer: a frame another writer made (a PreparedMessage's, shared by
  // many connections) is never freed here.
  #ownFrames: WeakSet<ArrayBuffer> | null = null;
  // Released frame buffers kept for the next large frames (MAX_SPARES at
  // most, oldest first), and their size in the shared budget.
  #spares: ArrayBuffer[] | null = null;
  #spareAccount: { bytes: number } | null = null;

  /**
   * Creates a writer for one connection.
   *
   * @param options Whether to mask, and how to make masking keys.
   */
  constructor(options: FrameWriterOptions = {}) {
    this.#mask = options.mask ?? false;
    this.#key = this.#mask ? new Uint8Array(4) : NO_KEY;
    this.#generateMaskKey = options.generateMaskKey ?? randomKey;
  }

  /** Bytes queued and not yet taken. */
  get size(): number {
    return this.#size;
  }

  /**
   * Queues one frame. Payloads above {@linkcode COPY_LIMIT} bytes are
   * referenced (unmasked) or copied while masking; `payload` itself is never
   * modified.
   *
   * @param opcode The frame opcode.
   * @param payload The payload.
   * @param fin Whether this is the last frame of its message.
   * @param rsv RSV bits, as a mask of the first header byte (0x40 = RSV1).
   * @returns `true` when the writer keeps a reference to `payload` until
   * the output is taken and written.
   */
  writeFrame(
    opcode: number,
    payload: Uint8Array,
    fin = true,
    rsv = 0,
  ): boolean {
    if (!(payload instanceof Uint8Array)) {
      throw new TypeError(
        `Cannot write a frame: the payload must be a Uint8Array (writeText() takes strings), got ${
          describe(payload)
        }`,
      );
    }
    const length = payload.length;
    checkFrame(opcode, fin, rsv, length);
    const headerLength = headerSize(length, this.#mask);
    if (length <= ARENA_FRAME_LIMIT) {
      const at = this.#reserve(headerLength + length);
      this.#writeHeader(arena, at, opcode, fin, rsv, length);
      arena.set(payload, at + headerLength);
      if (this.#mask) this.#maskRegion(arena, at + headerLength, length);
      return false;
    }
    if (length <= COPY_LIMIT || this.#mask) {
      const frame = this.#frameBuffer(headerLength + length);
      this.#writeHeader(frame, 0, opcode, fin, rsv, length);
      frame.set(payload, headerLength);
      if (this.#mask) this.#maskRegion(frame, headerLength, length);
      (this.#ownFrames ??= new WeakSet()).add(frame.buffer);
      this.#push(frame);
      return false;
    }
    const at = this.#reserve(headerLength);
    this.#writeHeader(arena, at, opcode, fin, rsv, length);
    this.#push(payload);
    return true;
  }

  /**
   * Queues one frame whose payload is the UTF-8 encoding of `text`, encoding
   * small strings straight into the output.
   *
   * @param opcode The frame opcode (text, continuation or a control opcode).
   * @param text The payload as a string.
   * @param fin Whether this is the last frame of its message.
   * @param rsv RSV bits.
   */
  writeText(opcode: number, text: string, fin = true, rsv = 0): void {
    if (typeof text !== "string") {
      throw new TypeError(
        `Cannot write a frame: the text must be a string (writeFrame() takes bytes), got ${
          describe(text)
        }`,
      );
    }
    if (opcode >= 8) {
      // A control frame: its length limit is in bytes.
      this.writeFrame(opcode, utf8.encode(text), fin, rsv);
      return;
    }
    checkFrame(opcode, fin, rsv, 0);
    const maxBytes = text.length * 3;
    if (maxBytes > ARENA_FRAME_LIMIT) {
      // The encoding is this writer's own: free it now if the frame copied
      // it, else once written (release()).
      const bytes = utf8.encode(text);
      if (this.writeFrame(opcode, bytes, fin, rsv)) {
        (this.#ownFrames ??= new WeakSet()).add(bytes.buffer);
      } else free(bytes.buffer);
      return;
    }
    // Encode after the largest header the string can need, then move the
    // payload left if the real length takes a shorter header.
    const guess = headerSize(maxBytes, this.#mask);
    const at = this.#reserve(guess + maxBytes);
    let written = text.length <= SHORT_TEXT
      ? writeAscii(text, arena, at + guess)
      : -1;
    if (written < 0) {
      written = utf8.encodeInto(
        text,
        arena.subarray(at + guess, at + guess + maxBytes),
      ).written;
    }
    const headerLength = headerSize(written, this.#mask);
    if (headerLength < guess) {
      arena.copyWithin(at + headerLength, at + guess, at + guess + written);
    }
    this.#writeHeader(arena, at, opcode, fin, rsv, written);
    if (this.#mask) this.#maskRegion(arena, at + headerLength, written);
    // Give back what the worst case reserved and the text did not use.
    const used = headerLength + written;
    arenaUsed = at + used;
    this.#openEnd = at + used;
    this.#size -= guess + maxBytes - used;
  }

  /**
   * Queues bytes that are already one or more complete frames (see
   * `PreparedMessage`). They are referenced and must never change; a small
   * one that can extend this writer's last region of the shared arena is
   * copied there instead.
   *
   * @param frames Encoded frames.
   * @returns `true` when the writer keeps a reference to `frames` (until
   * the output is taken: it may still copy a small one then), `false` when
   * it copied them.
   */
  writeEncoded(frames: Uint8Array): boolean {
    const size = frames.length;
    if (
      size <= ARENA_FRAME_LIMIT && this.#openArena === arena &&
      this.#openEnd === arenaUsed && arenaUsed + size <= arena.length
    ) {
      arena.set(frames, this.#reserve(size));
      return false;
    }
    this.#push(frames, true);
    return true;
  }

  /**
   * Returns the queued bytes as a list of chunks, in order, and empties the
   * queue. Chunks stay valid until they are given back with
   * {@linkcode FrameWriter.prototype.release}: only then may the writer
   * reuse their memory.
   *
   * @returns The bytes to write.
   */
  take(): Uint8Array[] {
    this.#closeRegion();
    const chunks = this.#chunks;
    const encoded = this.#encoded;
    this.#chunks = [];
    this.#encoded = null;
    this.#size = 0;
    return chunks.length > 1 ? this.#joinSmallRuns(chunks, encoded) : chunks;
  }

  /**
   * Copies each run of consecutive small chunks (regions the arena's other
   * users split) into one, so that they leave in one write. Of the frames
   * queued by writeEncoded() (at the indexes `encoded`), a run takes at
   * most SHARED_JOIN_LIMIT bytes: a published message is queued on
   * thousands of sockets, and a copy each costs memory (and memory budget)
   * in proportion. A run that took some is listed in `sharedFramesIn`.
   */
  #joinSmallRuns(
    chunks: Uint8Array[],
    encoded: number[] | null,
  ): Uint8Array[] {
    const joined: Uint8Array[] = [];
    let next = encoded?.[0] ?? -1;
    let k = 0;
    for (let start = 0; start < chunks.length;) {
      let end = start;
      let size = 0;
      let sharedSize = 0;
      let sharedCount = 0;
      while (end < chunks.length && chunks[end].length <= ARENA_FRAME_LIMIT) {
        if (end === next) {
          if (sharedSize + chunks[end].length > SHARED_JOIN_LIMIT) break;
          sharedSize += chunks[end].length;
          sharedCount++;
          next = encoded![++k] ?? -1;
        }
        size += chunks[end++].length;
      }
      if (end === start && end === next) next = encoded![++k] ?? -1;
      if (end - start < 2) {
        joined.push(chunks[start]);
        start++;
        continue;
      }
      let run: Uint8Array;
      if (size <= ARENA_SIZE) {
        const at = reserve(size);
        run = arena.subarray(at, at + size);
      } else {
        const buffer = new ArrayBuffer(size);
        (this.#ownFrames ??= new WeakSet()).add(buffer);
        run = new Uint8Array(buffer);
      }
      for (let offset = 0; start < end; start++) {
        run.set(chunks[start], offset);
        offset += chunks[start].length;
      }
      if (sharedCount > 0) sharedFramesIn.set(run, sharedCount);
      joined.push(run);
    }
    return joined;
  }

  /**
   * Gives back the buffers this writer allocated for `chunks` (from
   * {@linkcode FrameWriter.prototype.take}) once they are written: the last
   * four are kept to hold the writer's next large frames (within 8 MiB for
   * all writers), the others are freed at once instead of at the next
   * garbage collection. Call it only after the chunks are written, and
   * touch none of them afterwards: their memory may already hold a later
   * frame. Optional; chunks the writer did not allocate
   * a buffer for (shared small-frame regions, referenced payloads) are left
   * alone.
   *
   * @param chunks Chunks returned by `take()`, already written.
   * @param keepSpare `false` frees every buffer, the kept ones included: pass
   * it when the writer will write no more.
   *
   * @example Reusing a written frame's buffer
   * ```ts
   * import { FrameWriter, OPCODE } from "@duplex/ws";
   * import assert from "node:assert/strict";
   *
   * const writer = new FrameWriter();
   * writer.writeFrame(OPCODE.Binary, new Uint8Array(100_000));
   * const [first] = writer.take();
   * // ... write the chunk to the transport, then:
   * writer.release([first]);
   * writer.writeFrame(OPCODE.Binary, new Uint8Array(100_000).fill(7));
   * const [second] = writer.take();
   * assert.equal(second.buffer, first.buffer);
   * writer.release([second], false);
   * assert.equal(second.length, 0);
   * ```
   */
  release(chunks: readonly Uint8Array[], keepSpare = true): void {
    const own = this.#ownFrames;
    if (own !== null) {
      for (const chunk of chunks) {
        const buffer = chunk.buffer as ArrayBuffer;
        if (chunk.length > ARENA_FRAME_LIMIT && own.delete(buffer)) {
          if (keepSpare) this.#keepSpare(buffer);
          else free(buffer);
        }
      }
    }
    if (!keepSpare) {
      while (this.#spares !== null && this.#spares.length > 0) {
        free(this.#takeSpare(0));
      }
    }
  }

  #frameBuffer(size: number): Uint8Array<ArrayBuffer> {
    const spares = this.#spares;
    if (spares !== null) {
      // The newest spare that fits and is not mostly wasted.
      for (let i = spares.length - 1; i >= 0; i--) {
        const length = spares[i].byteLength;
        if (length >= size && length < 2 * size) {
          return new Uint8Array(this.#takeSpare(i), 0, size);
        }
      }
    }
    return new Uint8Array(size);
  }

  #keepSpare(buffer: ArrayBuffer): void {
    const spares = this.#spares ??= [];
    // The oldest goes first: the newest fit the current traffic best.
    if (spares.length === MAX_SPARES) free(this.#takeSpare(0));
    if (spareBytes + buffer.byteLength > SPARE_BUDGET) {
      free(buffer);
      return;
    }
    let account = this.#spareAccount;
    if (account === null) {
      account = this.#spareAccount = { bytes: 0 };
      spareAccounts.register(this, account);
    }
    account.bytes += buffer.byteLength;
    spareBytes += buffer.byteLength;
    spares.push(buffer);
  }

  #takeSpare(index: number): ArrayBuffer {
    // (Shifted by hand: splice() would allocate an array per frame.)
    const spares = this.#spares!;
    const spare = spares[index];
    for (let i = index + 1; i < spares.length; i++) spares[i - 1] = spares[i];
    spares.length--;
    spareBytes -= spare.byteLength;
    this.#spareAccount!.bytes -= spare.byteLength;
    return spare;
  }

  #reserve(size: number): number {
    const at = reserve(size);
    if (this.#openArena === arena && this.#openEnd === at) {
      this.#openEnd = at + size;
    } else {
      this.#closeRegion();
      this.#openArena = arena;
      this.#openStart = at;
      this.#openEnd = at + size;
    }
    this.#size += size;
    return at;
  }

  #closeRegion(): void {
    if (this.#openArena !== null && this.#openEnd > this.#openStart) {
      this.#chunks.push(
        this.#openArena.subarray(this.#openStart, this.#openEnd),
      );
    }
    this.#openArena = null;
  }

  #writeHeader(
    buf: Uint8Array,
    at: number,
    opcode: number,
    fin: boolean,
    rsv: number,
    length: number,
  ): void {
    buf[at] = (fin ? 0x80 : 0) | rsv | opcode;
    const maskBit = this.#mask ? 0x80 : 0;
    let i = at + 2;
    if (length < 126) {
      buf[at + 1] = maskBit | length;
    } else if (length < 0x10000) {
      buf[at + 1] = maskBit | 126;
      buf[i++] = length >>> 8;
      buf[i++] = length & 0xff;
    } else {
      buf[at + 1] = maskBit | 127;
      const high = Math.floor(length / 0x100000000);
      buf[i++] = high >>> 24;
      buf[i++] = (high >>> 16) & 0xff;
      buf[i++] = (high >>> 8) & 0xff;
      buf[i++] = high & 0xff;
      buf[i++] = length >>> 24;
      buf[i++] = (length >>> 16) & 0xff;
      buf[i++] = (length >>> 8) & 0xff;
      buf[i++] = length & 0xff;
    }
    if (this.#mask) {
      this.#generateMaskKey(this.#key);
      buf.set(this.#key, i);
    }
  }

  #maskRegion(buffer: Uint8Array, at: number, length: number): void {
    applyMask(buffer.subarray(at, at + length), this.#key);
  }

  #push(chunk: Uint8Array, encoded = false): void {
    this.#closeRegion();
    if (encoded) (this.#encoded ??= []).push(this.#chunks.length);
    this.#chunks.push(chunk);
    this.#size += chunk.length;
  }
}

/**
 * Throws for a frame RFC 6455 does not allow (§5.2, §5.5): an opcode that is
 * not 0-2 or 8-10, RSV bits other than RSV1-3, or a control frame that is
 * fragmented or longer than 125 bytes.
 */
function checkFrame(
  opcode: number,
  fin: boolean,
  rsv: number,
  length: number,
): void {
  if (!KNOWN_OPCODES.has(opcode)) {
    throw new RangeError(
      `Cannot write a frame: the opcode must be 0-2 or 8-10 (RFC 6455 §5.2), got ${
        shown(opcode)
      }`,
    );
  }
  if ((rsv & ~0x70) !== 0) {
    throw new RangeError(
      `Cannot write a frame: rsv must be a mask of RSV1-RSV3 (0x40, 0x20, 0x10), got ${
        shown(rsv)
      }`,
    );
  }
  if (opcode >= 8 && (!fin || length > 125)) {
    throw new RangeError(
      `Cannot write a frame: a control frame must be whole (fin) and at most 125 bytes (RFC 6455 §5.5), got ${
        fin ? `${length} bytes` : "fin false"
      }`,
    );
  }
}

const KNOWN_OPCODES: ReadonlySet<number> = new Set([0, 1, 2, 8, 9, 10]);

/** The header size for a payload of `length` bytes (RFC 6455 §5.2). */
function headerSize(length: number, masked: boolean): number {
  return (length < 126 ? 2 : length < 0x10000 ? 4 : 10) + (masked ? 4 : 0);
}
