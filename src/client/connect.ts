import { raiseMallocThresholds } from "../_malloc_thresholds.ts";
import { withContext } from "../_error_context.ts";
import { checkConnectOptions } from "./_connect_options.ts";
import {
  ClientHandshake,
  ClientHandshakeError,
} from "../protocol/client_handshake.ts";
import type { ClientDeflateOptions } from "../protocol/permessage_deflate.ts";
import { Socket } from "../socket.ts";
import type { BackpressurePolicy } from "../socket_options.ts";
import { Ticker, tickPeriod } from "../ticker.ts";

/**
 * Options of {@linkcode connect}.
 *
 * @example A client that offers a subprotocol and watches the connection
 * ```ts
 * import { connect, type ConnectOptions, serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const options: ConnectOptions = {
 *   protocols: ["chat.v2"],
 *   handshakeTimeout: 5_000,
 *   pingInterval: 30_000, // finds a dead server behind a silent connection
 *   maxPayload: 1 << 20,
 * };
 * await using server = serve({ port: 0, hostname: "127.0.0.1", protocols: ["chat.v2"] }, async (socket) => {
 *   await socket.closed;
 * });
 * await using socket = await connect(`ws://127.0.0.1:${server.addr.port}`, options);
 * assert.equal(socket.protocol, "chat.v2");
 * ```
 */
export interface ConnectOptions {
  /**
   * Subprotocols to offer, in order of preference; the server's choice is
   * {@linkcode Socket.prototype.protocol} (`""` when it chose none).
   * @default {[]}
   */
  protocols?: readonly string[];
  /**
   * Extra handshake request headers (`Origin`, `Authorization`, `Cookie`,
   * ...). `Host` replaces the one derived from the URL; the handshake's own
   * fields (`Upgrade`, `Connection`, `Sec-WebSocket-*`) and body framing
   * (`Content-Length`, `Transfer-Encoding`) may not be set.
   * @default {{}}
   */
  headers?: HeadersInit;
  /**
   * Aborting it cancels a connection attempt in progress: `connect()`
   * rejects with the signal's reason. Once the socket is open the signal is
   * no longer watched; call {@linkcode Socket.prototype.close}.
   */
  signal?: AbortSignal;
  /**
   * Milliseconds for the TCP (and TLS) connection and the opening handshake
   * together; then `connect()` rejects with `Deno.errors.TimedOut` (or,
   * when a rejection's body was still arriving, with that rejection).
   * A `wss:` connection given up during its TLS handshake keeps its TCP
   * connection until the server closes it (Deno 2.9.6 does not close a TLS
   * connection whose handshake is pending; see SECURITY.md, Known gaps).
   * @default {10000}
   */
  handshakeTimeout?: number;
  /**
   * Milliseconds `close()` waits for the server's close frame and for the
   * server to close the TCP connection; as on the server, counted from the
   * last write the kernel took, and with much still unread in the kernel,
   * up to four times longer again, our side ended once all is written.
   * @default {5000}
   */
  closeTimeout?: number;
  /**
   * The largest message accepted, in bytes; a larger one fails the
   * connection with 1009. It applies to messages received as streams
   * (`streamMessages`) too: streaming a larger download needs a larger
   * `maxPayload` (and no more memory: what waits for the loop is bounded by
   * `receiveHighWaterMark`, plus about one read).
   * @default {16777216}
   */
  maxPayload?: number;
  /**
   * The most frames per message; more fail the connection with 1009. A
   * message sent with `sendStream()` is a frame per piece: a download of
   * 1 GiB in 64 KiB pieces is 16,384 frames.
   * @default {4096}
   */
  maxFragments?: number;
  /**
   * The largest handshake response head accepted, in bytes; a larger one
   * fails with `RESPONSE_TOO_LARGE`.
   * @default {16384}
   */
  maxHeadSize?: number;
  /**
   * The most handshake response header fields accepted; more fail with
   * `RESPONSE_TOO_LARGE` (a proxy that adds many may need more).
   * @default {100}
   */
  maxHeaders?: number;
  /**
   * PEM certificates to trust for `wss:`, in addition to the system's (for
   * tests and private CAs). Pass the CA that signed the server's
   * certificate: a self-signed certificate made as a CA (`CA:TRUE`, what a
   * bare `openssl req -x509` makes) is refused as a server's certificate
   * (`CaUsedAsEndEntity`).
   */
  caCerts?: readonly string[];
  /**
   * Offer permessage-deflate (RFC 7692): `true` for the default settings,
   * or settings named as the server's (see {@linkcode ClientDeflateOptions}).
   * By default the offer is a browser's, `permessage-deflate;
   * client_max_window_bits`: context takeover both ways unless the server
   * asks otherwise, at up to about 290 KiB per connection once messages
   * are compressed each way; `serverNoContextTakeover` and
   * `clientNoContextTakeover` keep no state between messages. Messages of
   * `threshold` bytes (1 KiB) or more are compressed when the server
   * agrees; what the server sends follows its settings. The agreement is
   * {@linkcode Socket.prototype.perMessageDeflate}; an answer RFC 7692 does
   * not allow fails with `UNEXPECTED_EXTENSION`.
   * @default {false}
   */
  perMessageDeflate?: boolean | ClientDeflateOptions;
  /**
   * Deliver each message as a stream of its pieces as they arrive
   * ({@linkcode Socket.prototype.streams}) instead of whole, for messages
   * too large to hold in memory (a download); raise `maxPayload` with it
   * (16 MiB by default, it bounds a streamed message too).
   * @default {false}
   */
  streamMessages?: boolean;
  /**
   * Milliseconds without traffic from the server before a keepalive ping;
   * `0` sends none. Keepalive finds a dead server behind a silent
   * connection (for `reconnecting()`, say).
   * @default {0}
   */
  pingInterval?: number;
  /**
   * Milliseconds to wait for the pong to a ping, counted from when the ping
   * is written (after the output queued before it); without one the connection
   * is closed and `closed` reports 1011 "keepalive pong timeout". `0` waits
   * forever. Applies only while `pingInterval` is above 0.
   * @default {20000}
   */
  pongTimeout?: number;
  /**
   * Milliseconds without a message either way before the connection is
   * closed with 1001 "idle timeout"; 0 disables it. A message counts as it
   * arrives, with each piece of it, and again as the loop takes it (or a
   * piece of a streamed one), however long after it was read: a slow loop
   * is not idleness. Messages that sit in the queue for a loop that takes
   * none do not count while they wait; pings and pongs do not count.
   * @default {0}
   */
  idleTimeout?: number;
  /**
   * Milliseconds one frame or message from the server may take to arrive
   * whole, counted from when it began (checked on a ticker: it fires up to
   * a quarter of this, and at least 20 ms, late, never early); beyond it
   * the connection fails with 1008 "MESSAGE_TIMEOUT". It bounds a server
   * that keeps the connection (and what it sent of a large message) by
   * sending a byte of it now and then, which keepalive and `idleTimeout`
   * take for traffic. Allow for your largest message at the slowest rate
   * you expect. Not counted while the socket has stopped reading for
   * inbound backpressure (a slow loop), and its count starts over whenever
   * reading stopped so since the last check. 0 disables it.
   * @default {0}
   */
  messageTimeout?: number;
  /**
   * Queued outgoing bytes above which `send()` waits for the writes
   * (`trySend()` then says `backpressure`).
   * @default {1048576}
   */
  sendHighWaterMark?: number;
  /**
   * Queued outgoing bytes at which `backpressurePolicy` applies; at least
   * `sendHighWaterMark`. Unbounded by default, unlike `serve()`'s 16 MiB: a
   * server bounds what each of its many peers can make it hold, while a
   * client's queue is filled by its own code, which bounds it by awaiting
   * `send()` (each `send()` resolves once the queue drains below
   * `sendHighWaterMark`, and nothing is dropped), and closing or dropping
   * would lose what the application meant to send (an upload to a slow
   * server, say). Set it to bound a client that sends without awaiting
   * (`trySend()`, or `send()` not awaited) to a server that may stop
   * reading.
   * @default {Number.MAX_SAFE_INTEGER}
   */
  maxBackpressure?: number;
  /**
   * What happens to a message sent while `maxBackpressure` bytes are
   * queued: as with `serve()`, under "close" the transport is closed at
   * once (`closed` reports 1008 "backpressure limit exceeded"). It applies
   * only once `maxBackpressure` is set: "close" or "drop" without it
   * throws, since the unbounded default never reaches it.
   * @default {"close"}
   */
  backpressurePolicy?: BackpressurePolicy;
  /**
   * Received bytes queued for the loop before the socket stops reading
   * (text counts its string length), leaving the rest in the TCP window so
   * that a fast server is slowed to the pace of a slow loop. With
   * `streamMessages`, the pieces of every message not read yet count; it
   * is checked between reads, and a piece is what one read got (up to 256
   * KiB, or 1 MiB inside a large frame), so pieces waiting may exceed it
   * by about one read. Parsing stops at the message that reaches it: the
   * queue may exceed it by that one message, of up to `maxPayload`.
   * @default {1048576}
   */
  receiveHighWaterMark?: number;
  /**
   * Received messages queued for the loop before the socket stops reading
   * (and parsing: a read of thousands of tiny frames stops at it).
   * @default {1024}
   */
  maxQueuedMessages?: number;
}

/** How long to wait for the start of a rejection's body (no Content-Length). */
const BODY_GRACE = 1_000;
const BODY_GRACE_EXPIRED = Symbol("body grace expired");

/**
 * Opens a WebSocket connection to a `ws:` or `wss:` URL and completes the
 * opening handshake (RFC 6455 §4.1). The returned socket is the same
 * {@linkcode Socket} a server handler gets, in the client role.
 *
 * - Every frame the client sends is masked with a fresh random key
 *   (RFC 6455 §5.3); a masked frame from the server fails the connection
 *   with 1002.
 * - The server's response is checked strictly: a status other than 101, a
 *   missing or wrong `Sec-WebSocket-Accept`, or a subprotocol or extension
 *   that was not offered rejects with a
 *   {@linkcode ClientHandshakeError} and closes the connection.
 * - {@linkcode Socket.prototype.headers} holds the server's response
 *   headers; {@linkcode Socket.prototype.url} the URL connected to.
 * - `close()` sends a close frame, waits for the server's and then for the
 *   server to close the TCP connection (RFC 6455 §7.1.1), both within
 *   `closeTimeout`. After a protocol error from the server, the client
 *   closes the TCP connection itself once its close frame is written.
 * - Flow control is as on the server: `send()` waits above
 *   `sendHighWaterMark`, and the socket stops reading once
 *   `receiveHighWaterMark` bytes or `maxQueuedMessages` messages wait for
 *   the loop. Unlike the server, the outgoing queue is unbounded unless
 *   `maxBackpressure` is set (see there why).
 *
 * @param url A `ws:` or `wss:` URL (`http:` and `https:` stand for them, as
 * in the WebSocket standard); a fragment is ignored.
 * @param options Subprotocols, headers, compression, timeouts and limits.
 * @returns The open socket.
 * @throws {TypeError} When the URL is not `ws:`/`wss:`, a subprotocol or
 * header is not valid, an option is unknown or of the wrong type, or
 * `backpressurePolicy` "close" or "drop" comes without `maxBackpressure`.
 * @throws {RangeError} When a timeout or limit is out of range (not a
 * positive integer, or for those that 0 disables, a non-negative one), a
 * permessage-deflate setting is out of range, `backpressurePolicy` is not
 * one of its values, or `maxBackpressure` is below `sendHighWaterMark`.
 * @throws {ClientHandshakeError} When the server's response fails a check.
 * @throws {Deno.errors.TimedOut} When the handshake takes longer than
 * `handshakeTimeout`.
 * @throws {Error} The network error (`Deno.errors.ConnectionRefused`, a TLS
 * certificate error, ...) when the connection cannot be made, of the
 * runtime's class and `code`, its message prefixed with the URL and the
 * runtime's error as its `cause`; or the signal's reason when it is
 * aborted.
 *
 * @example Talking to an echo server
 * ```ts
 * import { connect, serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
 *   for await (const message of socket) await socket.send(message);
 * });
 * const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`);
 * await socket.send("hello");
 * for await (const message of socket) {
 *   assert.equal(message, "hello");
 *   break;
 * }
 * const { code, wasClean } = await socket.close();
 * assert.equal(code, 1000);
 * assert.ok(wasClean);
 * ```
 */
export async function connect(
  url: string | URL,
  options: ConnectOptions = {},
): Promise<Socket> {
  const { limits, deflate } = checkConnectOptions("connect", options);
  const handshake: ClientHandshake = ClientHandshake.create(url, {
    protocols: options.protocols,
    headers: options.headers,
    // Checked above; the handshake makes the offer from it.
    perMessageDeflate: deflate,
    maxHeadSize: options.maxHeadSize,
    maxHeaders: options.maxHeaders,
  });
  const target = handshake.url;
  const signal = options.signal;
  signal?.throwIfAborted();
  raiseMallocThresholds();

  let conn: Deno.Conn | undefined;
  // Why we stopped waiting (abort, timeout, body grace), once we have.
  let stopped: { reason: unknown } | undefined;
  // Functions, so the checks after each await are not narrowed away.
  const halted = (): { reason: unknown } | undefined => stopped;
  const throwIfHalted = (): void => {
    if (stopped !== undefined) throw stopped.reason;
  };
  let rejectWaiting!: (reason: unknown) => void;
  const waiting = new Promise<never>((_, reject) => rejectWaiting = reject);
  waiting.catch(() => {});
  const connecting = new AbortController();
  const stop = (reason: unknown) => {
    if (stopped !== undefined) return;
    stopped = { reason };
    rejectWaiting(reason);
    if (conn !== undefined) closeQuietly(conn);
    else connecting.abort(reason);
  };
  const onAbort = () => stop(signal!.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  const timer = setTimeout(
    () =>
      stop(
        new Deno.errors.TimedOut(
          `Cannot connect to ${target.href}: the handshake did not complete within ${limits.handshakeTimeout} ms`,
        ),
      ),
    limits.handshakeTimeout,
  );
  let graceTimer: ReturnType<typeof setTimeout> | undefined;
  try {
    const opening = openTransport(
      target,
      options.caCerts,
      connecting.signal,
    );
    // A connection that completes after we stopped waiting is closed.
    opening.then((c) => stopped !== undefined && closeQuietly(c), () => {});
    conn = await Promise.race([opening, waiting]);
    throwIfHalted();
    if (target.protocol === "wss:") {
      await (conn as Deno.TlsConn).handshake().catch((error) => {
        throw withContext(error, `Cannot connect to ${target.href}`);
      });
    }

    const writer = conn.writable.getWriter();
    await writer.write(handshake.request);
    writer.releaseLock();

    const reader = conn.readable.getReader({ mode: "byob" });
    let buffer = new ArrayBuffer(4096);
    let result;
    try {
      while (result === undefined) {
        let chunk: Uint8Array | undefined;
        try {
          const { value, done } = await reader.read(new Uint8Array(buffer));
          if (!done && value !== undefined) {
            buffer = value.buffer;
            chunk = value;
          }
        } catch (error) {
          // A reset: it ends a rejection's body as an EOF would (proxies
          // reset after a 401), or the handshake, with the reset as cause.
          if (halted() === undefined) handshake.receiveEof(error);
        }
        // A rejection whose body was still arriving: the rejection it is
        // (not a timeout), unless the caller aborted.
        const why = halted();
        if (
          why !== undefined && handshake.state === "body" &&
          !(signal?.aborted && why.reason === signal.reason)
        ) handshake.receiveEof();
        throwIfHalted();
        if (chunk === undefined) handshake.receiveEof();
        result = handshake.receive(chunk);
        if (handshake.state === "body") {
          graceTimer ??= setTimeout(
            () => stop(BODY_GRACE_EXPIRED),
            BODY_GRACE,
          );
        }
      }
    } finally {
      reader.releaseLock();
    }
    throwIfHalted();

    // Keepalive, idle and message timeouts run on a ticker; a client has
    // few sockets: a ticker each, only when one is on. The pong timeout
    // applies only with keepalive on (as documented before the ticker
    // served anything else).
    const pongTimeout = limits.pingInterval > 0 ? limits.pongTimeout : 0;
    const timed = limits.pingInterval > 0 || limits.idleTimeout > 0 ||
      limits.messageTimeout > 0;
    const socket = new Socket(conn, {
      url: target,
      headers: result.headers,
      remoteAddr: conn.remoteAddr as Deno.NetAddr,
      protocol: result.protocol,
    }, {
      role: "client",
      maxPayload: limits.maxPayload,
      maxFragments: limits.maxFragments,
      closeTimeout: limits.closeTimeout,
      sendHighWaterMark: limits.sendHighWaterMark,
      receiveHighWaterMark: limits.receiveHighWaterMark,
      maxQueuedMessages: limits.maxQueuedMessages,
      maxBackpressure: limits.maxBackpressure,
      backpressurePolicy: options.backpressurePolicy ?? "close",
      pingInterval: limits.pingInterval,
      pongTimeout,
      idleTimeout: limits.idleTimeout,
      messageTimeout: limits.messageTimeout,
      ticker: timed
        ? new Ticker(
          tickPeriod(
            limits.pingInterval,
            pongTimeout,
            limits.idleTimeout,
            limits.messageTimeout,
          ),
        )
        : undefined,
      head: handshake.rest,
      // The server's answer, with how we compress.
      perMessageDeflate: result.perMessageDeflate,
      streamMessages: options.streamMessages,
    }, undefined);
    socket.run();
    return socket;
  } catch (error) {
    if (conn !== undefined) closeQuietly(conn);
    // A rejection read while we stopped waiting (its body cut short by the
    // grace period or the timeout) is the error to report, not the stop.
    const rejected = error instanceof ClientHandshakeError &&
      error.code === "UNEXPECTED_STATUS" && !signal?.aborted;
    if (!rejected && halted()?.reason !== BODY_GRACE_EXPIRED) {
      throwIfHalted();
    }
    throw error;
  } finally {
    clearTimeout(timer);
    clearTimeout(graceTimer);
    signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * The TCP connection (TLS over it for `wss:`), its connect cancelled when
 * `signal` aborts: a connect left pending (a host that drops SYNs) would
 * hold its socket, and the process, until the kernel gives up, minutes
 * later. (`Deno.connectTls` takes no signal: TLS starts over the TCP
 * connection.)
 */
function openTransport(
  url: URL,
  caCerts: readonly string[] | undefined,
  signal: AbortSignal,
): Promise<Deno.Conn> {
  // URL.hostname keeps the brackets of an IPv6 literal.
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const secure = url.protocol === "wss:";
  const port = url.port === "" ? (secure ? 443 : 80) : Number(url.port);
  const connecting = Deno.connect({ hostname, port, signal });
  const opening: Promise<Deno.Conn> = secure
    ? connecting.then((tcp) =>
      Deno.startTls(tcp, {
        hostname,
        caCerts: caCerts && [...caCerts],
      }).catch((error) => {
        closeQuietly(tcp);
        throw error;
      })
    )
    : connecting;
  return opening.catch((error) => {
    throw withContext(error, `Cannot connect to ${url.href}`);
  });
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}
