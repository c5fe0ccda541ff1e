import { positiveInteger, role } from "./_checks.ts";
import { describe } from "./_describe.ts";
import { type FrameHandler, FrameParser, OPCODE } from "./frame_parser.ts";
import { FrameWriter } from "./frame_writer.ts";
import {
  type Message,
  MessageAssembler,
  type MessageStreamEvent,
} from "./message_assembler.ts";
import { encodeClosePayload, parseClosePayload } from "./close_payload.ts";
import { CLOSE_CODE, PROTOCOL_ERROR_CODE, ProtocolError } from "./errors.ts";

/**
 * Something that happened on a {@linkcode Connection}, in wire order.
 *
 * @example What a server connection sees of a client's frames
 * ```ts
 * import { Connection, type ConnectionEvent } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const describe = (event: ConnectionEvent) =>
 *   event.type === "text" ? `text ${event.data}` : event.type === "close" ? `close ${event.code}` : event.type;
 * const client = new Connection({ role: "client" });
 * const server = new Connection({ role: "server" });
 * client.sendText("hi");
 * client.ping();
 * client.close(1000, "bye");
 * for (const chunk of client.takeOutput()) server.receive(chunk);
 * assert.deepEqual(server.takeEvents().map(describe), ["text hi", "ping", "close 1000"]);
 * ```
 */
export type ConnectionEvent =
  | { type: "text"; data: string }
  | { type: "binary"; data: Uint8Array<ArrayBuffer> }
  | { type: "ping"; data: Uint8Array<ArrayBuffer> }
  | { type: "pong"; data: Uint8Array<ArrayBuffer> }
  /** The peer's close frame (code 1005 when it carried none). */
  | { type: "close"; code: number; reason: string }
  /** The peer broke the protocol; a close frame with `error.closeCode` is queued. */
  | { type: "error"; error: ProtocolError }
  /** With `streamMessages`: the steps of each message, in place of `text`/`binary`. */
  | MessageStreamEvent;

/**
 * Where a connection is in its life (RFC 6455 §4-7):
 * - `open`: messages flow both ways;
 * - `closing`: we sent a close frame and wait for the peer's;
 * - `closed`: both close frames were exchanged, or the connection failed.
 *   Flush the output, then close the transport: a server at once; a client
 *   after the server has closed it, or after a timeout of its own (RFC 6455
 *   §7.1.1: the server closes the TCP connection first).
 *
 * @example A closing handshake between two connections
 * ```ts
 * import { Connection, type ConnectionState } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const client = new Connection({ role: "client" });
 * const server = new Connection({ role: "server" });
 * const states: ConnectionState[] = [client.state];
 * client.close(1000);
 * states.push(client.state);
 * for (const chunk of client.takeOutput()) server.receive(chunk);
 * for (const chunk of server.takeOutput()) client.receive(chunk); // the server's answer
 * states.push(client.state);
 * assert.deepEqual(states, ["open", "closing", "closed"]);
 * ```
 */
export type ConnectionState = "open" | "closing" | "closed";

/**
 * What one {@linkcode Connection.prototype.receive} call may emit.
 *
 * @example Taking one message at a time from a chunk that holds two
 * ```ts
 * import { Connection, type ReceiveLimit } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const client = new Connection({ role: "client" });
 * client.sendText("one");
 * client.sendText("two");
 * const [chunk] = client.takeOutput(); // both frames
 * const server = new Connection({ role: "server" });
 * const oneMessage: ReceiveLimit = { messages: 1 };
 * const used = server.receive(chunk, oneMessage);
 * assert.deepEqual(server.takeEvents(), [{ type: "text", data: "one" }]);
 * server.receive(chunk.subarray(used), oneMessage); // the rest, when ready for more
 * assert.deepEqual(server.takeEvents(), [{ type: "text", data: "two" }]);
 * ```
 */
export interface ReceiveLimit {
  /** Messages, or message pieces with `streamMessages`. */
  messages?: number;
  /** Bytes of them (text counts its string length). */
  bytes?: number;
  /**
   * Frames of any kind, control frames included: bounds the work of one
   * call however small the frames (a read of empty pings holds tens of
   * thousands). A compressed message counts as 256 frames more, plus
   * one per 256 bytes it inflates to.
   */
  frames?: number;
}

/**
 * Default of {@linkcode ConnectionOptions.maxPayload}: 16 MiB.
 *
 * @example Half the default
 * ```ts
 * import { DEFAULT_MAX_PAYLOAD, serve } from "@duplex/ws";
 *
 * await using _server = serve({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   maxPayload: DEFAULT_MAX_PAYLOAD / 2,
 * }, () => {});
 * ```
 */
export const DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024;
/**
 * Default of {@linkcode ConnectionOptions.maxFragments}: 4096.
 *
 * @example
 * ```ts
 * import { Connection, DEFAULT_MAX_FRAGMENTS } from "@duplex/ws";
 *
 * new Connection({ role: "server", maxFragments: DEFAULT_MAX_FRAGMENTS * 2 });
 * ```
 */
export const DEFAULT_MAX_FRAGMENTS = 4096;

/**
 * Options of {@linkcode Connection}.
 *
 * @example A server that accepts messages of up to 1 KiB
 * ```ts
 * import { Connection, type ConnectionOptions } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const options: ConnectionOptions = { role: "server", maxPayload: 1024, maxFragments: 4 };
 * const connection = new Connection(options);
 * // A masked binary frame announcing 2 KiB: refused from its header.
 * connection.receive(new Uint8Array([0x82, 0xfe, 0x08, 0x00, 0, 0, 0, 0]));
 * const [event] = connection.takeEvents();
 * assert.equal(event.type === "error" && event.error.closeCode, 1009);
 * ```
 */
export interface ConnectionOptions {
  /** Which end of the connection this is; decides masking (RFC 6455 §5.3). */
  role: "server" | "client";
  /**
   * The largest message accepted, in bytes; larger ones fail the connection
   * with 1009 before their payload is stored.
   * @default {16777216}
   */
  maxPayload?: number;
  /**
   * The most frames one message may be split into; more fail with 1009.
   * @default {4096}
   */
  maxFragments?: number;
  /**
   * Fills masking keys (client role). Inject a fixed key only in tests.
   * @default {crypto.getRandomValues}
   */
  generateMaskKey?: (key: Uint8Array) => void;
  /** Compression, when permessage-deflate was negotiated (RFC 7692). */
  perMessageDeflate?: ConnectionDeflate;
  /**
   * Emit each message as `stream-start`, `stream-data` pieces as they
   * arrive, and `stream-end`, instead of one `text` or `binary` event. A
   * message cut short by the peer's close frame, or by a protocol error,
   * ends with that `close` or `error` event instead of `stream-end`.
   * @default {false}
   */
  streamMessages?: boolean;
  /**
   * Hold back the answer to the peer's close frame, and the close frame
   * that fails the connection on a protocol error, until
   * {@linkcode Connection.prototype.acknowledgeClose} (or `close()`) sends
   * it, so that replies to the messages that arrived before can go out
   * first (RFC 6455 §5.5.1: "as soon as practical"; §7.1.7 only forbids
   * processing what follows the error). Meanwhile the state stays `open`
   * and messages may still be sent; input is ignored.
   * @default {false}
   */
  deferCloseReply?: boolean;
}

/**
 * The compression a connection uses once permessage-deflate is agreed.
 *
 * A server wires it from `negotiatePerMessageDeflate()` (given the
 * request's `Sec-WebSocket-Extensions`; its `response` goes into
 * `encodeAcceptResponse()`'s headers as `Sec-WebSocket-Extensions`): `{
 * inflate: inflateMessage, deflate: (data) => deflateMessage(data, params),
 * threshold: params.threshold }`. A client wires it from
 * `ClientHandshakeResult.perMessageDeflate` the same way, but compresses
 * within its own window: `deflateMessage(data, params, "client")`, and
 * only when that window is 9 bits or more (a server may ask a client for
 * 8, which zlib cannot do: leave `deflate` out and send uncompressed).
 * With context takeover the compressing side keeps a `ContextDeflater`
 * (leave `deflate` out and use `sendCompressed()`), and the receiving side
 * a `ContextInflater` in the sender's window: `inflate: (data, max) =>
 * inflater.inflate(data, max)` (a client when `serverNoContextTakeover` is
 * false, in `serverMaxWindowBits`; a server when `clientNoContextTakeover`
 * is false, in `clientMaxWindowBits`).
 *
 * @example Wiring compression from a negotiation
 * ```ts
 * import { Connection, type ConnectionDeflate, deflateMessage, inflateMessage, negotiatePerMessageDeflate } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const { params } = negotiatePerMessageDeflate("permessage-deflate", { threshold: 0 })!;
 * const deflate: ConnectionDeflate = {
 *   inflate: inflateMessage,
 *   deflate: (data) => deflateMessage(data, params),
 *   threshold: params.threshold,
 * };
 * const server = new Connection({ role: "server", perMessageDeflate: deflate });
 * server.sendText("Hello");
 * const [frame] = server.takeOutput();
 * assert.equal(frame[0], 0xc1); // FIN, RSV1 (compressed), text
 * const client = new Connection({ role: "client", perMessageDeflate: { inflate: inflateMessage, threshold: 0 } });
 * client.receive(frame);
 * assert.deepEqual(client.takeEvents(), [{ type: "text", data: "Hello" }]);
 * ```
 */
export interface ConnectionDeflate {
  /** Inflates a whole compressed message to at most `maxLength` bytes. */
  inflate: (data: Uint8Array, maxLength: number) => Uint8Array<ArrayBuffer>;
  /**
   * Compresses a whole message; absent when the caller compresses itself
   * (with context takeover) and uses `sendCompressed()`.
   */
  deflate?: (data: Uint8Array) => Uint8Array;
  /** Messages smaller than this many bytes are sent uncompressed. */
  threshold: number;
}

const RSV1 = 0x40;
// What inflating a message costs in frames (see ReceiveLimit.frames).
const INFLATE_COST = 256;
// Pings answered each with its own pong between two takeOutput() calls;
// past this, only the latest (RFC 6455 §5.5.3), so a flood of pings in one
// read gets a bounded answer.
const PONGS_PER_TAKE = 16;
const utf8 = new TextEncoder();

const NO_EVENTS: ConnectionEvent[] = [];
// No control payload yet (and no buffer for them).
const NO_CONTROL = new Uint8Array(0);
// Control payloads are handed out as views of shared buffers, never reused:
// a flood of pings allocates no buffer per ping. Each buffer is as large as
// the control payloads received so far, up to this (and to maxPayload: no
// buffer is larger than a message may be).
const CONTROL_ARENA = 4096;

/**
 * The RFC 6455 protocol state machine for one connection, without I/O:
 * feed it the bytes that arrive, read back the events and the bytes to send.
 *
 * - Pings are answered automatically, each with its pong, in order; past 16
 *   pings between two `takeOutput()` calls, only the latest of the rest is
 *   answered (RFC 6455 §5.5.3; one more goes out ahead of our close frame),
 *   so a ping flood gets bounded output.
 * - A close frame from the peer is echoed with its code and reason
 *   (RFC 6455 §5.5.1), at once, or with `deferCloseReply` when
 *   `acknowledgeClose()` says so.
 * - A protocol violation queues a close frame with the matching code
 *   (1002, 1007, 1009; `fail()` for a driver's own limits, 1008), emits an `error` event and ignores further input;
 *   with `deferCloseReply` the close frame waits for `acknowledgeClose()`
 *   (or `close()`, which then sends it, not its own code) and the state
 *   stays `open` until then.
 * - Ownership: `receive()` may unmask bytes in place and keeps no reference
 *   to them; every `binary` event carries a fresh buffer the caller owns.
 *   Ping and pong payloads are views of a buffer shared with other control
 *   payloads (their bytes are never reused either), so that a flood of
 *   pings costs no allocation per ping.
 *
 * @example Echoing the RFC 6455 §5.7 masked "Hello"
 * ```ts
 * import { Connection } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const connection = new Connection({ role: "server" });
 * connection.receive(
 *   new Uint8Array([0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]),
 * );
 * const [event] = connection.takeEvents();
 * assert.deepEqual(event, { type: "text", data: "Hello" });
 * connection.sendText("Hello");
 * assert.deepEqual(connection.takeOutput(), [
 *   new Uint8Array([0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]),
 * ]);
 * ```
 */
export class Connection {
  #state: ConnectionState = "open";
  readonly #role: "server" | "client";
  readonly #deflate: ((data: Uint8Array) => Uint8Array) | undefined;
  readonly #threshold: number;
  readonly #negotiated: boolean;
  readonly #parser: FrameParser;
  readonly #assembler: MessageAssembler;
  readonly #writer: FrameWriter;
  readonly #handler: FrameHandler;
  #events: ConnectionEvent[] = NO_EVENTS;
  #dataBytesReceived = 0;
  #lastFrameLength = 0;
  // What the current receive() may still emit.
  #messagesLeft = Infinity;
  #bytesLeft = Infinity;
  #framesLeft = Infinity;
  #closeSent = false;
  #closeReceived = false;
  // A protocol error failed the connection; its close frame is held back.
  #failed = false;
  readonly #deferCloseReply: boolean;
  // The close frame that answers the peer's, while it is held back.
  #closeReply: Uint8Array | null = null;
  // Pongs written since the output was last taken.
  #pongsWritten = 0;
  // The latest ping's payload, to answer once PONGS_PER_TAKE were written
  // (held in a buffer of its own, allocated with the first such ping).
  #pendingPong: Uint8Array | null = null;
  #pongPayload: Uint8Array | null = null;
  #controlArena = NO_CONTROL;
  #controlArenaUsed = 0;
  #controlBytes = 0;
  readonly #controlArenaLimit: number;
  // Whether a fragmented message we send awaits its last frame (§5.4).
  #sendingFragments = false;
  // Header bytes of a pong (at most 125 bytes of payload): 2, plus the mask.
  readonly #pongHeaderSize: number;
  // The control frame being read (at most 125 bytes).
  #isControl = false;
  #controlOpcode = 0;
  #control = NO_CONTROL;
  #controlLength = 0;

  /**
   * Creates the state machine of one open connection (after the handshake).
   *
   * @param options The role and the limits.
   * @throws {RangeError} When a limit is not a positive integer.
   */
  constructor(options: ConnectionOptions) {
    const side = role(options);
    const maxPayload = positiveInteger(
      "maxPayload",
      options.maxPayload ?? DEFAULT_MAX_PAYLOAD,
    );
    const maxFragments = positiveInteger(
      "maxFragments",
      options.maxFragments ?? DEFAULT_MAX_FRAGMENTS,
    );
    this.#pongHeaderSize = side === "client" ? 6 : 2;
    this.#role = side;
    this.#deferCloseReply = options.deferCloseReply ?? false;
    this.#controlArenaLimit = Math.max(
      125,
      Math.min(CONTROL_ARENA, maxPayload),
    );
    const deflate = options.perMessageDeflate;
    if (
      deflate !== undefined &&
      !(typeof deflate.threshold === "number" && deflate.threshold >= 0)
    ) {
      throw new RangeError(
        `Cannot create a Connection: "perMessageDeflate.threshold" must be a number of bytes from 0 (Infinity: compress nothing by itself), got ${
          String(deflate.threshold)
        }`,
      );
    }
    this.#deflate = deflate?.deflate;
    this.#threshold = deflate?.threshold ?? Infinity;
    this.#negotiated = deflate !== undefined;
    this.#parser = new FrameParser({
      role: side,
      allowedRsv: deflate ? RSV1 : 0,
    });
    const inflate = deflate?.inflate;
    this.#assembler = new MessageAssembler({
      maxPayload,
      maxFragments,
      // Inflating even a small message costs as much as parsing hundreds of
      // frames (17-75 µs, a context's window included): it is charged to
      // the call's frame budget, so that a read of many small compressed
      // messages does not hold the event loop a thousand times as long.
      inflate: inflate && ((data, maxLength) => {
        const message = inflate(data, maxLength);
        this.#framesLeft -= INFLATE_COST + (message.length >> 8);
        return message;
      }),
      onStream: options.streamMessages
        ? (event) => this.#emit(event)
        : undefined,
    });
    this.#writer = new FrameWriter({
      mask: options.role === "client",
      generateMaskKey: options.generateMaskKey,
    });
    this.#handler = {
      onFrameStart: (opcode, fin, rsv, length) =>
        this.#onFrameStart(opcode, fin, rsv, length),
      onFramePayload: (data) => this.#onFramePayload(data),
      onFrameEnd: () => this.#onFrameEnd(),
    };
  }

  /** The connection's state; see {@linkcode ConnectionState}. */
  get state(): ConnectionState {
    return this.#state;
  }

  /**
   * Payload bytes of data frames (text, binary, continuation) received so
   * far, as they arrived (compressed), a message still arriving included:
   * a driver's idle timeout can tell a slow message from silence with it.
   */
  get dataBytesReceived(): number {
    return this.#dataBytesReceived;
  }

  /**
   * The declared payload length of the last frame whose header arrived, or
   * `Infinity` when more frames of its message follow (it was not final):
   * after a protocol error, at most what the peer may still be sending of
   * the message that failed (a driver may read that much on, discarding it,
   * so that closing does not reset a peer still sending; a browser sends a
   * large message in frames of about 128 KB).
   */
  get lastFrameLength(): number {
    return this.#lastFrameLength;
  }

  /** Whether both close frames were exchanged (a clean close). */
  get closedCleanly(): boolean {
    return this.#closeSent && this.#closeReceived;
  }

  /**
   * Payload bytes of the frame being received that have not arrived yet; 0
   * between frames. A driver may size its next read by it.
   */
  get payloadRemaining(): number {
    return this.#parser.payloadRemaining;
  }

  /**
   * Whether a frame (a part of its header, at least) or a fragmented
   * message has begun to arrive and not ended, on a connection that still
   * takes input: a driver's deadline for whole messages runs while this
   * holds.
   */
  get receiving(): boolean {
    return this.#state !== "closed" && !this.#failed &&
      (this.#parser.inFrame || this.#assembler.inMessage);
  }

  /**
   * Payload bytes of the message still arriving that the connection holds
   * (as received: compressed, if it is); 0 between messages. With
   * `streamMessages`, pieces are emitted as they arrive and do not count
   * here (a compressed message does, until it is inflated whole). A driver
   * may count it against a memory budget.
   *
   * @example A large message, half received
   * ```ts
   * import { Connection } from "@duplex/ws";
   * import assert from "node:assert/strict";
   *
   * const connection = new Connection({ role: "server" });
   * // A masked binary frame of 1000 bytes (16-bit length), mask key 0, and
   * // 400 bytes of its payload.
   * connection.receive(new Uint8Array([0x82, 0xfe, 0x03, 0xe8, 0, 0, 0, 0]));
   * connection.receive(new Uint8Array(400));
   * assert.equal(connection.partialMessageBytes, 400);
   * connection.receive(new Uint8Array(600));
   * assert.equal(connection.takeEvents()[0].type, "binary");
   * assert.equal(connection.partialMessageBytes, 0);
   * ```
   */
  get partialMessageBytes(): number {
    return this.#assembler.partialMessageBytes;
  }

  /** Bytes waiting in the output, not yet taken. */
  get outputSize(): number {
    const pong = this.#pendingPong;
    return this.#writer.size +
      (pong === null ? 0 : this.#pongHeaderSize + pong.length);
  }

  /**
   * Processes bytes from the peer. Every complete frame in `data` is handled
   * before this returns, unless `limit` stops it earlier. Input after the
   * connection closed is ignored.
   *
   * @param data The bytes, any chunking; unmasked in place, not kept.
   * @param limit Stop after the frame with which the messages (or message
   * pieces, with `streamMessages`) emitted by this call reach this many, or
   * this many bytes (text counts its string length): a driver that queues
   * messages for a consumer bounds the queue with it, however many small
   * frames (or compressed ones that inflate a thousandfold) `data` holds.
   * @returns How many bytes of `data` were processed: all of them unless
   * `limit` stopped it; give the rest to a later call.
   * @throws What the permessage-deflate `inflate` threw, other than a
   * `ProtocolError`: the connection is then closed without a close frame
   * (where the input stands is unknown); close the transport.
   */
  receive(data: Uint8Array, limit?: ReceiveLimit): number {
    if (!(data instanceof Uint8Array)) {
      throw new TypeError(
        `Cannot receive: the data must be a Uint8Array, got ${describe(data)}`,
      );
    }
    if (this.#state === "closed" || this.#closeReceived || this.#failed) {
      return data.length;
    }
    this.#messagesLeft = limit?.messages ?? Infinity;
    this.#bytesLeft = limit?.bytes ?? Infinity;
    this.#framesLeft = limit?.frames ?? Infinity;
    try {
      return this.#parser.parse(data, this.#handler);
    } catch (error) {
      if (!(error instanceof ProtocolError)) {
        // Not the peer's fault (an inflate that threw, a bug): where the
        // input stands is unknown, so no more of it is taken, and no close
        // frame is written; close the transport.
        this.#assembler.discard();
        this.#state = "closed";
        throw error;
      }
      if (!this.#closeReceived) this.#fail(error);
      return data.length;
    }
  }

  /**
   * Returns the events since the last call, in order, and forgets them.
   *
   * @returns The events.
   */
  takeEvents(): ConnectionEvent[] {
    const events = this.#events;
    this.#events = NO_EVENTS;
    return events;
  }

  /**
   * Returns the bytes to send since the last call, in order, and forgets
   * them. The connection reuses their memory only once they are given back
   * with {@linkcode Connection.prototype.releaseOutput}.
   *
   * @returns The chunks to write, in order.
   */
  takeOutput(): Uint8Array[] {
    this.#flushPong();
    this.#pongsWritten = 0;
    return this.#writer.take();
  }

  /**
   * Gives back the buffers the connection allocated for `chunks` (from
   * {@linkcode Connection.prototype.takeOutput}) once they are written: a
   * few are kept for the next large frames, the rest are freed at once
   * instead of at the next garbage collection; see
   * `FrameWriter.release()`. Once the connection is closed, everything is
   * freed. Optional: call it only after the chunks are written, and touch
   * none of them afterwards.
   *
   * @param chunks Chunks returned by `takeOutput()`, already written.
   *
   * @example Releasing output once it is written
   * ```ts
   * import { Connection } from "@duplex/ws";
   * import assert from "node:assert/strict";
   *
   * const connection = new Connection({ role: "server" });
   * connection.sendBinary(new Uint8Array(100_000));
   * const chunks = connection.takeOutput();
   * // ... write the chunks to the transport; then the peer goes away:
   * connection.receiveEof();
   * connection.releaseOutput(chunks);
   * assert.equal(chunks[0].length, 0);
   * ```
   */
  releaseOutput(chunks: readonly Uint8Array[]): void {
    this.#writer.release(chunks, this.#state !== "closed");
  }

  /**
   * Queues a text message. A lone surrogate in `text` is sent as U+FFFD,
   * as `TextEncoder` (and a browser's `WebSocket.send()`) does.
   *
   * @param text The message.
   * @param compress `false` sends it uncompressed even when
   * permessage-deflate is in use.
   * @throws {TypeError} When the connection is not open, or a fragmented
   * message is unfinished.
   */
  sendText(text: string, compress = true): void {
    if (typeof text !== "string") {
      throw new TypeError(
        `Cannot send text: the message must be a string, got ${describe(text)}`,
      );
    }
    this.#assertOpen("send");
    this.#assertNoFragments();
    // Compress only what may reach the threshold (3 bytes per UTF-16 unit
    // at most), so small text is still encoded straight into the output.
    if (compress && this.#deflate && text.length * 3 >= this.#threshold) {
      const bytes = utf8.encode(text);
      if (bytes.length >= this.#threshold) {
        this.#writer.writeFrame(OPCODE.Text, this.#deflate(bytes), true, RSV1);
        return;
      }
    }
    this.#writer.writeText(OPCODE.Text, text);
  }

  /**
   * Queues a binary message.
   *
   * @param data The message.
   * @param compress `false` sends it uncompressed even when
   * permessage-deflate is in use.
   * @returns `true` when `data` (over 256 KiB, server role) is referenced
   * rather than copied: leave it untouched until the output is written.
   * @throws {TypeError} When the connection is not open, or a fragmented
   * message is unfinished.
   */
  sendBinary(data: Uint8Array, compress = true): boolean {
    checkBytes("send binary", data);
    this.#assertOpen("send");
    this.#assertNoFragments();
    if (compress && this.#deflate && data.length >= this.#threshold) {
      this.#writer.writeFrame(OPCODE.Binary, this.#deflate(data), true, RSV1);
      return false;
    }
    return this.#writer.writeFrame(OPCODE.Binary, data);
  }

  /**
   * Queues a message compressed by the caller (permessage-deflate with
   * context takeover): one frame with RSV1 set (RFC 7692 §6).
   *
   * @param opcode Text or binary.
   * @param payload The compressed payload, without the `00 00 ff ff` tail.
   * @throws {TypeError} When the connection is not open or has no
   * permessage-deflate, or `opcode` is neither text nor binary.
   */
  sendCompressed(opcode: number, payload: Uint8Array): void {
    if (opcode !== OPCODE.Text && opcode !== OPCODE.Binary) {
      throw new TypeError(
        `Cannot send a compressed message: the opcode must be text (1) or binary (2), got ${opcode}`,
      );
    }
    this.#assertOpen("send");
    this.#assertNoFragments();
    checkBytes("send a compressed message", payload);
    if (!this.#negotiated) {
      throw new TypeError(
        "Cannot send a compressed message: permessage-deflate was not negotiated",
      );
    }
    this.#writer.writeFrame(opcode, payload, true, RSV1);
  }

  /**
   * Queues a message framed in advance (server role only: the frame is not
   * masked).
   *
   * @param frame A complete unmasked data frame (text or binary, FIN set),
   * never modified afterwards; its payload is not checked.
   * @returns `true` when the output references `frame` rather than a copy
   * (see `FrameWriter.prototype.writeEncoded`).
   * @throws {TypeError} When the connection is not open, is a client, or
   * `frame` does not start as a whole text or binary frame, or has RSV bits
   * no negotiated extension defines (RSV1 needs permessage-deflate).
   */
  sendEncoded(frame: Uint8Array): boolean {
    checkBytes("send an encoded frame", frame);
    this.#assertOpen("send");
    this.#assertNoFragments();
    if (this.#role === "client") {
      throw new TypeError(
        "Cannot send an encoded frame: a client must mask each frame (RFC 6455 §5.3)",
      );
    }
    const opcode = frame[0] & 0x0f;
    if (
      frame.length < 2 || (frame[0] & 0x80) === 0 ||
      (opcode !== OPCODE.Text && opcode !== OPCODE.Binary) ||
      (frame[1] & 0x80) !== 0
    ) {
      throw new TypeError(
        "Cannot send an encoded frame: it must be a whole unmasked text or binary frame (FIN set); send control frames with ping(), pong() and close()",
      );
    }
    // RFC 6455 §5.2: RSV bits "MUST be 0 unless an extension is negotiated
    // that defines meanings for non-zero values" (permessage-deflate: RSV1).
    const rsv = frame[0] & 0x70;
    if (rsv !== 0 && (rsv !== RSV1 || !this.#negotiated)) {
      throw new TypeError(
        `Cannot send an encoded frame: its RSV bits (0x${
          rsv.toString(16)
        }) need an extension that defines them; ${
          this.#negotiated
            ? "permessage-deflate defines RSV1 only"
            : "permessage-deflate was not negotiated (send the frame that is not compressed)"
        }`,
      );
    }
    return this.#writer.writeEncoded(frame);
  }

  /**
   * Queues one frame of a fragmented message (RFC 6455 §5.4): the first with
   * opcode text or binary, the rest with continuation, the last with `fin`.
   * Text fragments are not checked for UTF-8: the caller sends valid text.
   *
   * @param opcode Text or binary for the first frame, continuation after.
   * @param data The fragment's payload.
   * @param fin Whether this fragment ends the message.
   * @returns `true` when `data` is referenced rather than copied.
   * @throws {TypeError} When the connection is not open, or `opcode` does
   * not fit: text or binary must start a message, continuation continue one.
   */
  sendFragment(opcode: number, data: Uint8Array, fin: boolean): boolean {
    checkBytes("send a fragment", data);
    this.#assertOpen("send");
    const expected = this.#sendingFragments
      ? opcode === OPCODE.Continuation
      : opcode === OPCODE.Text || opcode === OPCODE.Binary;
    if (!expected) {
      throw new TypeError(
        `Cannot send a fragment: the opcode must be ${
          this.#sendingFragments ? "continuation (0)" : "text (1) or binary (2)"
        }, got ${opcode} (RFC 6455 §5.4)`,
      );
    }
    const referenced = this.#writer.writeFrame(opcode, data, fin);
    this.#sendingFragments = !fin;
    return referenced;
  }

  /**
   * Queues a ping.
   *
   * @param data At most 125 bytes of application data.
   * @throws {RangeError} When `data` is longer than 125 bytes.
   * @throws {TypeError} When the connection is not open.
   */
  ping(data: Uint8Array = new Uint8Array(0)): void {
    this.#assertOpen("ping");
    this.#writer.writeFrame(OPCODE.Ping, controlPayload("ping", data));
  }

  /**
   * Queues an unsolicited pong (a one-way heartbeat, RFC 6455 §5.5.3).
   *
   * @param data At most 125 bytes of application data.
   * @throws {RangeError} When `data` is longer than 125 bytes.
   * @throws {TypeError} When the connection is not open.
   */
  pong(data: Uint8Array = new Uint8Array(0)): void {
    this.#assertOpen("pong");
    this.#writer.writeFrame(OPCODE.Pong, controlPayload("pong", data));
  }

  /**
   * Starts the closing handshake (RFC 6455 §7.1.2) by queueing a close
   * frame. Messages keep arriving until the peer's close frame. Does nothing
   * when a close frame was already sent (though `code` and `reason` are
   * still checked). A failure's close frame held back by `deferCloseReply`
   * goes instead, with its own code.
   *
   * @param code The status code; omit it for an empty close frame.
   * @param reason At most 123 bytes of UTF-8.
   * @throws {RangeError} When the code may not be sent or the reason is too
   * long.
   */
  close(code?: number, reason = ""): void {
    const payload = encodeClosePayload(code, reason);
    if (this.#closeSent || this.#state === "closed") return;
    // A held-back failure keeps its own code: the peer broke the protocol.
    this.#sendClose(this.#failed ? this.#closeReply! : payload);
  }

  /**
   * Sends the close frame that `deferCloseReply` held back: the answer to
   * the peer's close frame, its code and reason echoed (RFC 6455 §5.5.1), or
   * the one that fails the connection after a protocol error. The state
   * becomes `closed`. Does nothing when none is owed.
   */
  acknowledgeClose(): void {
    if (this.#closeReply === null || this.#state === "closed") return;
    this.#sendClose(this.#closeReply);
  }

  /**
   * Fails the connection for a limit the driver enforces itself (a message
   * that takes too long to arrive, `MESSAGE_TIMEOUT`), as a protocol error
   * in the input would: a close frame with the error's close code and its
   * code as the reason (held back under `deferCloseReply`; none when ours
   * was sent already, after `close()`), an `error` event, the state
   * `closed` (once the held frame is sent), and no more input processed.
   * Does nothing once the connection is closed, has failed, or has the
   * peer's close frame.
   *
   * @param error What went wrong; its `closeCode` goes to the peer.
   *
   * @example Failing a connection whose message stalls
   * ```ts
   * import { Connection, ProtocolError } from "@duplex/ws";
   * import assert from "node:assert/strict";
   *
   * const connection = new Connection({ role: "server" });
   * // The header of a masked 100-byte text frame, and no payload yet.
   * connection.receive(new Uint8Array([0x81, 0xe4, 1, 2, 3, 4]));
   * assert.equal(connection.receiving, true);
   * connection.fail(new ProtocolError("MESSAGE_TIMEOUT", "No whole message in 30 s"));
   * const [event] = connection.takeEvents();
   * assert.equal(event.type, "error");
   * assert.equal(connection.state, "closed");
   * // A close frame: 1008, "MESSAGE_TIMEOUT".
   * assert.deepEqual([...connection.takeOutput()[0].subarray(0, 4)], [0x88, 17, 0x03, 0xf0]);
   * ```
   */
  fail(error: ProtocolError): void {
    if (!(error instanceof ProtocolError)) {
      throw new TypeError(
        `Cannot fail the connection: the error must be a ProtocolError, got ${
          describe(error)
        }`,
      );
    }
    if (this.#state === "closed" || this.#closeReceived || this.#failed) {
      return;
    }
    this.#fail(error);
  }

  /**
   * Records that the transport ended. The state becomes `closed`; when no
   * close frame had arrived, the close was abnormal (code 1006). A message
   * still arriving is dropped (`partialMessageBytes` becomes 0).
   */
  receiveEof(): void {
    this.#state = "closed";
    this.#assembler.discard();
  }

  #onFrameStart(
    opcode: number,
    fin: boolean,
    rsv: number,
    length: number,
  ): void {
    // Nothing after the peer's close frame counts (RFC 6455 §5.5.1).
    if (this.#closeReceived) return;
    this.#lastFrameLength = fin ? length : Infinity;
    this.#isControl = opcode >= OPCODE.Close;
    if (this.#isControl) {
      // Control frames are never compressed (RFC 7692 §6.1).
      if (rsv !== 0) {
        throw new ProtocolError(
          PROTOCOL_ERROR_CODE.ReservedBits,
          "RSV1 is set on a control frame (RFC 7692 §6.1)",
        );
      }
      this.#controlOpcode = opcode;
      this.#controlBytes += length;
      if (this.#controlArenaUsed + length > this.#controlArena.length) {
        this.#controlArena = new Uint8Array(
          Math.min(this.#controlArenaLimit, this.#controlBytes),
        );
        this.#controlArenaUsed = 0;
      }
      const start = this.#controlArenaUsed;
      this.#control = this.#controlArena.subarray(start, start + length);
      this.#controlArenaUsed += length;
      this.#controlLength = 0;
    } else {
      this.#assembler.startFrame(opcode, fin, length, rsv);
    }
  }

  #onFramePayload(data: Uint8Array): void {
    if (this.#closeReceived) return;
    if (this.#isControl) {
      this.#control.set(data, this.#controlLength);
      this.#controlLength += data.length;
    } else {
      this.#dataBytesReceived += data.length;
      this.#assembler.append(data);
    }
  }

  /** Ends a frame; `true` when the receive() limit says to stop here. */
  #onFrameEnd(): boolean {
    if (this.#closeReceived) return false;
    const framesDone = --this.#framesLeft <= 0;
    if (!this.#isControl) {
      // (Inflating the message, if it ends here, charges more frames.)
      const message = this.#assembler.endFrame();
      if (message !== undefined) this.#emit(toEvent(message));
      return this.#framesLeft <= 0 || this.#messagesLeft <= 0 ||
        this.#bytesLeft <= 0;
    }
    const data = this.#control as Uint8Array<ArrayBuffer>;
    switch (this.#controlOpcode) {
      case OPCODE.Ping:
        // Each ping gets its pong, up to PONGS_PER_TAKE per output taken;
        // then the "MAY elect to send a Pong frame for only the most
        // recently processed Ping frame" of RFC 6455 §5.5.3. Also after our
        // close frame: a pong is due "unless it already received a Close
        // frame" (§5.5.2), and only data frames may not follow a close
        // (§5.5.1). Copies: the caller owns the event's data and may
        // change it.
        if (this.#pongsWritten < PONGS_PER_TAKE) {
          this.#pongsWritten++;
          this.#writer.writeFrame(OPCODE.Pong, data);
        } else {
          this.#pongPayload ??= new Uint8Array(125);
          this.#pongPayload.set(data);
          this.#pendingPong = this.#pongPayload.subarray(0, data.length);
        }
        this.#emit({ type: "ping", data });
        break;
      case OPCODE.Pong:
        this.#emit({ type: "pong", data });
        break;
      default: {
        const { code, reason } = parseClosePayload(data);
        this.#closeReceived = true;
        // Data frames after it are ignored: a message it cut short is over.
        this.#assembler.discard();
        // "the endpoint typically echos the status code it received"
        // (RFC 6455 §5.5.1), and the reason with it, so that the side that
        // closed sees its own words come back (browsers report the echo);
        // a 1005 is echoed as an empty close frame. (Control payloads are
        // never overwritten: the view may wait.)
        if (!this.#closeSent) {
          const reply = code === CLOSE_CODE.NoStatusReceived
            ? new Uint8Array(0)
            : data;
          if (this.#deferCloseReply) {
            this.#closeReply = reply;
            this.#emit({ type: "close", code, reason });
            return false;
          }
          this.#sendClose(reply);
        }
        this.#state = "closed";
        this.#emit({ type: "close", code, reason });
      }
    }
    return framesDone;
  }

  #fail(error: ProtocolError): void {
    // No more input is taken: the message still arriving never completes.
    this.#assembler.discard();
    const payload = encodeClosePayload(error.closeCode, error.code);
    if (this.#deferCloseReply && !this.#closeSent) {
      this.#failed = true;
      this.#closeReply = payload;
      this.#emit({ type: "error", error });
      return;
    }
    if (!this.#closeSent) this.#sendClose(payload);
    this.#state = "closed";
    this.#emit({ type: "error", error });
  }

  #sendClose(payload: Uint8Array): void {
    this.#flushPong();
    this.#writer.writeFrame(OPCODE.Close, payload);
    this.#closeSent = true;
    this.#closeReply = null;
    // No close frame is awaited after a failure (RFC 6455 §7.1.7).
    if (this.#closeReceived || this.#failed) this.#state = "closed";
    else if (this.#state === "open") this.#state = "closing";
  }

  #flushPong(): void {
    if (this.#pendingPong === null) return;
    this.#writer.writeFrame(OPCODE.Pong, this.#pendingPong);
    this.#pendingPong = null;
  }

  #emit(event: ConnectionEvent): void {
    if (this.#events === NO_EVENTS) this.#events = [];
    this.#events.push(event);
    switch (event.type) {
      case "text":
      case "binary":
        this.#messagesLeft--;
        this.#bytesLeft -= event.data.length;
        break;
      case "stream-start":
        this.#messagesLeft--;
        break;
      case "stream-data":
        this.#bytesLeft -= event.data.length;
    }
  }

  #assertNoFragments(): void {
    if (this.#sendingFragments) {
      throw new TypeError(
        "Cannot send: a fragmented message is unfinished; send its last fragment first (RFC 6455 §5.4)",
      );
    }
  }

  #assertOpen(action: string): void {
    if (this.#closeSent || this.#state !== "open") {
      throw new TypeError(
        `Cannot ${action}: the connection is ${this.#state}; no frame may follow a close frame (RFC 6455 §5.5.1)`,
      );
    }
  }
}

function toEvent(message: Message): ConnectionEvent {
  return typeof message === "string"
    ? { type: "text", data: message }
    : { type: "binary", data: message };
}

function checkBytes(action: string, data: unknown): void {
  if (!(data instanceof Uint8Array)) {
    throw new TypeError(
      `Cannot ${action}: the payload must be a Uint8Array, got ${
        describe(data)
      }`,
    );
  }
}

function controlPayload(kind: string, data: Uint8Array): Uint8Array {
  checkBytes(kind, data);
  if (data.length > 125) {
    throw new RangeError(
      `Cannot ${kind}: the payload must be at most 125 bytes, got ${data.length}`,
    );
  }
  return data;
}
