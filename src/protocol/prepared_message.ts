import { describe } from "./_describe.ts";
import { FrameWriter } from "./frame_writer.ts";
import { deflateMessage } from "./deflate_codec.ts";
import { attached, concat } from "./_bytes.ts";
import type { PerMessageDeflateParams } from "./permessage_deflate.ts";
import { OPCODE } from "./frame_parser.ts";

/**
 * A message framed once, to be sent to many sockets as the same bytes (a
 * broadcast): no per-recipient encoding or copying. Create it with
 * {@linkcode prepareMessage} and pass it to `socket.send()` or
 * `socket.trySend()`.
 *
 * A client socket must mask every frame, so it encodes `message` afresh.
 *
 * @example
 * ```ts
 * import { PreparedMessage } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const prepared = new PreparedMessage(new Uint8Array([1, 2, 3]));
 * assert.equal(prepared.size, 3);
 * assert.deepEqual(prepared.frame, new Uint8Array([0x82, 0x03, 1, 2, 3]));
 * ```
 */
export class PreparedMessage {
  /** The message as given (binary data: a copy of it). */
  readonly message: string | Uint8Array;
  /** The unmasked server frame; never modified. */
  readonly frame: Uint8Array;
  /** The message's size in bytes (UTF-8 for text). */
  readonly size: number;
  // Compressed frames, one per distinct compressor setting.
  #compressed: Map<string, Uint8Array> | undefined;

  /**
   * Frames `message`. Prefer {@linkcode prepareMessage}.
   *
   * @param message Text or binary data.
   */
  constructor(message: string | Uint8Array | ArrayBuffer) {
    // A copy: the caller may reuse its buffer, and the compressed frames,
    // made later, must hold the same bytes as this one.
    if (message instanceof ArrayBuffer) {
      message = new Uint8Array(attached(message, PREPARE).slice());
    } else if (message instanceof Uint8Array) {
      message = attached(message, PREPARE).slice();
    } else if (typeof message !== "string") {
      throw new TypeError(
        `Cannot prepare a message: it must be a string, Uint8Array or ArrayBuffer, got ${
          describe(message)
        }`,
      );
    }
    const writer = new FrameWriter();
    if (typeof message === "string") writer.writeText(OPCODE.Text, message);
    else writer.writeFrame(OPCODE.Binary, message);
    const chunks = writer.take();
    this.message = message;
    this.size = typeof message === "string"
      ? utf8.encode(message).length
      : message.length;
    // One buffer of its own, not a view that would pin the writer's arena.
    const only = chunks.length === 1 ? chunks[0] : null;
    this.frame = only !== null && only.byteLength === only.buffer.byteLength
      ? only
      : concat(chunks);
  }

  /**
   * The frame compressed for permessage-deflate without context takeover,
   * made once per distinct setting and shared by every socket using it.
   *
   * @param params The negotiated window and zlib settings.
   * @returns An unmasked frame with RSV1 set.
   */
  compressedFrame(
    params: Pick<
      PerMessageDeflateParams,
      "serverMaxWindowBits" | "level" | "memLevel"
    >,
  ): Uint8Array {
    const key =
      `${params.serverMaxWindowBits}:${params.level}:${params.memLevel}`;
    this.#compressed ??= new Map();
    let frame = this.#compressed.get(key);
    if (frame === undefined) {
      const bytes = typeof this.message === "string"
        ? utf8.encode(this.message)
        : this.message;
      const writer = new FrameWriter();
      writer.writeFrame(
        typeof this.message === "string" ? OPCODE.Text : OPCODE.Binary,
        deflateMessage(bytes, params),
        true,
        0x40,
      );
      frame = concat(writer.take());
      this.#compressed.set(key, frame);
    }
    return frame;
  }
}

/**
 * Frames a message once for sending to many sockets.
 *
 * @param message Text or binary data (copied).
 * @returns The prepared message.
 *
 * @example Usage
 * ```ts
 * import { prepareMessage } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const prepared = prepareMessage("Hello");
 * assert.deepEqual(prepared.frame, new Uint8Array([0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]));
 * ```
 */
export function prepareMessage(
  message: string | Uint8Array | ArrayBuffer,
): PreparedMessage {
  return new PreparedMessage(message);
}

const utf8 = new TextEncoder();
const PREPARE = "Cannot prepare the message";
