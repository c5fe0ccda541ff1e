import { shown } from "./_describe.ts";
import type * as Zlib from "node:zlib";
import { PROTOCOL_ERROR_CODE, ProtocolError } from "./errors.ts";
import { concat } from "./_bytes.ts";
import type { PerMessageDeflateParams } from "./permessage_deflate.ts";

let zlibModule: typeof Zlib | undefined;

/**
 * `node:zlib`, loaded on first use: servers that never compress skip its
 * startup cost (~30 ms, ~6 MB), as a static import would not.
 */
function zlib(): typeof Zlib {
  return zlibModule ??= process.getBuiltinModule("node:zlib");
}

/** `zlib.constants.Z_SYNC_FLUSH`. */
const Z_SYNC_FLUSH = 2;
// "Append 4 octets of 0x00 0x00 0xff 0xff to the tail end of the payload
// of the message" before inflating (RFC 7692 §7.2.2).
const TAIL = new Uint8Array([0x00, 0x00, 0xff, 0xff]);

/**
 * Inflates one compressed message (RFC 7692 §7.2.2) without context
 * takeover: no state is kept between messages.
 *
 * @param data The compressed payload of the whole message.
 * @param maxLength The most bytes the message may inflate to; inflation
 * stops as soon as it would exceed it.
 * @returns The message bytes.
 * @throws {ProtocolError} `MESSAGE_TOO_BIG` (1009) past `maxLength`,
 * `INVALID_COMPRESSED_DATA` (1007) for data that is not raw DEFLATE.
 * @throws {RangeError} When `maxLength` is not a positive integer.
 *
 * @example Inflating the RFC 7692 §7.2.3.1 "Hello"
 * ```ts
 * import { inflateMessage } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const bytes = inflateMessage(new Uint8Array([0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]), 1024);
 * assert.equal(new TextDecoder().decode(bytes), "Hello");
 * ```
 */
export function inflateMessage(
  data: Uint8Array,
  maxLength: number,
): Uint8Array<ArrayBuffer> {
  checkMaxLength(maxLength);
  const input = new Uint8Array(data.length + 4);
  input.set(data);
  input.set(TAIL, data.length);
  const output = inflateRaw(input, maxLength, maxLength);
  // zlib hands back a view of its 16 KiB (or larger) output chunk: a
  // small message kept by the application would pin all of it.
  return output.byteOffset === 0 && output.length === output.buffer.byteLength
    ? output
    : output.slice();
}

/**
 * Inflates messages compressed with context takeover (RFC 7692 §7.2.2):
 * "the LZ77 sliding window used to decompress the previous message" goes on
 * into the next, so a message may refer back to the ones before it. The
 * state kept between messages is that window alone: the last
 * `2^windowBits` bytes inflated (32 KiB at most), no zlib stream. Each
 * message is inflated behind a stored DEFLATE block holding the window
 * (RFC 1951 §3.2.4), which is what the window is to an inflater; every
 * message begins on a byte boundary, as the sender's sync flush ended the
 * one before. For an 8-bit window 512 bytes are kept: zlib, which most
 * senders use, has no smaller window (before 1.2.9 it took 8 for 9).
 *
 * Messages must be inflated in the order they arrived, each exactly once,
 * and only compressed ones (RSV1 set): an uncompressed message is not part
 * of the window. After an error the window is undefined: fail the
 * connection, as the error says.
 *
 * @example A repeated message refers back to the first
 * ```ts
 * import { ContextDeflater, ContextInflater } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const deflater = new ContextDeflater({ serverMaxWindowBits: 15, level: 6, memLevel: 8 });
 * const inflater = new ContextInflater(15);
 * const text = new TextEncoder().encode('{"type":"tick","price":101.25}');
 * const first = await deflater.deflate(text);
 * const second = await deflater.deflate(text);
 * assert.ok(second.length < first.length);
 * assert.deepEqual(inflater.inflate(first, 1024), text);
 * assert.deepEqual(inflater.inflate(second, 1024), text);
 * deflater.close();
 * ```
 */
export class ContextInflater {
  readonly #windowSize: number;
  // The last #windowSize bytes inflated: what later messages may refer to.
  #window: Uint8Array<ArrayBuffer> = new Uint8Array(0);

  /**
   * Creates the inflater, with an empty window.
   *
   * @param windowBits The sender's negotiated window, 8-15 (RFC 7692
   * §7.1.2): `serverMaxWindowBits` when the server compresses,
   * `clientMaxWindowBits` when the client does.
   * @throws {RangeError} When `windowBits` is not an integer from 8 to 15.
   */
  constructor(windowBits: number) {
    if (!Number.isInteger(windowBits) || windowBits < 8 || windowBits > 15) {
      throw new RangeError(
        `Cannot inflate: "windowBits" must be an integer from 8 to 15, got ${
          shown(windowBits)
        }`,
      );
    }
    // zlib compresses within no less than 9 bits: a sender that agreed to
    // 8 may well have used 9 (zlib before 1.2.9 turned 8 into 9 silently).
    this.#windowSize = 1 << Math.max(9, windowBits);
  }

  /** How many bytes of earlier messages the window holds. */
  get windowLength(): number {
    return this.#window.length;
  }

  /**
   * Inflates the next compressed message.
   *
   * @param data The compressed payload of the whole message (not kept).
   * @param maxLength The most bytes the message may inflate to.
   * @returns The message bytes, a buffer the caller owns.
   * @throws {ProtocolError} `MESSAGE_TOO_BIG` (1009) past `maxLength`,
   * `INVALID_COMPRESSED_DATA` (1007) for data that is not raw DEFLATE or
   * refers back past the window.
   * @throws {RangeError} When `maxLength` is not a positive integer.
   */
  inflate(data: Uint8Array, maxLength: number): Uint8Array<ArrayBuffer> {
    checkMaxLength(maxLength);
    const window = this.#window;
    const before = window.length === 0 ? 0 : 5 + window.length;
    const input = new Uint8Array(before + data.length + 4);
    if (window.length > 0) {
      // A stored block, not final: 3 header bits 000 and padding to the
      // byte, LEN and its complement NLEN (little-endian), then the bytes.
      const length = window.length;
      input[1] = length & 0xff;
      input[2] = length >> 8;
      input[3] = ~length & 0xff;
      input[4] = (~length >> 8) & 0xff;
      input.set(window, 5);
    }
    input.set(data, before);
    input.set(TAIL, before + data.length);
    // The window is output too, so the limit grows by it; capped where
    // node:zlib's maxOutputLength stops (its buffer limit, 2^53 - 1 in
    // Deno), which no message reaches anyway.
    const output = inflateRaw(
      input,
      Math.min(window.length + maxLength, Number.MAX_SAFE_INTEGER),
      maxLength,
    );
    const keep = Math.min(this.#windowSize, output.length);
    this.#window = output.slice(output.length - keep);
    return output.slice(window.length);
  }
}

function checkMaxLength(maxLength: number): void {
  if (!Number.isSafeInteger(maxLength) || maxLength < 1) {
    throw new RangeError(
      `Cannot inflate: "maxLength" must be a positive integer, got ${
        shown(maxLength)
      }`,
    );
  }
}

/**
 * Inflates raw DEFLATE data that ends on a sync flush, to at most
 * `maxOutputLength` bytes; past it, the error names `maxPayload` as the
 * limit (the caller's own, without any window in front).
 */
function inflateRaw(
  input: Uint8Array,
  maxOutputLength: number,
  maxPayload: number,
): Uint8Array<ArrayBuffer> {
  try {
    const output = zlib().inflateRawSync(input, {
      finishFlush: Z_SYNC_FLUSH,
      maxOutputLength,
    });
    return new Uint8Array(
      output.buffer as ArrayBuffer,
      output.byteOffset,
      output.length,
    );
  } catch (error) {
    if ((error as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
      throw new ProtocolError(
        PROTOCOL_ERROR_CODE.MessageTooBig,
        `Compressed message inflates past maxPayload (${maxPayload})`,
      );
    }
    throw new ProtocolError(
      PROTOCOL_ERROR_CODE.InvalidCompressedData,
      `Compressed message is not valid raw DEFLATE data: ${
        (error as Error).message
      }`,
    );
  }
}

/**
 * The settings a sender compresses with: the negotiated parameters (as
 * `negotiatePerMessageDeflate()` or `ClientHandshake` give them) and the
 * role of the side that compresses. A server compresses within
 * `serverMaxWindowBits`, a client within `clientMaxWindowBits` (RFC 7692
 * §7.1.2): a client that used the server's window would send what a server
 * that limited the client's cannot inflate.
 *
 * @example One set of settings, compressing as either side
 * ```ts
 * import { type DeflateSettings, deflateMessage, inflateMessage } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * // As negotiated (a client limited to a 1 KiB window), at a faster level.
 * const settings: DeflateSettings = { serverMaxWindowBits: 15, clientMaxWindowBits: 10, level: 1, memLevel: 8 };
 * const text = new TextEncoder().encode("hello ".repeat(100));
 * const asServer = deflateMessage(text, settings); // within 2^15 bytes
 * const asClient = deflateMessage(text, settings, "client"); // within 2^10 bytes
 * assert.ok(asServer.length < text.length && asClient.length < text.length);
 * assert.deepEqual(inflateMessage(asClient, 1024), text);
 * ```
 */
export type DeflateSettings =
  & Pick<PerMessageDeflateParams, "serverMaxWindowBits" | "level" | "memLevel">
  & Partial<Pick<PerMessageDeflateParams, "clientMaxWindowBits">>;

/** The window a `role` compresses within; zlib has none below 9 bits. */
function senderWindowBits(
  params: DeflateSettings,
  role: "server" | "client",
): number {
  const bits = role === "client"
    ? params.clientMaxWindowBits
    : params.serverMaxWindowBits;
  if (bits === undefined || !Number.isInteger(bits) || bits < 9 || bits > 15) {
    throw new RangeError(
      `Cannot compress: the ${role}'s window must be 9 to 15 bits, got ${
        String(bits)
      }${
        bits === 8
          ? " (zlib cannot compress within 8 bits: send uncompressed, as RFC 7692 §6 allows)"
          : ""
      }`,
    );
  }
  return bits;
}

/**
 * Compresses one message without context takeover (RFC 7692 §7.2.1): the
 * output of a sync flush, with its `00 00 ff ff` tail removed. Stateless,
 * so one compressor serves every connection.
 *
 * @param data The message bytes.
 * @param params The negotiated window and the zlib settings.
 * @param role Who compresses: a server within `serverMaxWindowBits`, a
 * client within `clientMaxWindowBits`.
 * @returns The payload to send with RSV1 set.
 * @throws {RangeError} When that window is not 9 to 15 bits (a server may
 * ask a client for 8, which zlib cannot do: send uncompressed then).
 *
 * @example Compressing "Hello" (RFC 7692 §7.2.3.1)
 * ```ts
 * import { deflateMessage } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const bytes = deflateMessage(new TextEncoder().encode("Hello"), {
 *   serverMaxWindowBits: 15, level: 6, memLevel: 8,
 * });
 * assert.deepEqual(bytes, new Uint8Array([0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]));
 * ```
 */
export function deflateMessage(
  data: Uint8Array,
  params: DeflateSettings,
  role: "server" | "client" = "server",
): Uint8Array<ArrayBuffer> {
  const output = zlib().deflateRawSync(data, {
    finishFlush: Z_SYNC_FLUSH,
    windowBits: senderWindowBits(params, role),
    level: params.level,
    memLevel: params.memLevel,
  });
  return withoutTail(output);
}

/**
 * Compresses messages with context takeover (RFC 7692 §7.2.1): one
 * persistent raw deflate stream per connection, flushed at each message
 * end. Calls run one at a time, in order.
 *
 * @example A repeated message compresses to a back-reference
 * ```ts
 * import { ContextDeflater } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const deflater = new ContextDeflater({ serverMaxWindowBits: 15, level: 6, memLevel: 8 });
 * const text = new TextEncoder().encode("Hello, Hello, Hello");
 * const first = await deflater.deflate(text);
 * const second = await deflater.deflate(text);
 * assert.ok(second.length < first.length);
 * deflater.close();
 * ```
 */
export class ContextDeflater {
  readonly #options: Zlib.ZlibOptions;
  // Created by the first message: an idle connection holds no zlib stream
  // (window and hash tables, about 240 KiB of RSS).
  #stream: Zlib.DeflateRaw | null = null;
  #queue: Promise<unknown> = Promise.resolve();
  #chunks: Uint8Array[] = [];
  #closed = false;

  /**
   * Creates the deflater; its zlib stream is created with the first message.
   *
   * @param params The negotiated window and the zlib settings.
   * @param role Who compresses: a server within `serverMaxWindowBits`, a
   * client within `clientMaxWindowBits`.
   * @throws {RangeError} When that window is not 9 to 15 bits.
   */
  constructor(params: DeflateSettings, role: "server" | "client" = "server") {
    this.#options = {
      windowBits: senderWindowBits(params, role),
      level: params.level,
      memLevel: params.memLevel,
    };
  }

  /**
   * Compresses one message.
   *
   * @param data The message bytes, not modified, but read when the
   * messages queued before it are done: do not change them until the
   * returned promise settles (copy a buffer you reuse).
   * @returns The payload to send with RSV1 set.
   */
  deflate(data: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
    const result = this.#queue.then(() =>
      new Promise<Uint8Array<ArrayBuffer>>((resolve, reject) => {
        if (this.#closed) {
          reject(new Error("The deflate stream was closed"));
          return;
        }
        const stream = this.#stream ??= this.#open();
        stream.write(data, (error) => error && reject(error));
        stream.flush(Z_SYNC_FLUSH, () => {
          const chunks = this.#chunks;
          this.#chunks = [];
          // A stream closed mid-message flushes nothing: not a message.
          if (this.#closed) reject(new Error("The deflate stream was closed"));
          else {
            resolve(
              withoutTail(chunks.length === 1 ? chunks[0] : concat(chunks)),
            );
          }
        });
      })
    );
    this.#queue = result.catch(() => {});
    return result;
  }

  /** Frees the stream; pending and later `deflate()` calls reject. */
  close(): void {
    this.#closed = true;
    this.#stream?.close();
  }

  #open(): Zlib.DeflateRaw {
    const stream = zlib().createDeflateRaw(this.#options);
    stream.on("data", (chunk: Uint8Array) => this.#chunks.push(chunk));
    stream.on("error", () => {});
    return stream;
  }
}

function withoutTail(output: Uint8Array): Uint8Array<ArrayBuffer> {
  const end = output.length >= 4 && output[output.length - 4] === 0 &&
      output[output.length - 3] === 0 && output[output.length - 2] === 0xff &&
      output[output.length - 1] === 0xff
    ? output.length - 4
    : output.length;
  return new Uint8Array(output.buffer as ArrayBuffer, output.byteOffset, end);
}
