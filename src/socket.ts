import { Connection, type ReceiveLimit } from "./protocol/connection.ts";
import { OPCODE } from "./protocol/frame_parser.ts";
import {
  encodeClosePayload,
  isValidCloseCode,
} from "./protocol/close_payload.ts";
import { CLOSE_CODE, ProtocolError } from "./protocol/errors.ts";
import type { Message } from "./protocol/message_assembler.ts";
import { CLOSE_REASON, type CloseInfo } from "./close_info.ts";
import {
  type CloseOptions,
  countRoundTrip,
  type IncomingStream,
  newCounters,
  type OutgoingMessage,
  type SendOptions,
  type SendStatus,
  type SocketCounters,
  type SocketOptions,
  type SocketRequestInfo,
  type SocketState,
  type Transport,
} from "./socket_options.ts";
import { PreparedMessage } from "./protocol/prepared_message.ts";
import {
  ContextDeflater,
  ContextInflater,
  deflateMessage,
  inflateMessage,
} from "./protocol/deflate_codec.ts";
import type { PerMessageDeflateParams } from "./protocol/permessage_deflate.ts";
import { Limiter } from "./limiter.ts";
import { Interruptible } from "./_interruptible.ts";
import { closedError } from "./_closed_error_owner.ts";
import { PieceQueue } from "./_piece_queue.ts";
import type { BudgetAccount } from "./_buffer_budget.ts";
import { attached, concat } from "./protocol/_bytes.ts";
import { checkOptionNames } from "./_unknown_options.ts";
import { describe, shown } from "./protocol/_describe.ts";
import type { Subscriber, Topics } from "./pubsub/topics.ts";
import type { Slot } from "./_slot_list.ts";

interface Waiter {
  seq: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

const RESOLVED = Promise.resolve();
const STOPPED = Symbol("stopped");
const utf8 = new TextEncoder();
// Compressions in flight across all sockets (RFC 7692 leaves memory and CPU
// bounds to implementations).
const compressions = new Limiter(16);
const MIN_READ = 1024;
const MAX_READ = 256 * 1024;
// Frames parsed at most in one go (a read of empty pings holds tens of
// thousands): the rest waits for the next turn of the event loop.
const FRAMES_PER_PARSE = 4096;
// Reads (or parses of what a read left) one socket may do in one turn of the
// event loop; see thisTurn().
const READS_PER_TURN = 1;
// Outgoing chunks are written in slices of this size (the last slice of a
// chunk may be up to LARGE_CHUNK larger): a write completes once the kernel
// has room for it, which, once its buffers are full, is once the peer has
// read about that much; such progress is what keeps the close and
// write-stall timeouts from cutting off a slow reader (one taking 100 KB/s
// gets a slice written every 5 s).
const WRITE_SLICE = 512 * 1024;
// Output counts as written in steps of at least this much.
const LARGE_CHUNK = 64 * 1024;
// A peer that has not answered our close frame, but may still be reading
// what we wrote before it, is assumed to read at least this much per
// closeTimeout (see #drainDeadline)...
const DRAIN_BYTES = 64 * 1024;
// ...for at most this many more close timeouts.
const DRAIN_MAX = 4;
// Inside a frame that still needs more than a buffer's worth, reads may grow
// to this: a large message then arrives in fewer, larger pieces (and the
// assembler grows its buffer fewer times).
const MAX_READ_IN_LARGE_FRAME = 1024 * 1024;
const SMALL_READS_BEFORE_SHRINK = 4;
const STREAM_PIECE = "Cannot send the stream's piece";
const SEND_OPTIONS: ReadonlySet<string> = new Set(["compress"]);
const CLOSE_OPTIONS: ReadonlySet<string> = new Set(["streamGrace"]);
const SEND_STREAM_OPTIONS: ReadonlySet<string> = new Set(["binary"]);
const SOCKET_PUBLISH_OPTIONS: ReadonlySet<string> = new Set(["exceptSelf"]);
// The longest a failed connection is read on, and discarded, before it is
// closed (see #linger), and how much of it: the rest of the frame that
// failed (up to a limit, 64 MiB: a file of some tens of MB sent to a
// server's default 16 MiB maxPayload gets its 1009; Deno closes the
// connection on a failed write, with the close frame unread, and a
// browser reports 1006), and some slack.
const LINGER = 1000;
const LINGER_MAX_BYTES = 64 * 1024 * 1024;
const LINGER_SLACK = 64 * 1024;

function ignore(): void {}

/**
 * A bound on `text`'s UTF-8 size, to compare with a compression threshold
 * without encoding it: a surrogate pair counts 6, checked again once
 * encoded. Counted only when the quick bounds (1 to 3 bytes per unit) do not
 * settle it.
 */
function utf8Size(text: string, threshold: number): number {
  if (text.length >= threshold || text.length * 3 < threshold) {
    return text.length * 3;
  }
  let size = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    size += unit < 0x80 ? 1 : unit < 0x800 ? 2 : 3;
  }
  return size;
}

function handledRejection(error: Error): Promise<never> {
  const promise = Promise.reject(error);
  promise.catch(() => {});
  return promise;
}

// The end of each turn of the event loop, once its JavaScript has run: one
// immediate for all that waits for it (an immediate is about a kilobyte of
// garbage), while any socket reads or writes. It counts the turns, writes
// the corked output (see Socket.#toFlush) and lets the reads that yielded
// go on. A read whose socket already holds data completes at once, in a
// microtask: a peer that never stops sending would keep its loop going
// without ever letting the event loop serve the other connections.
let turn = 0;
let endOfTurnQueued = false;
let nextTurn: PromiseWithResolvers<void> | null = null;
let flushSockets: () => void;

function queueEndOfTurn(): void {
  if (endOfTurnQueued) return;
  endOfTurnQueued = true;
  setImmediate(endOfTurn);
}

function endOfTurn(): void {
  turn++;
  try {
    // Output queued meanwhile joins this pass.
    flushSockets();
  } finally {
    endOfTurnQueued = false;
    const waiting = nextTurn;
    nextTurn = null;
    waiting?.resolve();
  }
}

/** The current turn's number. */
function thisTurn(): number {
  queueEndOfTurn();
  return turn;
}

/** Resolves at the end of this turn, after the output is written. */
function afterThisTurn(): Promise<void> {
  queueEndOfTurn();
  return (nextTurn ??= Promise.withResolvers()).promise;
}

/**
 * One WebSocket connection: an async iterable of the messages it receives,
 * with an awaitable `send()`.
 *
 * - Messages are `string` (text) or `Uint8Array` (binary): test with
 *   `typeof message === "string"`. A received `Uint8Array` is yours: the
 *   socket never touches its memory again.
 * - `send()` queues the frame and returns a promise that resolves at once
 *   while less than the high-water mark is waiting to be written, else when
 *   the queue has been written. Frames queued during one turn of the event
 *   loop leave together in one write once that turn's JavaScript has run.
 *   `send()` copies payloads up to 256 KiB, so your buffer is free again
 *   when it returns; a larger binary payload is written from your buffer:
 *   leave it untouched until `send()` resolves.
 * - Pings are answered automatically. `close()` sends a close frame and
 *   waits for the peer's, up to the close timeout.
 * - Iteration ends when the connection closes; {@linkcode Socket.prototype.closed}
 *   says how. Calling `send()` after a close frame rejects with
 *   {@linkcode ConnectionClosedError} (a rejection nobody awaits is ignored).
 *
 * @example Echo every message
 * ```ts
 * import { serve } from "@duplex/ws";
 *
 * const server = serve({ port: 0, onListen() {} }, async (socket) => {
 *   for await (const message of socket) await socket.send(message);
 * });
 * await server.shutdown();
 * ```
 */
export class Socket<Data = unknown>
  implements AsyncIterable<Message>, AsyncDisposable {
  /** The URL requested (server) or connected to (client). */
  readonly url: URL;
  /**
   * The handshake headers from the peer: the request's on a server, the
   * response's on a client.
   */
  readonly headers: Headers;
  /** The peer's address. */
  readonly remoteAddr: Deno.NetAddr;
  /** The negotiated subprotocol, or `""` when none. */
  readonly protocol: string;
  /** Per-connection data, set by the server's `onUpgrade` hook. */
  data: Data;

  readonly #connection: Connection;
  readonly #transport: Transport;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #options: SocketOptions;
  // Received messages not yet taken by the iterator.
  #inbox: (Message | IncomingStream)[] = [];
  #inboxHead = 0;
  #inboxBytes = 0;
  #takeWaiter: TakeWaiter | null = null;
  // Cuts short the message being streamed out (sendStream), if any, to close
  // with this code and reason, or (null) to answer the peer's close frame.
  #stopStream:
    | ((close: { code: number; reason: string } | null) => void)
    | null = null;
  // Set when close() ran out of patience with no stream under way: a
  // stream that starts afterwards is cut at once, with this.
  #streamCut: { code: number; reason: string } | null | undefined;
  // Takes asked for while one was pending (two loops, or next() called
  // again before the last settled), in order.
  #moreWaiters: TakeWaiter[] | null = null;
  // With streamMessages: the message being streamed in, and what all the
  // messages' pieces not read yet cost.
  #current: PieceQueue<string | Uint8Array> | null = null;
  #streamBytes = 0;
  // The queues of streamed messages, and those of the ones taken and still
  // counted (see #releaseSkipped).
  #queues: WeakMap<IncomingStream, PieceQueue<string | Uint8Array>> | null =
    null;
  #taken: PieceQueue<string | Uint8Array>[] = [];
  #resumeReading: (() => void) | null = null;
  // Bytes read but not parsed yet: the queue filled up before their turn.
  #unparsed: Uint8Array | null = null;
  readonly #limit: ReceiveLimit = {
    messages: 0,
    bytes: 0,
    frames: FRAMES_PER_PARSE,
  };
  readonly #fullLimit: ReceiveLimit;
  // Takes so far, to tell after close() whether the loop still takes
  // messages; once it has stopped, what would not fit is dropped.
  #takes = 0;
  #dropping = false;
  #consumerCheck: ReturnType<typeof setTimeout> | undefined;
  #streamReaderCheck: ReturnType<typeof setTimeout> | undefined;
  // Our close frame (the answer to the peer's, or a protocol error's) waits
  // while the loop handles the messages that came before.
  #closeFrameOwed = false;
  #closeFrameTimer: ReturnType<typeof setTimeout> | undefined;
  #closeOwedSince = 0;
  // Writing.
  #flushQueued = false;
  #noDelay = false;
  #writing = false;
  #inFlight = 0;
  #takenSeq = 0;
  #writtenSeq = 0;
  // The write that carries the outstanding ping: the peer cannot answer
  // before it is written, so its pong is timed from then.
  #pingSeq = 0;
  // A write finished since the last tick; when the output last moved.
  #wrote = false;
  #lastWritten = performance.now();
  #drainWaiters: Waiter[] = [];
  #idleWaiters: (() => void)[] = [];
  #pingWaiters: Waiter[] = [];
  readonly #counters: SocketCounters;
  // Keepalive, measured on the ticker's clock.
  #heardFrom = false;
  #lastHeard = performance.now();
  #messaged = false;
  #lastMessage = performance.now();
  // Takes (messages, and pieces of streamed ones) as of the last tick: a
  // handler still taking what the peer sent keeps the connection busy.
  #takesSeen = 0;
  // Reading paused for inbound backpressure since the last tick.
  #paused = false;
  // messageTimeout: a message arrived whole since the last read or tick;
  // since when (the read that began it, or else the first tick that saw
  // it) the one still arriving has been; the verdict, due once input
  // waiting has been read.
  #messageArrived = false;
  #receivingSince = -1;
  #messageTimer: ReturnType<typeof setTimeout> | undefined;
  #pingSentAt = -1;
  #rtt: number | undefined;
  #stopTicking: (() => void) | null = null;
  // Each topic this socket is subscribed to, and the subscription.
  #subscriptions: Map<string, Slot<Subscriber>> | null = null;
  // Closing.
  #forcedClose: { code: number; reason: string } | null = null;
  #peerClose: { code: number; reason: string } | null = null;
  #failure: ProtocolError | null = null;
  // The close timeout, once armed: checked on the ticker when the socket
  // has one (a timer per closing socket is, like a Set, what V8's scavenges
  // keep longest: see SlotList), else by a timer.
  #closeArmed = false;
  // The write that carries our close frame: what is written after it
  // (pongs) is not progress of the closing handshake.
  #closeSeq = Infinity;
  #closeDue = 0;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #stopCloseTicks: (() => void) | null = null;
  // Our side ended after the close timeout, for a slow peer to read on.
  #draining = false;
  // What the kernel may still hold for the peer, as of #unreadAt.
  #unreadBytes = 0;
  #unreadAt = 0;
  // After a protocol error: reading on (and discarding) for a moment before
  // the transport closes, so that no reset overtakes our close frame.
  #lingerTimer: ReturnType<typeof setTimeout> | undefined;
  #lingerBudget = 0;
  #lastProgress = 0;
  #info: CloseInfo | null = null;
  #transportClosed = false;
  // The server's memory budget: what this socket holds is reported to it.
  readonly #budget: BudgetAccount | null;
  // The same account, when the budget has a limit: it is told which frames
  // the output shares with other sockets (published ones), to count them
  // once. Without a limit nothing is tracked.
  readonly #shares: BudgetAccount | null;
  // Evicted by the budget: input is no longer kept, and the transport
  // closes once the close frame is written, or after this.
  #evicted = false;
  #evictTimer: ReturnType<typeof setTimeout> | undefined;
  #closeRequested = false;
  // permessage-deflate.
  readonly #deflate: PerMessageDeflateParams | undefined;
  #deflater: ContextDeflater | null = null;
  // Its last link, right after #sendInOrder() queued a message, says
  // whether that message reached the connection (see #framedThenDrained).
  #sendQueue: Promise<unknown> = RESOLVED;
  // Messages waiting behind a compression or a streamed message.
  #queuedBytes = 0;
  #queuedMessages = 0;
  #readable: ReadableStream<Message> | undefined;
  #writable: WritableStream<string | Uint8Array | ArrayBuffer> | undefined;
  readonly #closed: Promise<CloseInfo>;
  #resolveClosed!: (info: CloseInfo) => void;

  /**
   * Wraps an open connection. Use {@linkcode serve} or a client rather than
   * calling this directly.
   *
   * @param transport The connection after a completed handshake.
   * @param request What the connection was opened with.
   * @param options Limits and timeouts.
   * @param data Per-connection data for the handler.
   */
  constructor(
    transport: Transport,
    request: SocketRequestInfo,
    options: SocketOptions,
    data: Data,
  ) {
    this.data = data;
    this.url = request.url;
    this.headers = request.headers;
    this.remoteAddr = request.remoteAddr;
    this.protocol = request.protocol;
    this.#transport = transport;
    this.#fullLimit = {
      messages: options.maxQueuedMessages,
      bytes: options.receiveHighWaterMark,
      frames: FRAMES_PER_PARSE,
    };
    this.#options = options;
    const deflate = options.perMessageDeflate;
    this.#deflate = deflate;
    // Each side compresses within its own negotiated window.
    const own = deflate && (options.role === "server" ? deflate : {
      ...deflate,
      serverNoContextTakeover: deflate.clientNoContextTakeover,
      serverMaxWindowBits: deflate.clientMaxWindowBits,
    });
    // zlib cannot compress within an 8-bit window (a server may ask a
    // client for one): then everything is sent uncompressed, which RFC 7692
    // §6 leaves to the sender.
    const compresses = own !== undefined && own.serverMaxWindowBits >= 9;
    // With context takeover the peer's messages refer back to its earlier
    // ones (RFC 7692 §7.2.2): its window is kept between messages.
    const peer = deflate && (options.role === "server"
      ? {
        takesOver: !deflate.clientNoContextTakeover,
        windowBits: deflate.clientMaxWindowBits,
      }
      : {
        takesOver: !deflate.serverNoContextTakeover,
        windowBits: deflate.serverMaxWindowBits,
      });
    const inflater = peer?.takesOver
      ? new ContextInflater(peer.windowBits)
      : undefined;
    this.#connection = new Connection({
      role: options.role,
      streamMessages: options.streamMessages,
      deferCloseReply: true,
      maxPayload: options.maxPayload,
      maxFragments: options.maxFragments,
      perMessageDeflate: own && {
        inflate: inflater
          ? (data, maxLength) => inflater.inflate(data, maxLength)
          : inflateMessage,
        // Without context takeover one stateless compressor serves all.
        deflate: own.serverNoContextTakeover && compresses
          ? (data) => deflateMessage(data, own)
          : undefined,
        threshold: own.threshold,
      },
    });
    if (own && !own.serverNoContextTakeover && compresses) {
      this.#deflater = new ContextDeflater(own);
    }
    this.#writer = options.writer ?? transport.writable.getWriter();
    this.#closed = new Promise((resolve) => this.#resolveClosed = resolve);
    this.#counters = options.counters ?? newCounters();
    this.#budget = options.budget?.open(
      this as Socket<unknown>,
      () => this.#heldBytes(),
      () => this.#evict(),
    ) ?? null;
    this.#shares = options.budget?.limit === Infinity ? null : this.#budget;
    if (
      options.ticker &&
      (options.pingInterval > 0 || options.pongTimeout > 0 ||
        options.idleTimeout > 0 || (options.messageTimeout ?? 0) > 0)
    ) {
      this.#stopTicking = options.ticker.add((now) => this.#tick(now));
    }
  }

  /**
   * The round-trip time of the latest ping answered by a pong, in
   * milliseconds; `undefined` until one was measured.
   */
  get rtt(): number | undefined {
    return this.#rtt;
  }

  /**
   * `open`, `closing` (closing was asked for or begun: the close frame is
   * sent, or waits for what was queued before it) or `closed`. After the
   * peer's close frame the socket stays `open` while the loop handles the
   * messages that came before it, so that its replies can be sent; the
   * close frame is answered once the loop asks for the next message.
   */
  get state(): SocketState {
    if (this.#info !== null) return "closed";
    return this.#open ? "open" : "closing";
  }

  /**
   * Neither closing nor closed. Asked of the socket, not only of its core:
   * after an internal failure the core may still say "open".
   */
  get #open(): boolean {
    return this.#info === null && this.#connection.state === "open" &&
      !this.#closeRequested;
  }

  /**
   * Bytes queued for the peer and not yet written to the transport
   * (messages waiting to be compressed count with their full size); 0 once
   * the socket has closed, when what was not written is dropped.
   */
  get bufferedAmount(): number {
    if (this.#info !== null) return 0;
    return this.#connection.outputSize + this.#inFlight + this.#queuedBytes;
  }

  /**
   * The negotiated `Sec-WebSocket-Extensions` parameters of
   * permessage-deflate, or `undefined` when messages are not compressed.
   */
  get perMessageDeflate(): Readonly<PerMessageDeflateParams> | undefined {
    return this.#deflate;
  }

  /** Resolves once the transport has closed, with how it ended. Never rejects. */
  get closed(): Promise<CloseInfo> {
    return this.#closed;
  }

  /**
   * Sends one message: a string as text, bytes as binary. Messages sent
   * during one turn of the event loop are written together once the
   * JavaScript of that turn has run: one write for many messages.
   *
   * @param message The message.
   * @param options `compress: false` sends it uncompressed even with
   * permessage-deflate.
   * @returns A promise that resolves when the socket is ready for more: at
   * once while `bufferedAmount` is below the send high-water mark, else once
   * the queue is written. It also resolves when backpressure policy "drop"
   * dropped the message (`trySend()` tells). It rejects with
   * {@linkcode ConnectionClosedError} after a close frame, and for the
   * message that made policy "close" close the socket.
   * @throws {TypeError} When `message` is neither a string nor bytes.
   */
  send(message: OutgoingMessage, options?: SendOptions): Promise<void> {
    const status = this.#offer(message, options);
    if (status === "sent") return RESOLVED;
    // A drop that closed the socket (backpressurePolicy "close") rejects.
    if (status === "dropped" && this.#forcedClose === null) return RESOLVED;
    if (status === "closed" || status === "dropped") {
      return handledRejection(
        closedError(this, "send", this.#info ?? undefined),
      );
    }
    // Queued behind a compression or a streamed message: the writes before
    // it are not its own, so the wait starts once it is framed (or dropped,
    // the connection closing meanwhile).
    if (this.#queuedMessages > 0) return this.#framedThenDrained();
    return this.#drained();
  }

  // Apart from send(): a closure there would make every send() allocate.
  #framedThenDrained(): Promise<void> {
    const waiting = this.#sendQueue.then((framed) =>
      framed !== false
        ? this.#drained()
        : Promise.reject(closedError(this, "send", this.#info ?? undefined))
    );
    waiting.catch(() => {}); // a caller may leave it unawaited
    return waiting;
  }

  /**
   * Queues one message without waiting, and says how it went; see
   * {@linkcode SendStatus}. Useful for broadcasts that must not stall on
   * one slow peer.
   *
   * @param message The message.
   * @param options `compress: false` sends it uncompressed even with
   * permessage-deflate.
   * @returns `sent`, `backpressure`, `dropped` or `closed`. A binary
   * message over 256 KiB is referenced, not copied, and reports
   * `backpressure` until written: leave its buffer untouched until then.
   * @throws {TypeError} When `message` is neither a string nor bytes.
   */
  trySend(message: OutgoingMessage, options?: SendOptions): SendStatus {
    return this.#offer(message, options);
  }

  #offer(message: OutgoingMessage, options?: SendOptions): SendStatus {
    if (options !== undefined) checkOptionNames("send", SEND_OPTIONS, options);
    const bytes = typeof message === "string"
      ? message
      : message instanceof Uint8Array
      ? attached(message, "Cannot send the message")
      : message instanceof ArrayBuffer
      ? new Uint8Array(attached(message, "Cannot send the message"))
      : message instanceof PreparedMessage
      ? (this.#options.role === "server" ? message : message.message)
      : invalidMessage(message);
    if (!this.#open) {
      return "closed";
    }
    if (this.bufferedAmount >= this.#options.maxBackpressure) {
      const policy = this.#options.backpressurePolicy;
      if (policy !== "wait") {
        this.#counters.backpressureDrops++;
        if (policy === "close") {
          this.#terminate(
            CLOSE_CODE.PolicyViolation,
            CLOSE_REASON.Backpressure,
          );
        }
        return "dropped";
      }
    }
    const compress = options?.compress ?? true;
    let referenced = false;
    if (
      this.#queuedMessages > 0 ||
      (this.#deflater !== null && compress && this.#worthCompressing(bytes))
    ) {
      this.#sendInOrder(bytes, compress);
    } else if (typeof bytes === "string") {
      this.#connection.sendText(bytes, compress);
    } else if (bytes instanceof PreparedMessage) {
      const deflate = this.#deflate;
      const frame = deflate && compress && bytes.size >= deflate.threshold
        ? bytes.compressedFrame(deflate)
        : bytes.frame;
      // Referenced, not copied: the other recipients' output holds it too.
      if (this.#connection.sendEncoded(frame)) this.#shares?.share(frame);
    } else referenced = this.#connection.sendBinary(bytes, compress);
    this.#counters.messagesOut++;
    this.#messaged = true;
    this.#scheduleFlush();
    this.#budget?.report();
    // Over the server's budget, this socket held the most: it is closing.
    if (this.#forcedClose !== null) return "closed";
    return referenced ||
        this.bufferedAmount >= this.#options.sendHighWaterMark
      ? "backpressure"
      : "sent";
  }

  #worthCompressing(message: string | Uint8Array | PreparedMessage): boolean {
    const size = typeof message === "string"
      ? utf8Size(message, this.#deflate!.threshold)
      : message instanceof PreparedMessage
      ? message.size
      : message.length;
    return size >= this.#deflate!.threshold;
  }

  /**
   * Queues a message behind the asynchronous work in progress (a
   * compression with the connection's own deflate stream, or a streamed
   * message), so messages leave in the order they were sent.
   */
  #sendInOrder(
    message: string | Uint8Array | PreparedMessage,
    compress: boolean,
  ): void {
    const source = message instanceof PreparedMessage
      ? message.message
      : message;
    const isText = typeof source === "string";
    // A copy: the caller may reuse its buffer as soon as send() returns.
    const bytes = isText ? utf8.encode(source) : source.slice();
    this.#queuedBytes += bytes.length;
    this.#queuedMessages++;
    const deflater = this.#deflater;
    const opcode = isText ? OPCODE.Text : OPCODE.Binary;
    this.#sendQueue = this.#sendQueue.then(async () => {
      try {
        if (
          deflater !== null && compress &&
          bytes.length >= this.#deflate!.threshold
        ) {
          const payload = await compressions.run(() => deflater.deflate(bytes));
          this.#connection.sendCompressed(opcode, payload);
        } else if (isText) this.#connection.sendText(source, compress);
        else this.#connection.sendBinary(bytes, compress);
        return true;
      } catch {
        // The connection closed meanwhile: the message is dropped with it.
        return false;
      } finally {
        this.#queuedBytes -= bytes.length;
        this.#queuedMessages--;
        this.#scheduleFlush();
        this.#budget?.report();
      }
    });
  }

  /**
   * Sends one message from a stream of pieces, each piece as one frame of a
   * fragmented message (RFC 6455 §5.4), without assembling it in memory.
   * Strings make a text message (a surrogate pair split between two pieces
   * is kept whole), bytes (`Uint8Array` or `ArrayBuffer`) a binary one; all
   * pieces must be of the same kind. Each piece is copied, so a source may
   * reuse its buffer once it yields the next. Messages sent meanwhile wait
   * until this one is complete. Streamed messages are not compressed.
   *
   * If the source fails, or gives a piece of the wrong kind, after the
   * message has started going out, the socket is closed with 1011
   * `"message stream failed"`: the peer discards the part it received
   * rather than take it for the whole. {@linkcode Socket.prototype.close}
   * lets a message still streaming out end within its `streamGrace` (half
   * the close timeout by default), then cuts it short the same way, with its
   * own code (so does the answer to the peer's close, within half the close
   * timeout, so that a peer waiting as long gets it). The source is
   * canceled (an iterator's `return()` called) whenever the message will
   * not be sent whole: when it is cut short, when the connection ends (even
   * while the source waits for data), and when the socket was closing or
   * closed already.
   *
   * @param source The pieces: a `ReadableStream`, an async iterable or an
   * iterable.
   * @param options `binary: false` makes an empty source an empty text
   * message (an empty source sends an empty binary message by default).
   * @returns A promise that resolves once the last piece is queued; it
   * rejects with {@linkcode ConnectionClosedError} when the socket closes
   * first, with a `TypeError` for a piece of the wrong kind or an option it
   * does not know (nothing is sent then, and the source is canceled), or
   * with the source's own error.
   */
  sendStream(
    source:
      | ReadableStream<string | Uint8Array | ArrayBuffer>
      | AsyncIterable<string | Uint8Array | ArrayBuffer>
      | Iterable<string | Uint8Array | ArrayBuffer>,
    options: { binary?: boolean } = {},
  ): Promise<void> {
    if (
      !(source instanceof ReadableStream) &&
      !(typeof source === "object" && source !== null &&
        (Symbol.asyncIterator in source || Symbol.iterator in source))
    ) {
      return handledRejection(
        new TypeError(
          `Cannot send a stream: the source must be a ReadableStream or an (async) iterable of pieces, got ${
            describe(source)
          }`,
        ),
      );
    }
    let refused: Error | null = null;
    try {
      checkOptionNames("send a stream", SEND_STREAM_OPTIONS, options);
    } catch (error) {
      refused = error as Error;
    }
    if (refused !== null || !this.#open) {
      const error = refused ??
        closedError(this, "send", this.#info ?? undefined);
      // Nothing of it will be sent: the source is let go, as when a close
      // cuts a stream short.
      try {
        openPieces(source).stop(error);
      } catch {
        // A locked ReadableStream is its reader's to cancel.
      }
      return handledRejection(error);
    }
    this.#queuedMessages++;
    this.#counters.messagesOut++;
    const done = this.#sendQueue.then(() =>
      this.#streamFragments(source, options.binary ?? true)
    );
    this.#sendQueue = done.catch(() => {}).finally(() => {
      this.#queuedMessages--;
      this.#scheduleFlush();
    });
    done.catch(() => {});
    return done;
  }

  async #streamFragments(
    source:
      | ReadableStream<StreamPiece>
      | AsyncIterable<StreamPiece>
      | Iterable<StreamPiece>,
    binary: boolean,
  ): Promise<void> {
    const pieces = openPieces(source);
    // A close may cut the stream short: its source may never end.
    const stop = new Interruptible<typeof STOPPED>();
    let cut: { code: number; reason: string } | null | undefined;
    this.#stopStream = (close) => {
      cut = close;
      stop.interrupt(STOPPED);
    };
    // The socket may have ended, or begun closing, while this waited its
    // turn, or close() may have run out of patience for streams.
    if (this.#info !== null || this.#connection.state !== "open") {
      this.#stopStream(null);
    } else if (this.#streamCut !== undefined) {
      this.#stopStream(this.#streamCut);
    }
    // One piece is held back, so the last one can carry FIN.
    let held: Uint8Array | null = null;
    let heldOpcode: number = binary ? OPCODE.Binary : OPCODE.Text;
    let kind: "string" | "bytes" | null = null;
    // A high surrogate ending a string piece waits for the low one starting
    // the next: encoded apart, each half would become U+FFFD.
    let highSurrogate = "";
    let started = false;
    try {
      while (true) {
        // Stopped before its turn came: the source is not pulled at all.
        const next = stop.interrupted
          ? STOPPED
          : await stop.wait(pieces.next());
        if (next === STOPPED) {
          throw closedError(this, "send", this.#info ?? undefined);
        }
        if (next.done) break;
        const piece = next.value instanceof ArrayBuffer
          ? new Uint8Array(attached(next.value, STREAM_PIECE))
          : next.value instanceof Uint8Array
          ? attached(next.value, STREAM_PIECE)
          : next.value;
        const pieceKind = typeof piece === "string"
          ? "string"
          : piece instanceof Uint8Array
          ? "bytes"
          : null;
        if (pieceKind === null) {
          throw new TypeError(
            `Cannot send a stream: each piece must be a string, Uint8Array or ArrayBuffer, got ${
              describe(piece)
            }`,
          );
        }
        if (kind === null) kind = pieceKind;
        else if (kind !== pieceKind) {
          throw new TypeError(
            `Cannot send a stream: its pieces must all be strings or all bytes, got a ${pieceKind} piece after ${kind}`,
          );
        }
        let bytes: Uint8Array;
        if (typeof piece === "string") {
          let text = highSurrogate + piece;
          highSurrogate = "";
          const last = text.charCodeAt(text.length - 1);
          if (last >= 0xd800 && last <= 0xdbff) {
            highSurrogate = text.slice(-1);
            text = text.slice(0, -1);
          }
          bytes = utf8.encode(text);
          // A copy: each piece waits for the next (the last one carries
          // FIN), and a source may reuse its buffer once it yields again.
        } else bytes = (piece as Uint8Array).slice();
        if (held === null) {
          heldOpcode = kind === "string" ? OPCODE.Text : OPCODE.Binary;
        } else {
          started = true;
          await this.#sendPiece(heldOpcode, held, false);
          heldOpcode = OPCODE.Continuation;
        }
        held = bytes;
      }
      // A lone high surrogate at the very end becomes U+FFFD, as in send().
      const tail = utf8.encode(highSurrogate);
      if (tail.length > 0) held = held === null ? tail : concat([held, tail]);
      started = true;
      await this.#sendPiece(heldOpcode, held ?? new Uint8Array(0), true);
    } catch (error) {
      pieces.stop(error);
      // The peer holds the start of a message that cannot be finished:
      // close, so that it is discarded rather than taken for whole. Cut by
      // a close before it began, it is closed for at once too: what was
      // queued behind it must not go out while it never did.
      if (
        (started || cut !== undefined) && this.#connection.state === "open"
      ) {
        if (cut === null) this.#sendClose(); // the peer's close, answered
        else {
          const close = cut ?? {
            code: CLOSE_CODE.InternalError,
            reason: CLOSE_REASON.StreamFailed,
          };
          this.#closeNow(close.code, close.reason);
        }
      }
      throw error;
    } finally {
      this.#stopStream = null;
    }
  }

  async #sendPiece(opcode: number, data: Uint8Array, fin: boolean) {
    if (this.#info !== null || this.#connection.state !== "open") {
      throw closedError(this, "send", this.#info ?? undefined);
    }
    const referenced = this.#connection.sendFragment(opcode, data, fin);
    this.#messaged = true;
    this.#scheduleFlush();
    this.#budget?.report();
    if (referenced || this.bufferedAmount >= this.#options.sendHighWaterMark) {
      await this.#drained();
    }
  }

  /**
   * Subscribes this socket to `topic`: messages published to it (by any
   * socket or the server, on any instance sharing the pub/sub adapter) are
   * sent to this socket. Subscriptions end when the socket closes.
   *
   * @param topic The topic name.
   * @returns `false` when already subscribed, or when the socket has closed
   * (nothing is subscribed then).
   * @throws {TypeError} On a socket without a server (a client socket), or
   * for a topic that is not a string.
   */
  subscribe(topic: string): boolean {
    const topics = this.#topics("subscribe");
    if (this.#info !== null) return false;
    if (this.#subscriptions?.has(topic)) return false;
    const subscription = topics.subscribe(topic, this); // throws for a bad topic
    (this.#subscriptions ??= new Map()).set(topic, subscription);
    return true;
  }

  /**
   * Unsubscribes this socket from `topic`.
   *
   * @param topic The topic name.
   * @returns `false` when it was not subscribed.
   * @throws {TypeError} On a socket without a server.
   */
  unsubscribe(topic: string): boolean {
    const topics = this.#topics("unsubscribe");
    const subscription = this.#subscriptions?.get(topic);
    // Throws for a bad topic.
    const removed = topics.unsubscribe(topic, subscription);
    this.#subscriptions?.delete(topic);
    return removed;
  }

  /**
   * The topics this socket is subscribed to. Once it has closed (and is out
   * of them all), the topics it was in then: a handler's cleanup can still
   * tell which rooms the peer left.
   */
  get subscriptions(): ReadonlySet<string> {
    return new Set(this.#subscriptions?.keys());
  }

  /**
   * Publishes `message` to every subscriber of `topic`, framed once.
   *
   * @param topic The topic name.
   * @param message Text, bytes or a prepared message.
   * @param options `exceptSelf: true` leaves this socket out.
   * @returns How many local subscribers got the message queued.
   * @throws {TypeError} On a socket without a server.
   */
  publish(
    topic: string,
    message: string | Uint8Array | ArrayBuffer | PreparedMessage,
    options?: { exceptSelf?: boolean },
  ): number {
    if (options !== undefined) {
      checkOptionNames("publish", SOCKET_PUBLISH_OPTIONS, options, {
        except:
          "a socket leaves itself out with { exceptSelf: true } (server.publish() takes { except: socket })",
      });
    }
    return this.#topics("publish").publish(topic, message, {
      except: options?.exceptSelf ? this : undefined,
    });
  }

  #topics(action: string): Topics {
    const topics = this.#options.topics;
    if (topics === undefined) {
      throw new TypeError(
        `Cannot ${action}: topics need a server; this socket has none`,
      );
    }
    return topics;
  }

  /**
   * Sends a ping; resolves when a pong arrives after it.
   *
   * @param data At most 125 bytes.
   * @returns A promise that resolves on the next pong. It rejects with
   * {@linkcode ConnectionClosedError} when the socket is closing or closes
   * first (with a `pongTimeout`, a missing pong closes it with 1011).
   * @throws {RangeError} When `data` is longer than 125 bytes.
   */
  ping(data?: Uint8Array): Promise<void> {
    if (!this.#open) {
      return handledRejection(
        closedError(this, "ping", this.#info ?? undefined),
      );
    }
    this.#connection.ping(data);
    if (this.#pingSentAt < 0) this.#startPing(performance.now());
    this.#scheduleFlush();
    return this.#wait(this.#pingWaiters, 0, "ping");
  }

  /**
   * Starts the closing handshake and waits for it to complete: the peer's
   * close frame, then the transport closing. After the close timeout the
   * transport is closed anyway (code 1006). Messages already queued are sent
   * first, a message still streaming out (`sendStream()`) included if it
   * ends within `options.streamGrace`; past that it is cut short, and the
   * messages queued behind it are dropped. Messages the peer sent before its
   * close frame are still delivered to the iterator: while it keeps taking
   * them (at least one a second), reading keeps pausing for it, up to the
   * close timeout; once nothing takes them, reading goes on to find the
   * peer's close frame and drops what would exceed `receiveHighWaterMark` or
   * `maxQueuedMessages`.
   *
   * @param code The status code (1000, 3000-4999, ...).
   * @param reason At most 123 bytes of UTF-8.
   * @param options How long a message still streaming out may take to end.
   * @returns How the connection ended.
   * @throws {RangeError} When the code may not be sent, the reason is too
   * long, or `streamGrace` is not a number of milliseconds.
   */
  close(
    code: number = CLOSE_CODE.NormalClosure,
    reason = "",
    options: CloseOptions = {},
  ): Promise<CloseInfo> {
    checkOptionNames("close", CLOSE_OPTIONS, options);
    // Throws now for a bad code or reason (a valid code alone cannot be).
    if (reason !== "" || !isValidCloseCode(code)) {
      encodeClosePayload(code, reason);
    }
    const grace = options?.streamGrace ?? this.#options.closeTimeout / 2;
    if (typeof grace !== "number" || !(grace >= 0) || grace > 2 ** 31 - 1) {
      throw new RangeError(
        `Cannot close: "streamGrace" must be a number of milliseconds from 0 to 2147483647, got ${
          shown(grace)
        }`,
      );
    }
    if (this.#open) {
      this.#beginClosing();
      const sendClose = () => {
        if (this.#connection.state === "open") this.#sendClose(code, reason);
      };
      if (this.#queuedMessages === 0) sendClose();
      else {
        // Messages still being compressed or streamed out go first. A
        // stream (whose source may never end) gets `grace` to end; then it
        // is cut short: the close frame follows what of it went out (the
        // answer to the peer's, if it closed meanwhile), and the messages
        // queued behind it are dropped (they cannot follow an unfinished
        // one).
        const cut = setTimeout(() => {
          const answer = this.#peerClose !== null;
          const close = answer ? null : { code, reason };
          if (this.#stopStream === null) {
            // Only compressions are under way: they go out first; a stream
            // queued behind them is cut as soon as it starts.
            this.#streamCut = close;
            return;
          }
          this.#stopStream(close);
          if (this.#connection.state !== "open") return;
          if (answer) this.#sendClose();
          else this.#closeNow(code, reason);
        }, grace);
        this.#sendQueue.then(() => {
          clearTimeout(cut);
          sendClose();
        });
      }
    }
    return this.#closed;
  }

  /**
   * Drops the connection at once, without a closing handshake: for a peer
   * that misbehaves or no longer answers. Nothing queued is sent; the peer
   * sees the TCP connection end (1006), and `closed` resolves with 1006
   * (or, when the peer's close frame or a protocol error came first, with
   * its code: RFC 6455 §7.1.5), `wasClean` false.
   */
  terminate(): void {
    // Closing from now on: sends are refused, not queued for nothing.
    this.#closeRequested = true;
    this.#abort();
  }

  /** Sends a close frame now, ahead of any queued message. */
  #closeNow(code: number, reason: string): void {
    this.#beginClosing();
    this.#sendClose(code, reason);
  }

  /** Queues our close frame: the closing handshake's first, or the answer. */
  #sendClose(code?: number, reason?: string): void {
    const connection = this.#connection;
    if (code === undefined) connection.acknowledgeClose();
    else connection.close(code, reason);
    if (this.#closeSeq === Infinity) this.#closeSeq = this.#takenSeq + 1;
    if (this.#closeFrameOwed) {
      this.#closeFrameOwed = false;
      clearTimeout(this.#closeFrameTimer);
    }
    // When it answers the peer's close frame, the handshake is complete.
    if (connection.state === "closed") this.#closeTransportAfterFlush();
    else this.#scheduleFlush();
  }

  /**
   * The peer sent its close frame, or broke the protocol: our close frame
   * (the answer, or the failure's) goes at once when the loop
   * waits for a message or never took one and none is queued; else once
   * the loop comes back for the next message after those queued (their
   * replies go out first), or once it took none for a while, or after the
   * close timeout (RFC 6455 §5.5.1: "as soon as practical").
   */
  #holdCloseFrame(): void {
    this.#closeOwedSince = performance.now();
    const idle = this.#takeWaiter !== null ||
      (this.#takes === 0 && this.#inboxHead === this.#inbox.length);
    if (idle) {
      this.#sendOwedClose();
      return;
    }
    this.#closeFrameOwed = true;
    const patience = Math.min(1000, this.#options.closeTimeout / 4);
    const deadline = performance.now() + this.#options.closeTimeout;
    let takes = this.#takes;
    const check = () => {
      if (this.#takes !== takes && performance.now() + patience < deadline) {
        takes = this.#takes;
        this.#closeFrameTimer = setTimeout(check, patience);
      } else this.#sendOwedClose();
    };
    this.#closeFrameTimer = setTimeout(check, patience);
  }

  /**
   * Sends the close frame held back (the answer to the peer's, or the
   * failure's), after messages still being compressed.
   */
  #sendOwedClose(): void {
    if (this.#closeFrameOwed) {
      this.#closeFrameOwed = false;
      clearTimeout(this.#closeFrameTimer);
    }
    if (this.#queuedMessages === 0) {
      if (this.#connection.state === "open") this.#sendClose();
      return;
    }
    // What is queued now goes out first: messages being compressed, and a
    // message streaming out, which is cut short once half the close timeout
    // has passed since the peer's close frame (its source may never end):
    // the peer, waiting as long as we would, gets the answer in time.
    // Replies sent meanwhile (the socket is still open for them) join the
    // queue behind, and the close frame waits for them too, up to then:
    // from then on nothing more is accepted (the socket is closing), and
    // the stream (or the next one, as it starts) is cut, the close frame
    // going out with it; what is queued behind a cut stream is dropped.
    const cut = setTimeout(
      () => {
        this.#closeRequested = true;
        this.#streamCut = null;
        this.#stopStream?.(null);
        // A stream may be waiting for a peer that stopped reading, not for
        // its source: with keepalive, the write-stall check lets such a
        // peer go; without, the close timeout does, from the last write
        // the peer took (a coarse measure: writes are up to 576 KiB).
        const { pingInterval, pongTimeout } = this.#options;
        if (!(pingInterval > 0 && pongTimeout > 0)) this.#armCloseTimer();
      },
      Math.max(
        0,
        this.#closeOwedSince + this.#options.closeTimeout / 2 -
          performance.now(),
      ),
    );
    const whenDrained = () => {
      if (this.#queuedMessages > 0) {
        this.#sendQueue.then(whenDrained);
        return;
      }
      clearTimeout(cut);
      if (this.#connection.state === "open") this.#sendClose();
    };
    this.#sendQueue.then(whenDrained);
  }

  /** Reads on to find the peer's close frame, within the close timeout. */
  #beginClosing(): void {
    this.#closeRequested = true;
    // A handler that takes no messages was given closeTimeout while open;
    // closing has less patience (see #mustPauseReading), or the peer's
    // close frame, queued behind what it will not take, is found only as
    // the close timeout ends.
    clearTimeout(this.#consumerCheck);
    this.#consumerCheck = undefined;
    this.#resume();
    this.#armCloseTimer();
  }

  /** Closes the transport after the close timeout, unless finished before. */
  #armCloseTimer(): void {
    // Finished already: a write that settles after the end (a stream cut
    // short) must not start a check that nothing would stop.
    if (this.#closeArmed || this.#info !== null) return;
    this.#closeArmed = true;
    this.#lastProgress = performance.now();
    this.#checkCloseIn(this.#options.closeTimeout);
  }

  /**
   * Runs #closeTimeUp in `delay` milliseconds: on the ticker (at the tick
   * after) when it ticks at least four times per close timeout, else by a
   * timer.
   */
  #checkCloseIn(delay: number): void {
    const ticker = this.#options.ticker;
    if (
      ticker === undefined || ticker.period > this.#options.closeTimeout / 4
    ) {
      this.#closeTimer = setTimeout(this.#closeTimeUp, delay);
      return;
    }
    this.#closeDue = performance.now() + delay;
    this.#stopCloseTicks ??= ticker.add((now) => {
      if (now >= this.#closeDue) this.#closeTimeUp();
    });
  }

  // While closing, the close timeout runs from the last write the peer took:
  // a slow peer still reading what was queued before the close frame is not
  // cut off.
  readonly #closeTimeUp = (): void => {
    const now = performance.now();
    const left = this.#options.closeTimeout - (now - this.#lastProgress);
    if (left > 0 && this.#info === null) return this.#checkCloseIn(left);
    const more = this.#drainDeadline() - now;
    if (more <= 0 || this.#info !== null) return this.#abort();
    const closeWrite = this.#transport.closeWrite;
    if (
      !this.#draining && closeWrite !== undefined && !this.#writing &&
      !this.#flushQueued && this.#connection.outputSize === 0
    ) {
      this.#draining = true;
      closeWrite.call(this.#transport).catch(() => {});
    }
    // Looked at again within a close timeout: once the write waiting now is
    // done, our side ends a close timeout after it.
    this.#checkCloseIn(Math.min(more, this.#options.closeTimeout));
  };

  /**
   * Until when a peer that has not answered our close frame within the
   * close timeout is waited for all the same. A write counts as taken once
   * the kernel has it, and the kernel holds several MB for a slow peer (it
   * also wakes a blocked writer only once much of that has been read):
   * closing then would reset the connection as soon as the peer sends
   * anything (a message, its close frame), and a reset discards what it
   * has not read yet. So when the kernel may still hold much for the peer
   * (see #unreadSince), it gets the time to read that at 64 KiB per
   * `closeTimeout`, up to four close timeouts more (a peer that stopped
   * reading is given longer while open: `pingInterval + pongTimeout`);
   * once everything is written, our side ends (FIN, after the data) and
   * reading goes on. A peer sent little lately gets nothing more.
   *
   * @returns The deadline; in the past when there is none.
   */
  #drainDeadline(): number {
    const { closeTimeout } = this.#options;
    // Our close frame unanswered, or our answer to the peer's still waiting
    // behind what was queued before it.
    const state = this.#connection.state;
    if (state !== "closing" && !(state === "closed" && this.#writing)) {
      return 0;
    }
    const unread = this.#unreadSince(this.#lastProgress);
    if (unread < DRAIN_BYTES) return 0;
    return this.#lastProgress + closeTimeout +
      Math.min(unread / DRAIN_BYTES, DRAIN_MAX) * closeTimeout;
  }

  /** Closes with 1000 (for `await using`). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close().then(() => {});
  }

  /** Iterates over received messages until the connection closes. */
  [Symbol.asyncIterator](): AsyncIterator<Message> {
    if (this.#options.streamMessages) {
      throw new TypeError(
        "Cannot iterate messages: this socket streams them (streamMessages); iterate socket.streams()",
      );
    }
    return this.#iterator<Message>();
  }

  /** An iterator of the messages (or of their streams). */
  #iterator<T>(): AsyncIterator<T> {
    return {
      next: () => this.#next() as Promise<IteratorResult<T>>,
      return: () => Promise.resolve({ done: true, value: undefined }),
    };
  }

  /**
   * The received messages as a `ReadableStream`, in the shape of the
   * standard `WebSocketStream`: pipe it somewhere, or read it instead of
   * iterating the socket (use one or the other). Canceling it closes the
   * socket with 1000.
   *
   * @throws {TypeError} When the socket streams its messages
   * (`streamMessages`): use {@linkcode Socket.prototype.streams}.
   */
  get readable(): ReadableStream<Message> {
    if (this.#options.streamMessages) {
      throw new TypeError(
        "Cannot read messages as a stream: this socket streams them (streamMessages); iterate socket.streams()",
      );
    }
    return this.#readable ??= new ReadableStream<Message>({
      pull: async (controller) => {
        const { done, value } = await this.#next();
        if (done) controller.close();
        else controller.enqueue(value as Message);
      },
      cancel: () => {
        this.close().catch(() => {});
      },
    }, { highWaterMark: 0 });
  }

  /**
   * A `WritableStream` that sends each chunk as one message, in the shape of
   * the standard `WebSocketStream`; each write resolves like `send()`.
   * Closing it closes the socket with 1000; aborting it, with 1011.
   */
  get writable(): WritableStream<string | Uint8Array | ArrayBuffer> {
    return this.#writable ??= new WritableStream({
      write: (message) => this.send(message),
      close: async () => {
        await this.close();
      },
      abort: async () => {
        await this.close(CLOSE_CODE.InternalError);
      },
    });
  }

  /**
   * Iterates over received messages as streams, one per message, with its
   * pieces as they arrive — for messages too large to hold in memory. Needs
   * the `streamMessages` option. The pieces not read yet, of every message
   * (taken or still queued), count against `receiveHighWaterMark`: past it,
   * the socket stops reading from the peer until the handler reads some.
   * Read or cancel each stream; one never read is let go (it stops
   * counting) once it has arrived whole and the next message is taken, and
   * so are the streams taken, while the handler waits for the next message,
   * when none of them has had a piece read for `closeTimeout` (piped into a
   * transform nobody reads yet, say): a reader slower than that per piece
   * no longer holds the peer back.
   * Text pieces are strings (UTF-8 checked as they arrive), binary pieces
   * are bytes. A stream errors with {@linkcode ConnectionClosedError} when
   * the connection ends mid-message.
   *
   * @returns The messages, as streams.
   * @throws {TypeError} When the socket does not stream messages.
   */
  streams(): AsyncIterable<IncomingStream> {
    if (!this.#options.streamMessages) {
      throw new TypeError(
        "Cannot stream messages: enable the streamMessages option, or iterate the socket",
      );
    }
    return {
      [Symbol.asyncIterator]: () => this.#iterator<IncomingStream>(),
    };
  }

  /**
   * Runs the connection: reads until it closes. Called once by the server
   * or client that created the socket.
   *
   * @returns A promise that settles when the transport has closed.
   */
  async run(): Promise<void> {
    const reader = this.#options.reader ??
      this.#transport.readable.getReader({ mode: "byob" });
    const given = this.#options.readBuffer;
    // (A detached buffer has no bytes: not taken.)
    let buffer = given?.byteLength === MIN_READ
      ? given
      : new ArrayBuffer(MIN_READ);
    let smallReads = 0;
    let lastTurn = -1;
    let readsThisTurn = 0;
    let reading = false;
    try {
      if (this.#options.head && this.#options.head.length > 0) {
        this.#counters.bytesIn += this.#options.head.length;
        this.#receive(this.#options.head.slice());
      }
      // A server stops reading once closed; a client reads on until the
      // server closes the TCP connection (RFC 6455 §7.1.1).
      while (
        this.#connection.state !== "closed" ||
        this.#options.role === "client" ||
        (this.#failure !== null && !this.#transportClosed)
      ) {
        if (this.#mustPauseReading()) {
          // Backpressure: leave the bytes in the TCP window until the
          // handler takes its messages.
          this.#paused = true;
          await new Promise<void>((resolve) => this.#resumeReading = resolve);
          if (this.#transportClosed) break;
          continue;
        }
        const now = thisTurn();
        if (now !== lastTurn) {
          lastTurn = now;
          readsThisTurn = 0;
        } else if (++readsThisTurn === READS_PER_TURN) {
          // Fair share: let the other connections have this turn.
          await afterThisTurn();
          continue;
        }
        if (this.#unparsed !== null) {
          // The rest of the last read (in `buffer`: parsed before reading
          // into it again), a queue's worth at a time, one per turn.
          const rest = this.#unparsed;
          this.#unparsed = null;
          this.#receive(rest);
          continue;
        }
        reading = true;
        const { value, done } = await reader.read(new Uint8Array(buffer));
        reading = false;
        if (done || value === undefined) break;
        buffer = value.buffer;
        this.#counters.bytesIn += value.length;
        if (
          this.#lingerTimer !== undefined &&
          (this.#lingerBudget -= value.length) < 0
        ) this.#abort();
        this.#receive(value);
        // Read size follows the traffic: grow when a read fills the buffer;
        // shrink after a run of reads that used under an eighth of it, so
        // idle sockets hold little memory, yet traffic that alternates big
        // and small reads does not reallocate (and zero-fill) all the time.
        if (value.length === buffer.byteLength) {
          smallReads = 0;
          if (
            buffer.byteLength < MAX_READ ||
            (buffer.byteLength < MAX_READ_IN_LARGE_FRAME &&
              this.#connection.payloadRemaining >= buffer.byteLength)
          ) {
            buffer = new ArrayBuffer(buffer.byteLength * 2);
          }
        } else if (
          value.length >= buffer.byteLength / 8 || buffer.byteLength <= MIN_READ
        ) {
          smallReads = 0;
        } else if (++smallReads === SMALL_READS_BEFORE_SHRINK) {
          smallReads = 0;
          buffer = new ArrayBuffer(Math.max(MIN_READ, buffer.byteLength / 8));
        }
      }
    } catch (error) {
      // A reset or a TLS failure ends the connection; an error anywhere else
      // is a bug of ours, not to be taken for the peer going away.
      if (!reading) return this.#failInternally(error);
    }
    this.#connection.receiveEof();
    // Let a last flush (a close frame echo) finish before closing, within
    // the close timeout: a transport whose input ended may leave a write to
    // a peer that stopped reading pending for good.
    if (this.#writing || this.#flushQueued) this.#armCloseTimer();
    await this.#flushDone();
    this.#finish();
  }

  #receive(chunk: Uint8Array): void {
    // Evicted by the memory budget: input is read (so that closing does not
    // reset a peer still sending) but not kept.
    if (this.#evicted) return;
    const connection = this.#connection;
    this.#heardFrom = true;
    // Parsing stops once the queue is full (a read may hold thousands of
    // small frames, or compressed ones that each inflate to maxPayload); the
    // rest waits for the handler to take messages. When nothing takes them
    // (dropping), a queue's worth is parsed per turn, and dropped.
    const dataBefore = connection.dataBytesReceived;
    const parsed = connection.receive(
      chunk,
      this.#dropping ? this.#fullLimit : this.#receiveLimit(),
    );
    // A message still arriving is not idleness.
    if (connection.dataBytesReceived !== dataBefore) this.#messaged = true;
    if (parsed < chunk.length) this.#unparsed = chunk.subarray(parsed);
    this.#handleEvents();
    // messageTimeout runs from the read that began the message still
    // arriving (a clock read per such read, not per message).
    const ticker = this.#options.ticker;
    if (
      connection.receiving && (this.#options.messageTimeout ?? 0) > 0 &&
      ticker !== undefined &&
      (this.#receivingSince < 0 || this.#messageArrived)
    ) {
      this.#receivingSince = ticker.now();
      this.#messageArrived = false;
    }
    this.#budget?.report();
  }

  /** Acts on what the connection made of the input (or of `fail()`). */
  #handleEvents(): void {
    const connection = this.#connection;
    for (const event of connection.takeEvents()) {
      switch (event.type) {
        case "stream-start":
          this.#startStream(event.binary);
          break;
        case "stream-data":
          if (this.#dropping && this.#inboxFull()) {
            // Closing, and the handler stopped reading: the message will
            // not be read whole.
            this.#current?.error(
              closedError(this, "receive", this.#info ?? undefined),
            );
            this.#current = null;
          } else this.#current?.push(event.data);
          break;
        case "stream-end":
          this.#current?.end();
          this.#current = null;
          this.#counters.messagesIn++;
          this.#messaged = true;
          this.#messageArrived = true;
          break;
        case "text":
        case "binary":
          this.#counters.messagesIn++;
          this.#messaged = true;
          this.#messageArrived = true;
          this.#deliver(event.data);
          break;
        case "pong":
          this.#onPong();
          break;
        case "close":
          this.#peerClose = { code: event.code, reason: event.reason };
          this.#endCurrentStream();
          if (connection.state === "open") this.#holdCloseFrame();
          break;
        case "error":
          this.#failure = event.error;
          this.#endCurrentStream();
          // Held back: replies to the messages before the error go first.
          if (connection.state === "open") this.#holdCloseFrame();
          break;
      }
    }
    if (connection.outputSize > 0) this.#scheduleFlush();
    if (connection.state === "closed") this.#closeTransportAfterFlush();
  }

  /**
   * A message being streamed in will not be finished (the peer closed, or
   * broke the protocol): its stream errors now, so that a handler reading
   * it comes back for the next message, where our close frame waits.
   */
  #endCurrentStream(): void {
    this.#current?.error(
      closedError(
        this,
        "receive",
        this.#peerClose === null
          ? undefined
          : { ...this.#peerClose, wasClean: false },
      ),
    );
    this.#current = null;
  }

  /**
   * Inbound backpressure: stop reading while the handler has a full queue.
   * Once a close frame is on its way, reading goes on regardless, to find
   * the peer's close frame.
   */
  #mustPauseReading(): boolean {
    // The peer's close frame or a protocol error ended the input: nothing
    // more is read while our close frame is held back or being written (a
    // peer flooding after its error would be read, and discarded, at wire
    // speed); after an error, reading resumes only to linger.
    if (this.#failure !== null) return this.#lingerTimer === undefined;
    // After the peer's close frame, only its EOF can come, and reading it
    // closes a Deno.Conn: not while our answer is still being written.
    if (
      this.#peerClose !== null &&
      (this.#connection.state === "open" || this.#writing ||
        this.#flushQueued)
    ) return true;
    if (this.#closeRequested) {
      // Reading must go on to find the peer's close frame. It still pauses
      // for a loop that keeps taking messages; one that takes none for a
      // while is taken for gone: reading resumes and drops what would not
      // fit (see #deliver).
      if (
        this.#dropping || this.#connection.state === "closed" ||
        !this.#inboxFull()
      ) return false;
      this.#watchConsumer();
      return true;
    }
    if (this.#connection.state !== "open" || this.#dropping) return false;
    if (!this.#inboxFull()) return false;
    // A handler waiting for the next message, with no stream of its being
    // read, cannot free anything: pausing would only deadlock (a stream it
    // took and left unread, still arriving, grows up to maxPayload, as a
    // message would). A stream locked but not read (piped into a transform
    // nobody reads yet, a tee branch) is let go after closeTimeout.
    if (this.#takeWaiter !== null) {
      if (!this.#taken.some((queue) => queue.readable.locked)) return false;
      this.#watchStreamReaders();
    }
    // A socket whose messages are never taken (a handler or client that
    // only sends, or only awaits `closed`) would never read the peer's close
    // frame or EOF: after closeTimeout it closes (see #watchConsumer), then
    // reads on to find the peer's close frame. One that took some cannot be
    // told from a slow one (a helper's `for await ... return` between long
    // steps): it holds the peer back, as TCP flow control does.
    if (this.#takes === 0) this.#watchConsumer(this.#options.closeTimeout);
    return true;
  }

  /**
   * While reading is paused for streams the handler holds locked while it
   * waits for another message: if none of them has a piece read for
   * closeTimeout, they stop counting (as skipped ones do) and reading
   * resumes. A slow reader (a sink taking a second or more per piece) is
   * not taken for none: each piece read starts the wait again.
   */
  #watchStreamReaders(): void {
    if (this.#streamReaderCheck !== undefined) return;
    const takes = this.#takes;
    this.#streamReaderCheck = setTimeout(() => {
      this.#streamReaderCheck = undefined;
      if (this.#resumeReading === null || this.#takeWaiter === null) return;
      // Read from meanwhile, though reading stayed paused: wait again, for
      // a reader that may stop now (nothing else would look again).
      if (this.#takes !== takes) return this.#watchStreamReaders();
      for (const queue of this.#taken) queue.release();
      this.#taken = [];
      this.#resume();
    }, this.#options.closeTimeout);
  }

  /**
   * While reading is paused after close(), checks that messages are taken;
   * else reading goes on, dropping what does not fit. Before any message
   * was taken, a full queue that stays untaken closes the socket with 1008
   * instead: messages are not dropped unseen while the connection looks
   * healthy to the peer.
   */
  #watchConsumer(
    patience = Math.min(1000, this.#options.closeTimeout / 4),
  ): void {
    if (this.#consumerCheck !== undefined) return;
    let takes = this.#takes;
    const check = () => {
      this.#consumerCheck = undefined;
      if (this.#resumeReading === null) return; // reading again
      if (!this.#closeRequested && this.#takes > 0) return; // a consumer
      if (this.#takes === takes && !this.#closeRequested) {
        this.close(CLOSE_CODE.PolicyViolation, CLOSE_REASON.NotReading)
          .catch(() => {});
      } else if (this.#takes === takes) {
        this.#dropping = true;
        this.#resume();
      } else {
        takes = this.#takes;
        this.#consumerCheck = setTimeout(check, patience);
      }
    };
    this.#consumerCheck = setTimeout(check, patience);
  }

  /** What the queue can still take, for one `Connection.receive()`. */
  #receiveLimit(): ReceiveLimit {
    const limit = this.#limit;
    limit.messages = this.#options.maxQueuedMessages -
      (this.#inbox.length - this.#inboxHead);
    limit.bytes = this.#options.receiveHighWaterMark - this.#inboxBytes -
      this.#streamBytes;
    return limit;
  }

  /**
   * Whether the handler has its fill: the messages waiting for it, and the
   * pieces of streamed messages it has not read (whether their streams were
   * taken or not), against `receiveHighWaterMark` and `maxQueuedMessages`.
   */
  #inboxFull(): boolean {
    return this.#inboxBytes + this.#streamBytes >
        this.#options.receiveHighWaterMark ||
      this.#inbox.length - this.#inboxHead >= this.#options.maxQueuedMessages;
  }

  #startStream(binary: boolean): void {
    const queue = new PieceQueue<string | Uint8Array>((cost) => {
      this.#streamBytes += cost;
      if (cost < 0) {
        // The handler reads (or let go of) pieces: progress, and room.
        this.#takes++;
        this.#resume();
        this.#budget?.report();
      }
    }, () => {
      // The rest of this message is discarded as it arrives.
      if (this.#current === queue) this.#current = null;
    });
    this.#current = queue;
    const message: IncomingStream = binary
      ? {
        type: "binary",
        readable: queue.readable as ReadableStream<Uint8Array>,
      }
      : { type: "text", readable: queue.readable as ReadableStream<string> };
    (this.#queues ??= new WeakMap()).set(message, queue);
    this.#deliver(message);
  }

  #deliver(message: Message | IncomingStream): void {
    const waiter = this.#takeWaiter;
    if (waiter !== null) {
      this.#takeWaiter = this.#moreWaiters?.shift() ?? null;
      this.#took(message);
      waiter({ done: false, value: message });
      return;
    }
    // Once close() was called with nothing taking messages any more, a full
    // queue no longer stops reading (to find the peer's close frame): what
    // would not fit is dropped.
    if (this.#dropping && this.#inboxFull()) {
      // Dropped: a stream's pieces would count for nobody to read.
      const queue = this.#queues?.get(message as IncomingStream);
      if (queue !== undefined) {
        queue.release();
        if (this.#current === queue) this.#current = null;
      }
      return;
    }
    this.#inbox.push(message);
    this.#inboxBytes += sizeOf(message);
  }

  /** A message was handed to the handler: a stream's pieces count on. */
  #took(message: Message | IncomingStream): void {
    this.#releaseSkipped();
    const queue = this.#queues?.get(message as IncomingStream);
    if (queue !== undefined) this.#taken.push(queue);
  }

  /**
   * The handler moved on (it got a later message): whole
   * messages it took before and never began to read, or stopped reading
   * (skipped, neither read nor canceled), no longer hold up reading, which
   * would otherwise stall. Streams it reads (concurrently, say) go on
   * counting, so a slow reader still holds the peer back.
   */
  #releaseSkipped(): void {
    if (this.#taken.length === 0) return;
    this.#taken = this.#taken.filter((queue) => {
      if (queue.done) return false;
      if (!queue.ended || queue.readable.locked) return true;
      queue.release();
      return false;
    });
  }

  #next(): Promise<IteratorResult<Message | IncomingStream>> {
    this.#takes++;
    // A consumer came after all: backpressure again rather than drops.
    if (this.#dropping && !this.#closeRequested) this.#dropping = false;
    if (this.#inboxHead < this.#inbox.length) {
      const message = this.#inbox[this.#inboxHead++];
      this.#inboxBytes -= sizeOf(message);
      this.#budget?.report();
      this.#took(message);
      if (this.#inboxHead === this.#inbox.length) {
        this.#inbox = [];
        this.#inboxHead = 0;
        this.#resume();
      }
      return Promise.resolve({ done: false, value: message });
    }
    // The loop has handled what came before the peer's close frame (or
    // protocol error).
    if (this.#closeFrameOwed) this.#sendOwedClose();
    if (this.#info !== null || this.#connection.state === "closed") {
      return Promise.resolve({ done: true, value: undefined });
    }
    const taking = new Promise<IteratorResult<Message | IncomingStream>>(
      (resolve) => {
        if (this.#takeWaiter === null) this.#takeWaiter = resolve;
        else (this.#moreWaiters ??= []).push(resolve);
      },
    );
    // Reading paused for a stream the handler left unread resumes.
    if (this.#streamBytes > 0) this.#resume();
    return taking;
  }

  #scheduleFlush(): void {
    if (this.#flushQueued || this.#writing) return;
    this.#flushQueued = true;
    queueEndOfTurn();
    Socket.#toFlush[Socket.#flushCount++] = this;
  }

  // Corking: sockets with output are written once the JavaScript that this
  // turn of the event loop set off has run (handlers, their awaits, the
  // other sockets' reads), so that what a socket was sent meanwhile goes out
  // in one write: a read of 16 messages is echoed in one write, not two, and
  // a broadcast of two messages reaches each subscriber in one. One
  // immediate for all of them (a broadcast schedules a thousand).
  // The list keeps its length (emptying an array frees its storage, and
  // the next turn would allocate it again).
  static #toFlush: (Socket<unknown> | undefined)[] = [];
  static #flushCount = 0;
  static {
    flushSockets = Socket.#flushAll;
  }
  static #flushAll(): void {
    const sockets = Socket.#toFlush;
    // A flush may schedule others; they join this pass.
    for (let i = 0; i < Socket.#flushCount; i++) {
      const socket = sockets[i]!;
      sockets[i] = undefined;
      socket.#flush();
    }
    Socket.#flushCount = 0;
  }

  // Callbacks rather than an async function: its promise, generator and
  // await were about 600 bytes of garbage per write.
  #flush(): void {
    this.#flushQueued = false;
    if (this.#writing) return;
    const connection = this.#connection;
    // Our side has ended (see #drainDeadline): pongs have nowhere to go.
    if (this.#draining) connection.releaseOutput(connection.takeOutput());
    if (connection.outputSize === 0) return this.#flushed();
    if (!this.#noDelay) this.#turnNagleOff();
    this.#writing = true;
    const chunks = connection.takeOutput();
    const seq = ++this.#takenSeq;
    let size = 0;
    for (let i = 0; i < chunks.length; i++) size += chunks[i].length;
    this.#inFlight = size;
    this.#shares?.taken(chunks);
    // Queue every write, then wait for the last: one turn, not one per chunk.
    // Output counts as written in steps of 64 KiB or more (a chunk over
    // 576 KiB goes in 512 KiB slices): a slow peer's progress shows in
    // bufferedAmount and keeps the close and write timeouts from cutting it
    // off.
    const last = chunks.length - 1;
    let unreported = 0;
    for (let i = 0; i <= last; i++) {
      let chunk = chunks[i];
      while (chunk.length > WRITE_SLICE + LARGE_CHUNK) {
        const slice = chunk.subarray(0, WRITE_SLICE);
        chunk = chunk.subarray(WRITE_SLICE);
        this.#writer.write(slice).then(
          () => this.#wroteSome(WRITE_SLICE),
          ignore,
        );
      }
      if (i < last) {
        const written = this.#writer.write(chunk);
        unreported += chunk.length;
        if (unreported < LARGE_CHUNK) written.catch(ignore);
        else {
          const size = unreported;
          unreported = 0;
          written.then(() => this.#wroteSome(size), ignore);
        }
      } else {
        this.#writer.write(chunk).then(() => {
          connection.releaseOutput(chunks);
          this.#wroteSome(this.#inFlight);
          this.#writtenSeq = seq;
          if (seq === this.#pingSeq && this.#pingSentAt >= 0) {
            this.#pingSentAt = performance.now();
          }
          this.#flushed();
        }, () => {
          // The peer is gone; reading will notice and finish the socket.
          this.#shares?.written(this.#inFlight);
          this.#inFlight = 0;
          this.#budget?.report();
          this.#abort();
          this.#flushed();
        });
      }
    }
  }

  /** Some of the output was written: the peer takes what we send. */
  #wroteSome(size: number): void {
    this.#inFlight -= size;
    this.#shares?.written(size);
    this.#budget?.report();
    this.#counters.bytesOut += size;
    this.#wrote = true;
    const now = performance.now();
    this.#unreadBytes = this.#unreadSince(now) + size;
    this.#unreadAt = now;
    if (this.#closeArmed && this.#writtenSeq < this.#closeSeq) {
      this.#lastProgress = now;
    }
  }

  /**
   * What the kernel may still hold for the peer at `now`: the bytes
   * written, less what a peer reading 64 KiB per `closeTimeout` would have
   * read since.
   */
  #unreadSince(now: number): number {
    const read = (now - this.#unreadAt) * DRAIN_BYTES /
      this.#options.closeTimeout;
    return Math.max(0, this.#unreadBytes - read);
  }

  /** After a write (or none): wakes the waiters, then what comes next. */
  #flushed(): void {
    this.#writing = false;
    if (this.#idleWaiters.length > 0) {
      for (const resolve of this.#idleWaiters.splice(0)) resolve();
    }
    this.#resolveDrainWaiters();
    // What was sent while writing goes out with the rest of this turn's.
    if (this.#connection.outputSize > 0 && !this.#transportClosed) {
      this.#scheduleFlush();
    } else if (this.#connection.state === "closed") {
      this.#closeTransportAfterFlush();
    } else if (this.#evicted) {
      // The close frame of an eviction (see #evict) is out: our side ends,
      // and what the peer still sends of its message is read and discarded
      // for a moment, as after a protocol error, so that closing does not
      // reset a peer still sending (which might then never read why).
      this.#linger();
    }
  }

  #resolveDrainWaiters(): void {
    if (this.#drainWaiters.length === 0) return;
    const closed = this.#info;
    this.#drainWaiters = this.#drainWaiters.filter((waiter) => {
      if (waiter.seq <= this.#writtenSeq) waiter.resolve();
      else if (closed !== null) {
        waiter.reject(closedError(this, "send", closed));
      } else return true;
      return false;
    });
  }

  /** Resolves when everything queued so far has been written. */
  #drained(): Promise<void> {
    return this.#wait(this.#drainWaiters, this.#takenSeq + 1, "send");
  }

  #wait(list: Waiter[], seq: number, action: string): Promise<void> {
    if (this.#info !== null) {
      return handledRejection(closedError(this, action, this.#info));
    }
    const promise = new Promise<void>((resolve, reject) =>
      list.push({ seq, resolve, reject })
    );
    promise.catch(() => {});
    return promise;
  }

  async #flushDone(): Promise<void> {
    // (A transport closed by us may still not settle a write pending on it.)
    while ((this.#writing || this.#flushQueued) && !this.#transportClosed) {
      await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    }
  }

  #closeTransportAfterFlush(): void {
    if (this.#connection.outputSize > 0) this.#scheduleFlush();
    // Reading paused while a close frame was held: a client reads on for
    // the server's EOF, once its last write is done (on reading EOF, a
    // Deno.Conn closes, and a write still pending fails).
    if (!this.#writing && !this.#flushQueued) this.#resume();
    // The server closes the TCP connection first (RFC 6455 §7.1.1), once
    // its last write is done; a client gives it the close timeout to do so,
    // unless the server broke the protocol (§7.1.7: nothing more is owed to
    // it). A peer that stopped reading would hold that write, and the
    // connection, for good: the close timeout bounds it.
    const waitForServer = this.#options.role === "client" &&
      this.#failure === null;
    if (this.#writing || this.#flushQueued || waitForServer) {
      this.#armCloseTimer();
    } else if (this.#failure !== null) this.#linger();
    else this.#abort();
  }

  /**
   * After a protocol error, once our close frame is written: ends our side
   * (FIN) and reads on, discarding, until the peer's EOF or for a moment.
   * Closing with unread input sends a reset, and a peer still sending (the
   * rest of a message over maxPayload) would then fail its write and often
   * never read the close frame that says why (browsers report 1006).
   */
  #linger(): void {
    if (this.#lingerTimer !== undefined || this.#transportClosed) return;
    this.#lingerTimer = setTimeout(
      () => this.#abort(),
      Math.min(LINGER, this.#options.closeTimeout),
    );
    // What the peer may still be sending of the frame that failed: a flood
    // of anything else is not read for long.
    this.#lingerBudget = LINGER_SLACK +
      Math.min(this.#connection.lastFrameLength, LINGER_MAX_BYTES);
    this.#transport.closeWrite?.().catch(() => {});
    this.#resume();
  }

  // Frames leave when written, not behind unacknowledged ones (Nagle's
  // algorithm can hold a small write for the peer's delayed ACK, ~40 ms).
  // Set before the first write rather than on accepting: a server's last
  // write, the answer to a peer's close, goes out with the FIN anyway, and a
  // connection that only opens and closes saves the call (~7 µs).
  #turnNagleOff(): void {
    if (
      this.#options.role === "server" && this.#connection.state === "closed"
    ) return;
    this.#noDelay = true;
    try {
      this.#transport.setNoDelay?.(true);
    } catch {
      // Closed already: the write will find out.
    }
  }

  #resume(): void {
    const resume = this.#resumeReading;
    this.#resumeReading = null;
    resume?.();
  }

  #abort(): void {
    this.#resume();
    if (this.#transportClosed) return;
    this.#transportClosed = true;
    try {
      this.#transport.close();
    } catch {
      // Closed by the other side of a TLS connection already.
    }
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }

  #startPing(now: number): void {
    this.#pingSentAt = now;
    // The next write takes it (after the one in flight, if any).
    this.#pingSeq = this.#takenSeq + 1;
  }

  #onPong(): void {
    if (this.#pingSentAt >= 0) {
      const rtt = performance.now() - this.#pingSentAt;
      this.#pingSentAt = -1;
      this.#rtt = rtt;
      countRoundTrip(this.#counters, rtt);
    }
    for (const waiter of this.#pingWaiters.splice(0)) waiter.resolve();
  }

  /** Keepalive and idle checks, on the shared ticker. */
  #tick(now: number): void {
    if (this.#heardFrom) {
      this.#heardFrom = false;
      this.#lastHeard = now;
    }
    // Not idle while a message passes either way, nor while the handler
    // takes what the peer sent (messages, pieces of streamed ones), which
    // may be long after it was read off the wire. Only progress counts: a
    // handler that takes nothing (one that only pushes, or skipped a
    // stream) does not keep an idle peer connected.
    if (this.#messaged || this.#takes !== this.#takesSeen) {
      this.#messaged = false;
      this.#takesSeen = this.#takes;
      this.#lastMessage = now;
    }
    if (this.#wrote || !this.#writing) {
      this.#wrote = false;
      this.#lastWritten = now;
    }
    // Closing, or our close frame is held back (bounded by closeTimeout).
    if (this.#connection.state !== "open" || this.#closeFrameOwed) return;
    const { pingInterval, pongTimeout, idleTimeout } = this.#options;
    // A peer that takes nothing we write for as long as keepalive gives a
    // silent one is as good as gone, though it may still be sending (so no
    // ping is due) or we stopped reading it (so no pong could be seen).
    if (
      pingInterval > 0 && pongTimeout > 0 &&
      now - this.#lastWritten >= pingInterval + pongTimeout
    ) {
      this.#terminate(CLOSE_CODE.InternalError, CLOSE_REASON.WriteTimeout);
      if (this.#counters.timeouts) this.#counters.timeouts.write++;
      return;
    }
    if (this.#resumeReading !== null) {
      // Reading is paused by backpressure: a pong could not be seen, so the
      // peer is not judged (the keepalive starts over once reading
      // resumes). Pings still go out: a peer that is gone makes their write
      // fail, which ends the socket; nothing else would notice, since its
      // close or EOF is never read.
      this.#pingSentAt = -1;
      if (pingInterval > 0 && now - this.#lastHeard >= pingInterval) {
        this.#lastHeard = now;
        this.#connection.ping();
        this.#scheduleFlush();
      }
    } else if (this.#pingSentAt >= 0) {
      // A ping still queued behind other output is not judged: the
      // write-stall check above covers a peer that takes nothing.
      if (
        pongTimeout > 0 && this.#writtenSeq >= this.#pingSeq &&
        now - this.#pingSentAt >= pongTimeout
      ) {
        this.#terminate(CLOSE_CODE.InternalError, CLOSE_REASON.PongTimeout);
        if (this.#counters.timeouts) this.#counters.timeouts.pong++;
      }
    } else if (pingInterval > 0 && now - this.#lastHeard >= pingInterval) {
      this.#connection.ping();
      this.#startPing(now);
      this.#scheduleFlush();
    }
    if (
      idleTimeout > 0 && now - this.#lastMessage >= idleTimeout &&
      !this.#closeRequested && this.#forcedClose === null
    ) {
      this.close(CLOSE_CODE.GoingAway, CLOSE_REASON.IdleTimeout);
      if (this.#counters.timeouts) this.#counters.timeouts.idle++;
    }
    const messageTimeout = this.#options.messageTimeout ?? 0;
    if (messageTimeout > 0 && this.#connection.state === "open") {
      this.#checkMessageTime(now, messageTimeout);
    }
  }

  /**
   * Fails the connection with 1008 when one frame or message has been
   * arriving for `messageTimeout` (a peer trickling a large message, or a
   * frame, a byte now and then): measured from the read that began it (or
   * the first tick that saw it, after a pause) and checked on ticks, so it
   * fires up to a tick late, never early. A message that
   * waits because we stopped reading is not the peer's doing: its time
   * starts over once reading resumes, and a tick that finds reading paused
   * at any time since the last (a slow handler that frees room now and
   * then, reading resuming for a moment each time) starts it over too. The
   * verdict waits for the timers' next turn, after input that arrived while
   * the event loop was busy (a long task, a GC pause) has been read.
   */
  #checkMessageTime(now: number, messageTimeout: number): void {
    // Reading paused since the last tick (even if it has resumed since):
    // the peer was sending faster than the handler took it.
    const paused = this.#paused;
    this.#paused = false;
    if (paused || !this.#isMessageArriving()) {
      this.#messageArrived = false;
      this.#receivingSince = -1;
    } else if (this.#messageArrived || this.#receivingSince < 0) {
      this.#messageArrived = false;
      this.#receivingSince = now;
    } else if (
      now - this.#receivingSince >= messageTimeout &&
      this.#messageTimer === undefined
    ) {
      this.#messageTimer = setTimeout(() => {
        this.#messageTimer = undefined;
        // Input read meanwhile may have ended that message, and begun another.
        if (
          this.#messageArrived || this.#paused || !this.#isMessageArriving() ||
          this.#receivingSince < 0 ||
          this.#options.ticker!.now() - this.#receivingSince < messageTimeout
        ) return;
        this.#connection.fail(
          new ProtocolError(
            "MESSAGE_TIMEOUT",
            `No whole message within messageTimeout (${messageTimeout} ms)`,
          ),
        );
        if (this.#counters.timeouts) this.#counters.timeouts.message++;
        this.#handleEvents();
      }, 0);
    }
  }

  /** Whether a frame or message is arriving, and ours to wait for. */
  #isMessageArriving(): boolean {
    return this.#connection.state === "open" && !this.#closeFrameOwed &&
      this.#resumeReading === null && this.#connection.receiving;
  }

  /**
   * Processing the peer's input threw: the core's state can no longer be
   * trusted, so the transport closes at once (no close frame: writing one
   * would go through that state) and `closed` reports 1011
   * {@linkcode CLOSE_REASON.InternalError}. The error goes to
   * `onInternalError`, or to `console.error` without one.
   */
  #failInternally(error: unknown): void {
    // A close already decided (the memory budget's 1013) is what happened.
    this.#forcedClose ??= {
      code: CLOSE_CODE.InternalError,
      reason: CLOSE_REASON.InternalError,
    };
    this.#abort();
    this.#finish();
    try {
      if (this.#options.onInternalError) {
        this.#options.onInternalError(this as Socket<unknown>, error);
      } else console.error("duplex: internal error:", error);
    } catch {
      // A reporter that throws must not turn this into an unhandled
      // rejection of run().
    }
  }

  /**
   * Gives up on the peer (it does not read, or does not answer): closes the
   * transport at once, without waiting to send a close frame the peer would
   * not take anyway, so it sees 1006; `closed` reports `code` and `reason`.
   */
  #terminate(code: number, reason: string): void {
    if (this.#forcedClose !== null || this.#info !== null) return;
    this.#forcedClose = { code, reason };
    this.#connection.close(code, reason);
    this.#abort();
  }

  /**
   * What this socket holds, for the server's memory budget: the message
   * still arriving, messages (and pieces of streamed ones) the handler has
   * not taken, and output not yet written.
   */
  #heldBytes(): number {
    return this.#connection.partialMessageBytes + this.#inboxBytes +
      this.#streamBytes + this.bufferedAmount;
  }

  /**
   * The server's sockets together hold more than its memory budget
   * (`maxBufferedBytes`), and this one holds the most: it lets go of
   * everything at once (messages the handler has not taken, streams it is
   * reading, output not written, input not parsed) and fails with 1013 (try
   * again later). A peer with nothing queued for it gets the close frame;
   * once that is written our side ends, and what the peer still sends is
   * read and discarded for a moment (see #linger), so that the close does
   * not reset a peer still sending. One with output queued is likely not
   * reading, and its transport closes at once (it sees 1006). `closed`
   * reports 1013 {@linkcode CLOSE_REASON.OverBudget} either way.
   */
  #evict(): boolean {
    // Already closing at once (a backpressure or protocol failure): its
    // output goes as it finishes, within a turn or so; its account is
    // closed all the same (messages its handler has not taken yet, which
    // it may still take, no longer count).
    if (this.#info !== null || this.#forcedClose !== null) return false;
    this.#evicted = true;
    const code = CLOSE_CODE.TryAgainLater;
    const reason = CLOSE_REASON.OverBudget;
    const quiet = this.#connection.state === "open" && !this.#writing &&
      this.bufferedAmount === 0;
    const gone = closedError(this, "receive", {
      code,
      reason,
      wasClean: false,
    });
    const queues = [...this.#taken];
    if (this.#current !== null) queues.push(this.#current);
    for (let i = this.#inboxHead; i < this.#inbox.length; i++) {
      const queue = this.#queues?.get(this.#inbox[i] as IncomingStream);
      if (queue !== undefined) queues.push(queue);
    }
    for (const queue of queues) {
      queue.error(gone);
      queue.release();
    }
    this.#current = null;
    this.#taken = [];
    this.#inbox = [];
    this.#inboxHead = 0;
    this.#inboxBytes = 0;
    this.#unparsed = null;
    if (!quiet) {
      this.#terminate(code, reason);
      // Not written, and never will be.
      this.#connection.takeOutput();
      return true;
    }
    this.#forcedClose = { code, reason };
    this.#connection.close(code, reason);
    this.#scheduleFlush();
    this.#resume(); // to discard what the peer still sends
    this.#evictTimer = setTimeout(
      () => this.#abort(),
      Math.min(LINGER, this.#options.closeTimeout),
    );
    return true;
  }

  #finish(): void {
    if (this.#info !== null) return;
    clearTimeout(this.#closeTimer);
    this.#stopCloseTicks?.();
    this.#stopCloseTicks = null;
    clearTimeout(this.#lingerTimer);
    clearTimeout(this.#consumerCheck);
    clearTimeout(this.#streamReaderCheck);
    clearTimeout(this.#closeFrameTimer);
    clearTimeout(this.#messageTimer);
    clearTimeout(this.#evictTimer);
    this.#budget?.close();
    this.#stopTicking?.();
    this.#deflater?.close();
    // Nothing more is written: free the frame buffer kept for reuse.
    if (this.#connection.state === "closed") this.#connection.releaseOutput([]);
    // Out of every topic; `subscriptions` still lists them for cleanup code.
    for (const [topic, subscription] of this.#subscriptions ?? []) {
      this.#options.topics?.unsubscribe(topic, subscription);
    }
    const failure = this.#failure;
    const forced = this.#forcedClose;
    this.#info = forced !== null
      ? { code: forced.code, reason: forced.reason, wasClean: false }
      : this.#peerClose !== null
      ? {
        code: this.#peerClose.code,
        reason: this.#peerClose.reason,
        // Both close frames crossed: ours queued, and written.
        wasClean: this.#connection.closedCleanly &&
          this.#connection.outputSize === 0 &&
          this.#writtenSeq === this.#takenSeq,
      }
      : failure !== null
      ? {
        code: failure.closeCode,
        reason: failure.message,
        wasClean: false,
        error: failure,
      }
      : { code: CLOSE_CODE.AbnormalClosure, reason: "", wasClean: false };
    // A message streaming out stops, and its source with it: a source that
    // waits for data would otherwise hold sendStream() (and the handler)
    // forever.
    this.#stopStream?.(null);
    this.#takeWaiter?.({ done: true, value: undefined });
    for (const waiter of this.#moreWaiters ?? []) {
      waiter({ done: true, value: undefined });
    }
    this.#takeWaiter = this.#moreWaiters = null;
    this.#current?.error(closedError(this, "receive", this.#info));
    this.#current = null;
    this.#abort();
    this.#resolveDrainWaiters();
    for (const waiter of this.#pingWaiters.splice(0)) {
      waiter.reject(closedError(this, "ping", this.#info));
    }
    this.#resolveClosed(this.#info);
    // After `closed` settled: a hook that throws cannot keep it pending.
    this.#options.onClosed?.(this as Socket<unknown>, this.#info);
  }
}

/** A piece of a message sent with `sendStream()`. */
type StreamPiece = string | Uint8Array | ArrayBuffer;

/** Reads the pieces of `source`; `stop()` cancels it without waiting. */
function openPieces(
  source:
    | ReadableStream<StreamPiece>
    | AsyncIterable<StreamPiece>
    | Iterable<StreamPiece>,
): {
  next(): Promise<{ done?: boolean; value?: unknown }>;
  stop(reason: unknown): void;
} {
  if (source instanceof ReadableStream) {
    const reader = source.getReader();
    return {
      next: () => reader.read(),
      stop: (reason) => reader.cancel(reason).catch(() => {}),
    };
  }
  const iterator: Iterator<unknown> | AsyncIterator<unknown> =
    Symbol.asyncIterator in source
      ? source[Symbol.asyncIterator]()
      : source[Symbol.iterator]();
  return {
    next: async () => {
      const result = await iterator.next();
      return { done: result.done, value: await result.value };
    },
    stop: () => {
      try {
        Promise.resolve(iterator.return?.()).catch(() => {});
      } catch {
        // A source that fails to stop is left to itself.
      }
    },
  };
}

function sizeOf(item: Message | IncomingStream): number {
  return typeof item === "string" || item instanceof Uint8Array
    ? item.length
    : 0;
}

type TakeWaiter = (result: IteratorResult<Message | IncomingStream>) => void;

function invalidMessage(message: unknown): never {
  throw new TypeError(
    `Cannot send: a message must be a string, Uint8Array, ArrayBuffer or PreparedMessage, got ${
      describe(message)
    }`,
  );
}
