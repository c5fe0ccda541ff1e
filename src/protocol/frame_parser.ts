import { role } from "./_checks.ts";
import { applyMask } from "./mask.ts";
import { PROTOCOL_ERROR_CODE, ProtocolError } from "./errors.ts";

/**
 * Frame opcodes from RFC 6455 §5.2.
 *
 * @example Usage
 * ```ts
 * import { OPCODE } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * assert.equal(OPCODE.Text, 1);
 * ```
 */
export const OPCODE = {
  /** Continues a fragmented message. */
  Continuation: 0x0,
  /** The first frame of a text message. */
  Text: 0x1,
  /** The first frame of a binary message. */
  Binary: 0x2,
  /** Starts or completes the closing handshake. */
  Close: 0x8,
  /** Asks the peer for a pong. */
  Ping: 0x9,
  /** Answers a ping, or a one-way heartbeat. */
  Pong: 0xa,
} as const;

/**
 * One of the {@linkcode OPCODE} values.
 *
 * @example Naming the frames a parser finds
 * ```ts
 * import { FrameParser, OPCODE, type Opcode } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const names = new Map<Opcode, string>(Object.entries(OPCODE).map(([name, opcode]) => [opcode, name]));
 * const seen: (string | undefined)[] = [];
 * new FrameParser({ role: "client" }).parse(new Uint8Array([0x89, 0x00, 0x8a, 0x00]), {
 *   onFrameStart: (opcode) => void seen.push(names.get(opcode as Opcode)),
 *   onFramePayload: () => {},
 *   onFrameEnd: () => {},
 * });
 * assert.deepEqual(seen, ["Ping", "Pong"]);
 * ```
 */
export type Opcode = typeof OPCODE[keyof typeof OPCODE];

/**
 * Receives the frames a {@linkcode FrameParser} finds, in order. Calls for one
 * frame are always `onFrameStart`, zero or more `onFramePayload`, `onFrameEnd`.
 * A callback may throw a {@linkcode ProtocolError} to reject the frame; the
 * parser is then unusable.
 *
 * @example A handler that keeps each frame's payload
 * ```ts
 * import { type FrameHandler, FrameParser } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * class Frames implements FrameHandler {
 *   payloads: number[][] = [];
 *   onFrameStart() {
 *     this.payloads.push([]);
 *   }
 *   onFramePayload(data: Uint8Array) {
 *     this.payloads.at(-1)!.push(...data); // copied: the view is valid during the call only
 *   }
 *   onFrameEnd() {}
 * }
 * const frames = new Frames();
 * const parser = new FrameParser({ role: "client" });
 * parser.parse(new Uint8Array([0x82, 0x03, 1, 2]), frames); // a frame split across two chunks
 * parser.parse(new Uint8Array([3]), frames);
 * assert.deepEqual(frames.payloads, [[1, 2, 3]]);
 * ```
 */
export interface FrameHandler {
  /** A validated frame header; no payload byte has been read yet. */
  onFrameStart(opcode: number, fin: boolean, rsv: number, length: number): void;
  /**
   * Unmasked payload bytes: a view into the parsed chunk, valid only during
   * this call. Copy what you keep.
   */
  onFramePayload(data: Uint8Array): void;
  /**
   * The last payload byte of the frame has been delivered. Returning `true`
   * stops the parse after this frame (see {@linkcode FrameParser.prototype.parse}).
   */
  onFrameEnd(): boolean | void;
}

/**
 * Options of {@linkcode FrameParser}.
 *
 * @example Allowing RSV1 once permessage-deflate is agreed
 * ```ts
 * import { FrameParser, type FrameParserOptions } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const ignore = { onFrameStart() {}, onFramePayload() {}, onFrameEnd() {} };
 * const compressed = new Uint8Array([0xc1, 0x00]); // FIN, RSV1, text, empty
 * const plain: FrameParserOptions = { role: "client" };
 * const deflate: FrameParserOptions = { role: "client", allowedRsv: 0x40 };
 * assert.throws(() => new FrameParser(plain).parse(compressed, ignore), { code: "RESERVED_BITS" });
 * assert.equal(new FrameParser(deflate).parse(compressed, ignore), 2);
 * ```
 */
export interface FrameParserOptions {
  /**
   * Which side parses: a server requires masked frames, a client unmasked
   * ones (RFC 6455 §5.1).
   */
  role: "server" | "client";
  /**
   * RSV bits a negotiated extension allows, as a mask of the first header
   * byte (`0x40` for RSV1, used by permessage-deflate).
   * @default {0}
   */
  allowedRsv?: number;
}

// Parser states; integers keep the hot switch monomorphic.
const HEADER = 0;
const PAYLOAD = 1;

/**
 * An incremental RFC 6455 frame parser: feed it chunks of any size (one byte
 * at a time included) and it reports frames to a {@linkcode FrameHandler}.
 *
 * - Every header is validated before any payload byte is delivered, so a
 *   declared length never causes an allocation here.
 * - Payload bytes are unmasked in place in the chunk given to
 *   {@linkcode FrameParser.prototype.parse} and handed out as views of it.
 * - A frame split across chunks arrives as several `onFramePayload` calls.
 *
 * @example Parsing the RFC 6455 §5.7 masked "Hello"
 * ```ts
 * import { FrameParser } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const parts: string[] = [];
 * const parser = new FrameParser({ role: "server" });
 * parser.parse(
 *   new Uint8Array([0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]),
 *   {
 *     onFrameStart: (opcode, fin, _rsv, length) => parts.push(`${opcode} ${fin} ${length}`),
 *     onFramePayload: (data) => parts.push(new TextDecoder().decode(data)),
 *     onFrameEnd: () => {
 *       parts.push("end");
 *     },
 *   },
 * );
 * assert.deepEqual(parts, ["1 true 5", "Hello", "end"]);
 * ```
 */
export class FrameParser {
  #state = HEADER;
  readonly #expectMask: boolean;
  readonly #allowedRsv: number;
  // Header bytes split across chunks are gathered here (at most 14); the
  // masking key follows them in the same buffer (see the constructor).
  readonly #header: Uint8Array;
  #headerLength = 0;
  // The frame being read.
  #remaining = 0;
  #masked = false;
  readonly #maskKey: Uint8Array;
  #maskOffset = 0;
  // The handler asked to stop after the frame that just ended.
  #stop = false;
  // The error that put the parser out of sync with the stream, if any.
  #failed = false;
  #error: unknown = null;
  // A parse() is under way (a handler calling parse() is refused).
  #parsing = false;

  /**
   * Creates a parser for one side of one connection.
   *
   * @param options Which side parses, and the RSV bits an extension allows.
   */
  constructor(options: FrameParserOptions) {
    this.#expectMask = role(options) === "server";
    this.#allowedRsv = options.allowedRsv ?? 0;
    // One allocation for both: in Deno each typed array's memory takes
    // microseconds to allocate and collect (bench/README.md, "Handshakes").
    const scratch = new Uint8Array(18);
    this.#header = scratch.subarray(0, 14);
    this.#maskKey = scratch.subarray(14);
  }

  /**
   * Payload bytes of the frame in progress not parsed yet; 0 between frames.
   * A driver may size its next read by it.
   */
  get payloadRemaining(): number {
    return this.#state === PAYLOAD ? this.#remaining : 0;
  }

  /** Whether a frame has begun to arrive (part of its header, at least) and not ended. */
  get inFrame(): boolean {
    return this.#state === PAYLOAD || this.#headerLength > 0;
  }

  /**
   * Parses every complete header and all available payload in `chunk`, or
   * stops after a frame whose `onFrameEnd()` returned `true`. Payload bytes
   * are unmasked in place: `chunk` must be writable and is not kept after
   * the call returns.
   *
   * @param chunk The next bytes from the peer.
   * @param handler Receives the frames.
   * @returns How many bytes of `chunk` were parsed: all of them, unless the
   * handler stopped it; parse the rest later.
   * @throws {ProtocolError} When a header breaks RFC 6455, or when the
   * handler throws one; then again on every later call (the stream is out
   * of sync). Whatever else the handler throws, likewise.
   * @throws {TypeError} When called from inside a handler's callback.
   */
  parse(chunk: Uint8Array, handler: FrameHandler): number {
    if (this.#failed) throw this.#error;
    if (this.#parsing) {
      throw new TypeError(
        "Cannot parse: a parse() is under way (called from a FrameHandler callback); parse the next bytes after it returns",
      );
    }
    this.#parsing = true;
    try {
      return this.#parse(chunk, handler);
    } catch (error) {
      this.#failed = true;
      this.#error = error;
      throw error;
    } finally {
      this.#parsing = false;
    }
  }

  #parse(chunk: Uint8Array, handler: FrameHandler): number {
    const end = chunk.length;
    let pos = 0;
    while (pos < end) {
      if (this.#state === HEADER) {
        pos = this.#readHeader(chunk, pos, handler);
      } else {
        const take = Math.min(this.#remaining, end - pos);
        const data = chunk.subarray(pos, pos + take);
        if (this.#masked) {
          applyMask(data, this.#maskKey, this.#maskOffset);
          this.#maskOffset += take;
        }
        pos += take;
        this.#remaining -= take;
        handler.onFramePayload(data);
        if (this.#remaining === 0) {
          this.#state = HEADER;
          this.#stop = handler.onFrameEnd() === true;
        }
      }
      if (this.#stop) {
        this.#stop = false;
        return pos;
      }
    }
    return end;
  }

  /** Reads (the rest of) a header starting at `pos`; returns the new position. */
  #readHeader(chunk: Uint8Array, pos: number, handler: FrameHandler): number {
    let bytes = chunk;
    let start = pos;
    let available = chunk.length - pos;
    if (this.#headerLength > 0) {
      // Slow path: continue a header that began in an earlier chunk.
      const needed = Math.min(14 - this.#headerLength, available);
      this.#header.set(chunk.subarray(pos, pos + needed), this.#headerLength);
      bytes = this.#header;
      start = 0;
      available = this.#headerLength + needed;
    }
    const size = available >= 2 ? headerSize(bytes[start + 1]) : 14;
    if (available < size) {
      // Incomplete: keep what we have and wait for more.
      if (bytes === chunk) this.#header.set(chunk.subarray(pos), 0);
      else this.#header.set(chunk.subarray(pos), this.#headerLength);
      this.#headerLength += chunk.length - pos;
      return chunk.length;
    }
    const consumed = bytes === chunk ? size : size - this.#headerLength;
    this.#headerLength = 0;
    this.#startFrame(bytes, start, size, handler);
    return pos + consumed;
  }

  #startFrame(b: Uint8Array, i: number, size: number, handler: FrameHandler) {
    const b0 = b[i], b1 = b[i + 1];
    const fin = (b0 & 0x80) !== 0;
    const rsv = b0 & 0x70;
    const opcode = b0 & 0x0f;
    const masked = (b1 & 0x80) !== 0;
    let length = b1 & 0x7f;
    if (length === 126) {
      length = (b[i + 2] << 8) | b[i + 3];
    } else if (length === 127) {
      const high = ((b[i + 2] << 24) | (b[i + 3] << 16) | (b[i + 4] << 8) |
        b[i + 5]) >>> 0;
      if (high >= 0x80000000) {
        throw new ProtocolError(
          PROTOCOL_ERROR_CODE.InvalidLength,
          "Frame length has its most significant bit set (RFC 6455 §5.2)",
        );
      }
      const low = ((b[i + 6] << 24) | (b[i + 7] << 16) | (b[i + 8] << 8) |
        b[i + 9]) >>> 0;
      // 2^53 bytes or more, not even countable exactly in a number, is too
      // big: said once the frame's other rules are checked (a control frame
      // that long is a protocol error, 1002).
      length = high >= 0x200000 ? Infinity : high * 0x100000000 + low;
    }
    if ((rsv & ~this.#allowedRsv) !== 0) {
      throw new ProtocolError(
        PROTOCOL_ERROR_CODE.ReservedBits,
        `Frame has reserved bits 0x${
          rsv.toString(16)
        } set without a negotiated extension`,
      );
    }
    if (opcode >= 0x8) {
      if (opcode > 0xa) throw reservedOpcode(opcode);
      if (!fin) {
        throw new ProtocolError(
          PROTOCOL_ERROR_CODE.FragmentedControlFrame,
          "Control frames must not be fragmented (RFC 6455 §5.5)",
        );
      }
      if (length > 125) {
        throw new ProtocolError(
          PROTOCOL_ERROR_CODE.ControlFrameTooLong,
          `Control frame payload is ${length} bytes; the limit is 125 (RFC 6455 §5.5)`,
        );
      }
    } else if (opcode > 0x2) {
      throw reservedOpcode(opcode);
    }
    if (masked !== this.#expectMask) {
      throw masked
        ? new ProtocolError(
          PROTOCOL_ERROR_CODE.MaskedFrame,
          "A server must not mask frames (RFC 6455 §5.1)",
        )
        : new ProtocolError(
          PROTOCOL_ERROR_CODE.UnmaskedFrame,
          "A client must mask every frame (RFC 6455 §5.1)",
        );
    }
    if (length === Infinity) {
      throw new ProtocolError(
        PROTOCOL_ERROR_CODE.MessageTooBig,
        "Frame length is 2^53 bytes or more",
      );
    }
    if (masked) {
      const k = i + size - 4;
      this.#maskKey[0] = b[k];
      this.#maskKey[1] = b[k + 1];
      this.#maskKey[2] = b[k + 2];
      this.#maskKey[3] = b[k + 3];
      this.#maskOffset = 0;
    }
    this.#masked = masked;
    this.#remaining = length;
    handler.onFrameStart(opcode, fin, rsv, length);
    if (length === 0) this.#stop = handler.onFrameEnd() === true;
    else this.#state = PAYLOAD;
  }
}

/** The size of a frame header, from its second byte (RFC 6455 §5.2). */
function headerSize(b1: number): number {
  const length = b1 & 0x7f;
  return 2 + (length === 126 ? 2 : length === 127 ? 8 : 0) +
    ((b1 & 0x80) !== 0 ? 4 : 0);
}

function reservedOpcode(opcode: number): ProtocolError {
  return new ProtocolError(
    PROTOCOL_ERROR_CODE.ReservedOpcode,
    `Opcode 0x${opcode.toString(16)} is reserved (RFC 6455 §5.2)`,
  );
}
