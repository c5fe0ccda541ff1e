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
 *
 * @example Text, bytes and prepared messages, as the peer receives them
 * ```ts
 * import { connect, type OutgoingMessage, prepareMessage, serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const messages: OutgoingMessage[] = ["text", new Uint8Array([1, 2]), prepareMessage("framed once")];
 * await using server = serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
 *   for (const message of messages) await socket.send(message);
 * });
 * const socket = await connect(`ws://127.0.0.1:${server.addr.port}`);
 * assert.deepEqual(await Array.fromAsync(socket), ["text", new Uint8Array([1, 2]), "framed once"]);
 * ```
 */
export type OutgoingMessage =
  | string
  | Uint8Array
  | ArrayBuffer
  | PreparedMessage;

/**
 * A message received as a stream of its pieces; see
 * {@linkcode Socket.prototype.streams}.
 *
 * @example Reading a streamed message of either type
 * ```ts
 * import { connect, type IncomingStream, serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * async function summary(stream: IncomingStream): Promise<string> {
 *   if (stream.type === "text") return (await Array.fromAsync(stream.readable)).join("");
 *   return `${(await new Response(stream.readable).bytes()).length} bytes`;
 * }
 * await using server = serve({ port: 0, hostname: "127.0.0.1", streamMessages: true }, async (socket) => {
 *   for await (const stream of socket.streams()) await socket.send(await summary(stream));
 * });
 * await using socket = await connect(`ws://127.0.0.1:${server.addr.port}`);
 * await socket.send("hello");
 * await socket.send(new Uint8Array(3));
 * const replies: unknown[] = [];
 * for await (const reply of socket) if (replies.push(reply) === 2) break;
 * assert.deepEqual(replies, ["hello", "3 bytes"]);
 * ```
 */
export type IncomingStream =
  | { type: "text"; readable: ReadableStream<string> }
  | { type: "binary"; readable: ReadableStream<Uint8Array> };

/**
 * Options of {@linkcode Socket.prototype.send}.
 *
 * @example Sending data that compression would not shrink
 * ```ts
 * import { connect, type SendOptions, serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * // Random bytes (or a JPEG, a zip) gain nothing from deflate: skip the work.
 * const uncompressed: SendOptions = { compress: false };
 * await using server = serve({ port: 0, hostname: "127.0.0.1", perMessageDeflate: true }, async (socket) => {
 *   await socket.send(crypto.getRandomValues(new Uint8Array(4096)), uncompressed);
 * });
 * const socket = await connect(`ws://127.0.0.1:${server.addr.port}`, { perMessageDeflate: true });
 * assert.ok(socket.perMessageDeflate); // compression was agreed on
 * const [message] = await Array.fromAsync(socket);
 * assert.equal((message as Uint8Array).length, 4096);
 * ```
 */
export interface SendOptions {
  /**
   * `false` sends the message uncompressed even when permessage-deflate is
   * in use.
   * @default {true}
   */
  compress?: boolean;
}

/**
 * Options of {@linkcode Socket.prototype.close}.
 *
 * @example Closing without waiting for a message still streaming out
 * ```ts
 * import { connect, type CloseOptions, serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
 *   // A message whose source sends one piece, then never ends.
 *   socket.sendStream(new ReadableStream({ start: (c) => c.enqueue("partial") })).catch(() => {});
 *   const now: CloseOptions = { streamGrace: 0 }; // cut it short at once
 *   await socket.close(4000, "done", now);
 * });
 * const socket = await connect(`ws://127.0.0.1:${server.addr.port}`);
 * assert.deepEqual(await Array.fromAsync(socket), []); // the partial message is discarded
 * assert.equal((await socket.closed).code, 4000);
 * ```
 */
export interface CloseOptions {
  /**
   * Milliseconds a message still streaming out (`sendStream()`) may take to
   * end before it is cut short; 0 cuts it at once.
   * @default {closeTimeout / 2}
   */
  streamGrace?: number;
}

/**
 * Where a socket is in its life.
 *
 * @example A closing handshake, step by step
 * ```ts
 * import { connect, serve, type SocketState } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
 *   await socket.closed;
 * });
 * const socket = await connect(`ws://127.0.0.1:${server.addr.port}`);
 * const states: SocketState[] = [socket.state];
 * const closing = socket.close();
 * states.push(socket.state);
 * await closing;
 * states.push(socket.state);
 * assert.deepEqual(states, ["open", "closing", "closed"]);
 * ```
 */
export type SocketState = "open" | "closing" | "closed";

/**
 * What happens to a message sent while `bufferedAmount` is at or above
 * `maxBackpressure` (the peer is not reading fast enough):
 * - `close`: the socket is closed at once with 1008 and the message dropped;
 * - `drop`: the message is dropped (counted in the server's stats);
 * - `wait`: the message is queued anyway; `send()` resolves once the queue
 *   drains. Memory is bounded only by callers that await `send()`.
 *
 * @example A live feed where a slow reader skips messages
 * ```ts
 * import { type BackpressurePolicy, serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * // Prices go stale: a peer that falls 4 MiB behind misses some rather than
 * // being disconnected.
 * const policy: BackpressurePolicy = "drop";
 * await using server = serve({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   backpressurePolicy: policy,
 *   maxBackpressure: 4 * 1024 * 1024,
 * }, () => {});
 * assert.equal(server.stats().backpressureDrops, 0); // where the drops are counted
 * ```
 */
export type BackpressurePolicy = "close" | "drop" | "wait";

/**
 * The outcome of {@linkcode Socket.prototype.trySend}:
 * - `sent`: queued, and the queue is below the high-water mark;
 * - `backpressure`: queued, but the queue is at or above the high-water mark:
 *   slow down until `bufferedAmount` falls;
 * - `dropped`: not queued, by the backpressure policy;
 * - `closed`: not queued, the socket is closing or closed.
 *
 * @example What trySend() says before and after the close
 * ```ts
 * import { connect, type SendStatus, serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
 *   for await (const _message of socket); // takes the messages, ignores them
 * });
 * const socket = await connect(`ws://127.0.0.1:${server.addr.port}`);
 * const statuses: SendStatus[] = [socket.trySend("hello")];
 * await socket.close();
 * statuses.push(socket.trySend("too late"));
 * assert.deepEqual(statuses, ["sent", "closed"]);
 * ```
 */
export type SendStatus = "sent" | "backpressure" | "dropped" | "closed";

/**
 * Traffic counters a socket adds to; the server sums them for its stats.
 *
 * @example The mean round trip of a set of counters
 * ```ts
 * import type { SocketCounters } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const meanRtt = (c: SocketCounters) => c.rttCount === 0 ? 0 : c.rttSum / c.rttCount;
 * const counters: SocketCounters = {
 *   messagesIn: 3, messagesOut: 2, bytesIn: 120, bytesOut: 80, backpressureDrops: 0,
 *   rttCount: 2, rttSum: 30, rttMax: 20,
 * };
 * assert.equal(meanRtt(counters), 15);
 * ```
 */
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

/**
 * Sockets closed by their own deadlines; see `SocketCounters.timeouts`.
 *
 * @example Telling lost peers from idle ones
 * ```ts
 * import type { SocketTimeouts } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * // A missing pong, or output the peer stopped taking: the peer is gone.
 * const lost = (t: SocketTimeouts) => t.pong + t.write;
 * const timeouts: SocketTimeouts = { idle: 12, message: 0, pong: 2, write: 1 };
 * assert.equal(lost(timeouts), 3);
 * ```
 */
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

/**
 * A byte source and sink the socket drives (a TCP or TLS connection).
 *
 * @example A Deno TCP connection is a transport as it is
 * ```ts
 * import type { Transport } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const [conn, peer] = await Promise.all([
 *   Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
 *   listener.accept(),
 * ]);
 * const transport: Transport = conn; // so is a Deno.TlsConn
 * await transport.writable.getWriter().write(new Uint8Array([1, 2, 3]));
 * assert.deepEqual((await peer.readable.getReader().read()).value, new Uint8Array([1, 2, 3]));
 * transport.close();
 * peer.close();
 * ```
 */
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

/**
 * Options of a {@linkcode Socket}, set by the server or client.
 *
 * @example A client socket over an in-memory transport
 * ```ts
 * import { Socket, type SocketOptions } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const options: SocketOptions = {
 *   role: "client", closeTimeout: 1000, sendHighWaterMark: 65536, receiveHighWaterMark: 65536,
 *   maxQueuedMessages: 16, maxBackpressure: 1 << 20, backpressurePolicy: "wait",
 *   pingInterval: 0, pongTimeout: 0, idleTimeout: 0,
 * };
 * // The input: an unmasked text frame "hi" (RFC 6455 §5.7), then the end.
 * const readable = new ReadableStream({
 *   type: "bytes",
 *   start(controller) {
 *     controller.enqueue(new Uint8Array([0x81, 0x02, 0x68, 0x69]));
 *     controller.close();
 *   },
 * });
 * const socket = new Socket({ readable, writable: new WritableStream(), close() {} }, {
 *   url: new URL("ws://example.com/"), headers: new Headers(), protocol: "",
 *   remoteAddr: { transport: "tcp", hostname: "192.0.2.1", port: 80 },
 * }, options, undefined);
 * const running = socket.run();
 * assert.deepEqual(await Array.fromAsync(socket), ["hi"]);
 * assert.equal((await socket.closed).code, 1006); // no close frame
 * await running;
 * ```
 */
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

/**
 * Information about the request a server socket was opened with.
 *
 * @example A socket carries its request's fields
 * ```ts
 * import { connect, serve, type SocketRequestInfo } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const line = ({ url, remoteAddr, protocol }: SocketRequestInfo) =>
 *   `${remoteAddr.hostname} ${url.pathname} ${protocol || "-"}`;
 * const lines: string[] = [];
 * await using server = serve({ port: 0, hostname: "127.0.0.1" }, (socket) => {
 *   lines.push(line(socket));
 * });
 * const socket = await connect(`ws://127.0.0.1:${server.addr.port}/chat`);
 * await socket.closed;
 * assert.deepEqual(lines, ["127.0.0.1 /chat -"]);
 * ```
 */
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
