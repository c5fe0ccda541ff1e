import type { PreparedMessage } from "./protocol/prepared_message.ts";
import type { PerMessageDeflateParams } from "./protocol/permessage_deflate.ts";
import type { Ticker } from "./ticker.ts";
import type { Topics } from "./pubsub/topics.ts";
import type { Socket } from "./socket.ts";
import type { CloseInfo } from "./close_info.ts";
import type { BufferBudget } from "./_buffer_budget.ts";

/**
 * What `send()` takes: text as a string, binary as bytes, or a
 * {@linkcode PreparedMessage} framed once for many sockets.
 */
export type OutgoingMessage =
  | string
  | Uint8Array
  | ArrayBuffer
  | PreparedMessage;

/**
 * A message received as a stream of its pieces; see
 * {@linkcode Socket.prototype.streams}.
 */
export type IncomingStream =
  | { type: "text"; readable: ReadableStream<string> }
  | { type: "binary"; readable: ReadableStream<Uint8Array> };

/** Options of {@linkcode Socket.prototype.send}. */
export interface SendOptions {
  /**
   * `false` sends the message uncompressed even when permessage-deflate is
   * in use.
   * @default {true}
   */
  compress?: boolean;
}

/** Options of {@linkcode Socket.prototype.close}. */
export interface CloseOptions {
  /**
   * Milliseconds a message still streaming out (`sendStream()`) may take to
   * end before it is cut short; 0 cuts it at once.
   * @default {closeTimeout / 2}
   */
  streamGrace?: number;
}

/** Where a socket is in its life. */
export type SocketState = "open" | "closing" | "closed";

/**
 * What happens to a message sent while `bufferedAmount` is at or above
 * `maxBackpressure` (the peer is not reading fast enough):
 * - `close`: the socket is closed at once with 1008 and the message dropped;
 * - `drop`: the message is dropped (counted in the server's stats);
 * - `wait`: the message is queued anyway; `send()` resolves once the queue
 *   drains. Memory is bounded only by callers that await `send()`.
 */
export type BackpressurePolicy = "close" | "drop" | "wait";

/**
 * The outcome of {@linkcode Socket.prototype.trySend}:
 * - `sent`: queued, and the queue is below the high-water mark;
 * - `backpressure`: queued, but the queue is above the high-water mark:
 *   slow down until `bufferedAmount` falls;
 * - `dropped`: not queued, by the backpressure policy;
 * - `closed`: not queued, the socket is closing or closed.
 */
export type SendStatus = "sent" | "backpressure" | "dropped" | "closed";

/** Traffic counters a socket adds to; the server sums them for its stats. */
export interface SocketCounters {
  /** Messages received. */
  messagesIn: number;
  /** Messages queued for sending. */
  messagesOut: number;
  /** Bytes read from the transport (frames, headers included). */
  bytesIn: number;
  /** Bytes written to the transport. */
  bytesOut: number;
  /** Messages dropped by the backpressure policy. */
  backpressureDrops: number;
  /** Round-trip times measured by pings, in milliseconds. */
  rttCount: number;
  /** The sum of the measured round-trip times. */
  rttSum: number;
  /** The largest measured round-trip time. */
  rttMax: number;
  /**
   * Round trips by bucket, not cumulative: entry `i` counts those longer
   * than bound `i - 1` and at most bound `i` of the bounds (1 ms to 10 s)
   * `server.stats().pingRtt.buckets` lists; longer than the last bound,
   * only `rttCount` has them. Left out, no buckets are counted.
   */
  rttBuckets?: number[];
  /**
   * Sockets closed by one of their own deadlines, by phase: `idle`
   * (`idleTimeout`), `message` (`messageTimeout`), `pong` (no pong within
   * `pongTimeout`) and `write` (the peer took nothing we wrote for
   * `pingInterval + pongTimeout`). Left out, none are counted.
   */
  timeouts?: SocketTimeouts;
}

/** Sockets closed by their own deadlines; see `SocketCounters.timeouts`. */
export interface SocketTimeouts {
  /** Closed with 1001 "idle timeout". */
  idle: number;
  /** Failed with 1008 `MESSAGE_TIMEOUT`. */
  message: number;
  /** Closed with 1011 "keepalive pong timeout". */
  pong: number;
  /** Closed with 1011 "peer stopped reading". */
  write: number;
}

/**
 * The upper bounds, in milliseconds, of the buckets ping round trips are
 * counted in (`server.stats().pingRtt.buckets`, the
 * `duplex_ping_rtt_seconds` histogram): 1 ms to 10 s.
 */
export const PING_RTT_BUCKETS_MS: readonly number[] = Object.freeze([
  1,
  2.5,
  5,
  10,
  25,
  50,
  100,
  250,
  500,
  1_000,
  2_500,
  5_000,
  10_000,
]);

/** A byte source and sink the socket drives (a TCP or TLS connection). */
export interface Transport {
  /** The connection's readable side (a byte stream, read with BYOB). */
  readable: ReadableStream<Uint8Array<ArrayBuffer>>;
  /** The connection's writable side. */
  writable: WritableStream<Uint8Array>;
  /** Closes the connection at once. */
  close(): void;
  /**
   * Ends the writing side only (TCP FIN), as `Deno.Conn` does; used after a
   * protocol error, while the rest of the peer's input is read and
   * discarded for a moment.
   */
  closeWrite?(): Promise<void>;
  /**
   * Turns Nagle's algorithm off, as `Deno.TcpConn` does; called before the
   * socket's first write that must not wait for the peer's acknowledgement.
   */
  setNoDelay?(noDelay?: boolean): void;
}

/** Options of a {@linkcode Socket}, set by the server or client. */
export interface SocketOptions {
  /** Which end this is. */
  role: "server" | "client";
  /** See {@linkcode ConnectionOptions.maxPayload}. */
  maxPayload?: number;
  /** See {@linkcode ConnectionOptions.maxFragments}. */
  maxFragments?: number;
  /** Milliseconds `close()` waits for the peer's close frame, from the last write. */
  closeTimeout: number;
  /** Bytes the socket may hold for the peer before `send()` waits for the writes. */
  sendHighWaterMark: number;
  /** Received bytes queued for the handler before the socket stops reading. */
  receiveHighWaterMark: number;
  /** Received messages queued for the handler before the socket stops reading. */
  maxQueuedMessages: number;
  /** Queued outgoing bytes at which the backpressure policy applies. */
  maxBackpressure: number;
  /** See {@linkcode BackpressurePolicy}. */
  backpressurePolicy: BackpressurePolicy;
  /** Milliseconds without traffic from the peer before a keepalive ping; 0 disables. */
  pingInterval: number;
  /**
   * Milliseconds to wait for a pong, from when the ping is written, before
   * closing with 1011; 0 disables.
   */
  pongTimeout: number;
  /** Milliseconds without a message either way before closing with 1001; 0 disables. */
  idleTimeout: number;
  /**
   * Milliseconds one frame or message may take to arrive whole, from its
   * first byte, before the connection fails with 1008; 0 (the default)
   * disables it.
   */
  messageTimeout?: number;
  /** Runs the keepalive and idle checks; required when one is enabled. */
  ticker?: Ticker;
  /** Counters to add traffic to. */
  counters?: SocketCounters;
  /**
   * The server's memory budget (`maxBufferedBytes`): the socket reports
   * what it holds (a message still arriving, messages not taken, output not
   * written) where that grows or shrinks, and is closed with 1013 when the
   * budget runs over and it holds the most. With a limit, it also tells the
   * budget which frames its output shares with other sockets (prepared
   * messages), so that each counts once.
   */
  budget?: BufferBudget<Socket<unknown>>;
  /** The server's topic registry, for `subscribe()` and `publish()`. */
  topics?: Topics;
  /**
   * Called when processing the peer's input threw (a bug in this module,
   * not the peer's doing); the socket then closes with 1011. Without it
   * the error goes to `console.error`.
   */
  onInternalError?: (socket: Socket<unknown>, error: unknown) => void;
  /** Called once the socket has closed, as `closed` resolves. */
  onClosed?: (socket: Socket<unknown>, info: CloseInfo) => void;
  /** Deliver messages as streams (see `streams()`), not whole. */
  streamMessages?: boolean;
  /** Bytes that arrived with the handshake, before the first frame read. */
  head?: Uint8Array;
  /**
   * A buffer the socket may read into first, instead of allocating one (the
   * server's, which the request head was read into); taken only if it is
   * of the socket's first read size (1 KiB). The caller must not use it
   * again, nor `head` if `head` is a view of it (`head` is copied before
   * the first read).
   */
  readBuffer?: ArrayBuffer;
  /** The negotiated permessage-deflate parameters, if any (RFC 7692). */
  perMessageDeflate?: PerMessageDeflateParams;
  /** A BYOB reader of `transport.readable` already acquired by the caller. */
  reader?: ReadableStreamBYOBReader;
  /** A writer of `transport.writable` already acquired by the caller. */
  writer?: WritableStreamDefaultWriter<Uint8Array>;
}

/** Information about the request a server socket was opened with. */
export interface SocketRequestInfo {
  /** The request URL (`ws://host/path?query`). */
  url: URL;
  /** The request headers. */
  headers: Headers;
  /** The peer's address. */
  remoteAddr: Deno.NetAddr;
  /** The negotiated subprotocol, or `""`. */
  protocol: string;
}

/**
 * Fresh, zeroed traffic counters.
 *
 * @returns Counters for one socket, or shared by a server's sockets.
 */
export function newCounters(): SocketCounters {
  return {
    messagesIn: 0,
    messagesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    backpressureDrops: 0,
    rttCount: 0,
    rttSum: 0,
    rttMax: 0,
    rttBuckets: PING_RTT_BUCKETS_MS.map(() => 0),
    timeouts: { idle: 0, message: 0, pong: 0, write: 0 },
  };
}

/**
 * Adds one measured round trip to `counters`.
 *
 * @param counters The counters to add to.
 * @param rtt The round trip, in milliseconds.
 *
 * @example Usage
 * ```ts
 * import { countRoundTrip, newCounters } from "./socket_options.ts";
 * import assert from "node:assert/strict";
 *
 * const counters = newCounters();
 * countRoundTrip(counters, 3);
 * assert.equal(counters.rttCount, 1);
 * assert.equal(counters.rttBuckets![2], 1); // (2.5 ms, 5 ms]
 * ```
 */
export function countRoundTrip(counters: SocketCounters, rtt: number): void {
  counters.rttCount++;
  counters.rttSum += rtt;
  if (rtt > counters.rttMax) counters.rttMax = rtt;
  const buckets = counters.rttBuckets;
  if (buckets === undefined) return;
  const i = PING_RTT_BUCKETS_MS.findIndex((bound) => rtt <= bound);
  if (i >= 0) buckets[i] = (buckets[i] ?? 0) + 1;
}
