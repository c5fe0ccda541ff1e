import { positiveInteger } from "./_checks.ts";
import { OPCODE } from "./frame_parser.ts";
import { PROTOCOL_ERROR_CODE, ProtocolError } from "./errors.ts";
import { free } from "./_bytes.ts";

/**
 * A complete message: text as a string, binary as bytes the receiver owns.
 *
 * @example Text arrives as a string, binary as bytes
 * ```ts
 * import { connect, type Message, serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const describe = (message: Message) =>
 *   typeof message === "string" ? `text "${message}"` : `binary, ${message.length} bytes`;
 * await using server = serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
 *   await socket.send("hi");
 *   await socket.send(new Uint8Array(3));
 * });
 * const socket = await connect(`ws://127.0.0.1:${server.addr.port}`);
 * const messages: Message[] = await Array.fromAsync(socket);
 * assert.deepEqual(messages.map(describe), ['text "hi"', "binary, 3 bytes"]);
 * ```
 */
export type Message = string | Uint8Array<ArrayBuffer>;

/**
 * Options of {@linkcode MessageAssembler}.
 *
 * @example A message too large is refused before its payload arrives
 * ```ts
 * import { MessageAssembler, type MessageAssemblerOptions, OPCODE } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const options: MessageAssemblerOptions = { maxPayload: 16, maxFragments: 2 };
 * const assembler = new MessageAssembler(options);
 * assert.throws(() => assembler.startFrame(OPCODE.Binary, true, 17), { code: "MESSAGE_TOO_BIG" });
 * ```
 */
export interface MessageAssemblerOptions {
  /** The largest message accepted, in bytes. */
  maxPayload: number;
  /** The most frames one message may be split into. */
  maxFragments: number;
  /**
   * Inflates a compressed message (RSV1 set on its first frame, RFC 7692
   * §6) to at most `maxLength` bytes. Without it, RSV1 is never accepted.
   */
  inflate?: (data: Uint8Array, maxLength: number) => Uint8Array<ArrayBuffer>;
  /**
   * Streams messages instead of assembling them: receives each message's
   * start, its pieces as they arrive (text decoded, bytes copied) and its
   * end. A compressed message is inflated whole, then streamed as one piece.
   */
  onStream?: (event: MessageStreamEvent) => void;
}

/**
 * One step of a streamed message; see {@linkcode MessageAssemblerOptions.onStream}.
 *
 * @example The steps of a streamed text message
 * ```ts
 * import { MessageAssembler, type MessageStreamEvent, OPCODE } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const events: MessageStreamEvent[] = [];
 * const assembler = new MessageAssembler({ maxPayload: 1024, maxFragments: 8, onStream: (e) => events.push(e) });
 * assembler.startFrame(OPCODE.Text, true, 5);
 * assembler.append(new TextEncoder().encode("Hello"));
 * assembler.endFrame();
 * assert.deepEqual(events, [
 *   { type: "stream-start", binary: false },
 *   { type: "stream-data", data: "Hello" },
 *   { type: "stream-end" },
 * ]);
 * ```
 */
export type MessageStreamEvent =
  | { type: "stream-start"; binary: boolean }
  | { type: "stream-data"; data: string | Uint8Array<ArrayBuffer> }
  | { type: "stream-end" };

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const MIN_BUFFER = 4096;
const RSV1 = 0x40;

/**
 * Turns data frames into messages (RFC 6455 §5.4): enforces the continuation
 * rules, `maxPayload` and `maxFragments` when a frame *starts* (before its
 * payload is stored), and checks text as UTF-8 as each piece arrives, so an
 * invalid sequence fails the connection at once rather than at message end.
 * A compressed message (RSV1) is inflated, and its text checked, when its
 * last frame has arrived: its fragments are stored compressed until then.
 *
 * Memory grows with the bytes actually received, never with a declared
 * length: a buffer at most doubles, and is capped at the message's final
 * size once the last frame has announced it.
 *
 * @example Two fragments make one text message
 * ```ts
 * import { MessageAssembler, OPCODE } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const assembler = new MessageAssembler({ maxPayload: 1024, maxFragments: 8 });
 * assembler.startFrame(OPCODE.Text, false, 3);
 * assembler.append(new TextEncoder().encode("Hel"));
 * assert.equal(assembler.endFrame(), undefined);
 * assembler.startFrame(OPCODE.Continuation, true, 2);
 * assembler.append(new TextEncoder().encode("lo"));
 * assert.equal(assembler.endFrame(), "Hello");
 * ```
 */
export class MessageAssembler {
  readonly #maxPayload: number;
  readonly #maxFragments: number;
  readonly #inflate: MessageAssemblerOptions["inflate"];
  readonly #onStream: MessageAssemblerOptions["onStream"];
  #inMessage = false;
  // A compressed message is stored as bytes and inflated at its end.
  #compressed = false;
  #isText = false;
  #fin = false;
  #fragments = 0;
  #size = 0;
  #frameLength = 0;
  #frameReceived = 0;
  // Text: decoded so far, and the streaming decoder once one is needed.
  #text = "";
  #decoder: TextDecoder | null = null;
  // Binary: the bytes so far.
  #buffer: Uint8Array<ArrayBuffer> | null = null;
  #result: Message | undefined = undefined;

  /**
   * Creates an assembler for one connection.
   *
   * @param options The message limits.
   */
  constructor(options: MessageAssemblerOptions) {
    this.#maxPayload = positiveInteger("maxPayload", options?.maxPayload);
    this.#maxFragments = positiveInteger("maxFragments", options?.maxFragments);
    this.#inflate = options.inflate;
    this.#onStream = options.onStream;
  }

  /** Whether a fragmented message is waiting for its continuation. */
  get inMessage(): boolean {
    return this.#inMessage;
  }

  /**
   * Payload bytes of the message still arriving that this assembler holds,
   * as received (a compressed message compressed); 0 between messages. The
   * pieces of a streamed message are handed on as they arrive, so they
   * count here only when compressed (inflated whole at its end).
   *
   * @example A message half received
   * ```ts
   * import { MessageAssembler, OPCODE } from "@duplex/ws";
   * import assert from "node:assert/strict";
   *
   * const assembler = new MessageAssembler({ maxPayload: 1024, maxFragments: 8 });
   * assembler.startFrame(OPCODE.Binary, true, 100);
   * assembler.append(new Uint8Array(40));
   * assert.equal(assembler.partialMessageBytes, 40);
   * assembler.append(new Uint8Array(60));
   * assembler.endFrame();
   * assert.equal(assembler.partialMessageBytes, 0);
   * ```
   */
  get partialMessageBytes(): number {
    return this.#inMessage && (this.#compressed || this.#onStream === undefined)
      ? this.#size
      : 0;
  }

  /**
   * Starts a data frame (opcode text, binary or continuation).
   *
   * @param opcode The frame's opcode.
   * @param fin Whether the frame ends its message.
   * @param length The declared payload length.
   * @param rsv The frame's RSV bits (0x40: RSV1, a compressed message).
   * @throws {ProtocolError} `UNEXPECTED_CONTINUATION`, `EXPECTED_CONTINUATION`,
   * `RESERVED_BITS`, `MESSAGE_TOO_BIG` or `TOO_MANY_FRAGMENTS`.
   */
  startFrame(opcode: number, fin: boolean, length: number, rsv = 0): void {
    // "the RSV1 bit is set only on the first frame" of a compressed
    // message, and only when the extension is in use (RFC 7692 §6).
    if (
      rsv !== 0 &&
      (rsv !== RSV1 || this.#inflate === undefined ||
        opcode === OPCODE.Continuation)
    ) {
      throw new ProtocolError(
        PROTOCOL_ERROR_CODE.ReservedBits,
        opcode === OPCODE.Continuation
          ? "RSV1 is set on a continuation frame (RFC 7692 §6)"
          : `Frame has reserved bits 0x${
            rsv.toString(16)
          } set without a negotiated extension`,
      );
    }
    if (opcode === OPCODE.Continuation) {
      if (!this.#inMessage) {
        throw new ProtocolError(
          PROTOCOL_ERROR_CODE.UnexpectedContinuation,
          "Continuation frame without a message to continue (RFC 6455 §5.4)",
        );
      }
    } else {
      if (this.#inMessage) {
        throw new ProtocolError(
          PROTOCOL_ERROR_CODE.ExpectedContinuation,
          "New data frame inside a fragmented message (RFC 6455 §5.4)",
        );
      }
      this.#inMessage = true;
      this.#isText = opcode === OPCODE.Text;
      this.#compressed = rsv === RSV1;
      this.#fragments = 0;
      this.#size = 0;
      if (this.#onStream && !this.#compressed) {
        this.#onStream({ type: "stream-start", binary: !this.#isText });
      }
    }
    if (++this.#fragments > this.#maxFragments) {
      throw new ProtocolError(
        PROTOCOL_ERROR_CODE.TooManyFragments,
        `Message has more than ${this.#maxFragments} fragments (maxFragments)`,
      );
    }
    if (this.#size + length > this.#maxPayload) {
      throw new ProtocolError(
        PROTOCOL_ERROR_CODE.MessageTooBig,
        `Message of at least ${
          this.#size + length
        } bytes exceeds maxPayload (${this.#maxPayload})`,
      );
    }
    this.#fin = fin;
    this.#frameLength = length;
    this.#frameReceived = 0;
  }

  /**
   * Adds payload bytes of the current frame. `data` is not kept.
   *
   * @param data Unmasked payload bytes.
   * @throws {ProtocolError} `INVALID_UTF8` as soon as text stops being UTF-8.
   */
  append(data: Uint8Array): void {
    const whole = this.#fin && this.#fragments === 1 &&
      data.length === this.#frameLength;
    this.#frameReceived += data.length;
    this.#size += data.length;
    if (this.#compressed) this.#store(data);
    else if (this.#onStream) this.#streamPiece(data);
    else if (this.#isText) {
      if (whole) this.#result = decodeWhole(data);
      else {
        this.#decoder ??= new TextDecoder("utf-8", {
          fatal: true,
          ignoreBOM: true,
        });
        this.#text += decode(this.#decoder, data, true);
      }
    } else if (whole) this.#result = data.slice();
    else this.#store(data);
  }

  /**
   * Ends the current frame.
   *
   * @returns The message when this frame completed one, else `undefined`.
   * @throws {ProtocolError} `INVALID_UTF8` when text ends mid-sequence.
   */
  endFrame(): Message | undefined {
    if (!this.#fin) return undefined;
    this.#inMessage = false;
    if (this.#onStream) {
      this.#endStream();
      return undefined;
    }
    let message = this.#result;
    this.#result = undefined;
    if (message !== undefined) return message;
    if (this.#compressed) return this.#inflateMessage();
    if (this.#isText) {
      message = this.#decoder === null
        ? this.#text
        : this.#text + decode(this.#decoder, new Uint8Array(0), false);
      this.#text = "";
      this.#decoder = null;
      return message;
    }
    const buffer = this.#buffer;
    this.#buffer = null;
    if (buffer === null) return new Uint8Array(0);
    if (buffer.length === this.#size) return buffer;
    const bytes = buffer.slice(0, this.#size);
    free(buffer.buffer); // only this assembler ever saw it
    return bytes;
  }

  /**
   * Drops the message still arriving, if any: it will never be completed
   * (the transport ended, the peer closed or broke the protocol), and what
   * it holds is let go now rather than with the assembler.
   *
   * @example A message cut short
   * ```ts
   * import { MessageAssembler, OPCODE } from "@duplex/ws";
   * import assert from "node:assert/strict";
   *
   * const assembler = new MessageAssembler({ maxPayload: 1024, maxFragments: 8 });
   * assembler.startFrame(OPCODE.Binary, false, 100);
   * assembler.append(new Uint8Array(100));
   * assert.equal(assembler.partialMessageBytes, 100);
   * assembler.discard();
   * assert.equal(assembler.partialMessageBytes, 0);
   * assert.equal(assembler.inMessage, false);
   * ```
   */
  discard(): void {
    this.#inMessage = false;
    this.#fin = false;
    this.#size = 0;
    this.#text = "";
    this.#decoder = null;
    this.#result = undefined;
    const buffer = this.#buffer;
    this.#buffer = null;
    if (buffer !== null) free(buffer.buffer); // only this assembler saw it
  }

  #streamPiece(data: Uint8Array): void {
    let piece: string | Uint8Array<ArrayBuffer>;
    if (this.#isText) {
      this.#decoder ??= new TextDecoder("utf-8", {
        fatal: true,
        ignoreBOM: true,
      });
      piece = decode(this.#decoder, data, true);
      if (piece === "") return; // an incomplete sequence, held for later
    } else piece = data.slice();
    this.#onStream!({ type: "stream-data", data: piece });
  }

  #endStream(): void {
    const onStream = this.#onStream!;
    if (this.#compressed) {
      const message = this.#inflateMessage();
      onStream({ type: "stream-start", binary: typeof message !== "string" });
      onStream({ type: "stream-data", data: message });
    } else if (this.#isText && this.#decoder !== null) {
      const rest = decode(this.#decoder, new Uint8Array(0), false);
      this.#decoder = null;
      if (rest !== "") onStream({ type: "stream-data", data: rest });
    }
    onStream({ type: "stream-end" });
  }

  #inflateMessage(): Message {
    const buffer = this.#buffer;
    this.#buffer = null;
    const bytes = this.#inflate!(
      buffer === null ? new Uint8Array(0) : buffer.subarray(0, this.#size),
      this.#maxPayload,
    );
    return this.#isText ? decode(strictUtf8, bytes, false) : bytes;
  }

  #store(data: Uint8Array): void {
    const start = this.#size - data.length;
    let buffer = this.#buffer;
    if (buffer === null || buffer.length < this.#size) {
      // Grow with what arrived, never with what was declared; cap at the
      // final size once the last frame has announced it.
      const limit = this.#fin
        ? start - this.#frameReceived + data.length + this.#frameLength
        : this.#maxPayload;
      const capacity = Math.min(
        Math.max(this.#size * 2, (buffer?.length ?? 0) * 2, MIN_BUFFER),
        limit,
      );
      const grown = new Uint8Array(capacity);
      if (buffer !== null) {
        grown.set(buffer.subarray(0, start));
        free(buffer.buffer); // no growth steps left behind as garbage
      }
      this.#buffer = buffer = grown;
    }
    buffer.set(data, start);
  }
}

// Short text is mostly ASCII, which needs no validation beyond its bytes
// being under 0x80; a loop in JavaScript beats a call into the decoder up to
// about this size.
const SHORT_TEXT = 64;

function decodeWhole(data: Uint8Array): string {
  if (data.length <= SHORT_TEXT) {
    let high = 0;
    for (let i = 0; i < data.length; i++) high |= data[i];
    if (high < 0x80) {
      return String.fromCharCode.apply(null, data as unknown as number[]);
    }
  }
  return decode(strictUtf8, data, false);
}

// Options objects cost an allocation per call, twice (the object and its
// WebIDL conversion): the last piece is decoded without one.
const STREAM = { stream: true };

function decode(decoder: TextDecoder, data: Uint8Array, stream: boolean) {
  try {
    return stream ? decoder.decode(data, STREAM) : decoder.decode(data);
  } catch {
    throw new ProtocolError(
      PROTOCOL_ERROR_CODE.InvalidUtf8,
      "Text message is not valid UTF-8 (RFC 6455 §8.1)",
    );
  }
}
