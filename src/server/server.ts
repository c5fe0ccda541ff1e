import { raiseMallocThresholds } from "../_malloc_thresholds.ts";
import { describe, shown } from "../protocol/_describe.ts";
import { checkOptionNames } from "../_unknown_options.ts";
import type { SocketOptions } from "../socket_options.ts";
import { CLOSE_CODE, HandshakeError } from "../protocol/errors.ts";
import { encodeClosePayload } from "../protocol/close_payload.ts";
import { withContext } from "../_error_context.ts";
import { printErrors, printValue } from "./_print_errors.ts";
import {
  type HttpRequestHead,
  HttpRequestParser,
} from "../protocol/http_request_parser.ts";
import {
  tokenList,
  validateUpgradeRequest,
} from "../protocol/upgrade_request.ts";
import {
  computeAcceptKey,
  encodeAcceptResponse,
  encodeRejectionResponse,
} from "../protocol/handshake_response.ts";
import { Socket } from "../socket.ts";
import {
  CLOSE_REASON,
  type CloseInfo,
  ConnectionClosedError,
} from "../close_info.ts";
import { foreignCloseError, raisedBy } from "../_closed_error_owner.ts";
import { Ticker, tickPeriod } from "../ticker.ts";
import { MAX_TIMEOUT } from "../_numeric_options.ts";
import {
  checkServeOptions,
  type DataHookRequirement,
  type ResolvedLimits,
  resolveLimits,
  type ServeOptions,
  type ServerLogEvent,
  type SocketHandler,
  type TimeoutPhase,
} from "./serve_options.ts";
import { type ServerStats, StatsCollector } from "./stats.ts";
import { AddressCounts } from "./_address_counts.ts";
import { BufferBudget } from "../_buffer_budget.ts";
import { serveHttpRequest } from "./http_exchange.ts";
import { type PublishOptions, Topics } from "../pubsub/topics.ts";
import { type Slot, SlotList } from "../_slot_list.ts";
import {
  negotiatePerMessageDeflate,
  type PerMessageDeflateOptions,
  resolveDeflateOptions,
} from "../protocol/permessage_deflate.ts";
import type { PreparedMessage } from "../protocol/prepared_message.ts";
import { renderPrometheus } from "./prometheus.ts";
import { writeResponse } from "./_response_writer.ts";
import {
  assertOffered,
  isOriginAllowed,
  selectProtocol,
} from "./upgrade_policy.ts";

/**
 * Options of {@linkcode Server.prototype.shutdown}.
 *
 * @example A restart: clients are told to come back soon
 * ```ts
 * import { connect, serve, type ShutdownOptions } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const restart: ShutdownOptions = { code: 1012, reason: "restarting", timeout: 2000 };
 * const server = serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
 *   await socket.closed;
 * });
 * const socket = await connect(`ws://127.0.0.1:${server.addr.port}`);
 * await server.shutdown(restart);
 * const { code, reason } = await socket.closed;
 * assert.deepEqual([code, reason], [1012, "restarting"]);
 * ```
 */
export interface ShutdownOptions {
  /**
   * Milliseconds to wait for the closing handshakes, the handlers and the
   * HTTP exchanges under way before closing the rest. A streamed response
   * that never ends by itself (server-sent events) holds shutdown this
   * long: end it when the `signal` given to `serve()` aborts.
   * @default {5000}
   */
  timeout?: number;
  /**
   * The close code sent to every open socket: 1001 (going away), or 1012
   * (service restart) to tell clients to come back soon.
   * @default {1001}
   */
  code?: number;
  /**
   * The close reason sent with it: at most 123 bytes of UTF-8.
   * @default {"server shutting down"}
   */
  reason?: string;
}

const DEFAULT_PORT = 8765;
const DEFAULT_HOSTNAME = "0.0.0.0";
// Connections over a limit whose refusal may be going out at once (each
// holds a descriptor for up to a second while its answer is read): as many
// as maxConnections, but at least the first and at most the second.
const MIN_REFUSING = 64;
const MAX_REFUSING = 1024;
const EMPTY: Uint8Array = new Uint8Array(0);
// A request head is read 1 KiB at first (the socket's first read buffer
// after an upgrade), in reads twice as large while they come full, up to
// 16 KiB.
const HEAD_READ = 1024;
const MAX_HEAD_READ = 16 * 1024;
// Headers the handshake itself decides, and the framing a 101 may not
// have (RFC 9110 §8.6: no Content-Length in a 1xx); a hook may not set them.
const HANDSHAKE_HEADERS =
  /^(?:upgrade|connection|sec-websocket-.*|content-length|transfer-encoding)$/i;

/** What reading a request head gave. */
type HeadResult = {
  head: HttpRequestHead;
  rest: Uint8Array;
  /** When the handshake deadline ends (`performance.now()` time). */
  deadline: number;
  /** The buffer the head was read into, free for the socket's reads. */
  buffer: ArrayBuffer;
} | null;

/**
 * Starts a WebSocket server on `Deno.listen` (or `Deno.listenTls` with
 * `cert` and `key`) and calls `handler` with every accepted socket.
 *
 * - The handshake is validated strictly (RFC 6455 §4.2.1); a bad request
 *   gets its HTTP status (400, 403, 405, 414, 426, 431) and a plain-text
 *   reason; a connection beyond `maxConnections` gets 503, one beyond
 *   `maxConnectionsPerAddress` 429.
 * - When `handler` returns, the socket is closed with 1000; when it throws,
 *   with 1011 (the error goes to the logger, never to the peer).
 * - One misbehaving peer never affects the others.
 *
 * @typeParam Data The type of `socket.data`, set by `onUpgrade`; a type
 * that excludes `undefined` requires the hook
 * ({@linkcode DataHookRequirement}).
 * @param options Where to listen, hooks, limits and timeouts.
 * @param handler Called with each socket.
 * @returns The running server.
 * @throws {RangeError} When an option is out of range.
 * @throws {TypeError} When an option has the wrong type, or only one of
 * `cert` and `key` is given.
 *
 * @example Echo server
 * ```ts
 * import { serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
 *   for await (const message of socket) await socket.send(message);
 * });
 * const client = new WebSocket(`ws://127.0.0.1:${server.addr.port}`);
 * await new Promise((resolve) => client.onopen = resolve);
 * client.send("hello");
 * const reply = await new Promise((resolve) => client.onmessage = (e) => resolve(e.data));
 * assert.equal(reply, "hello");
 * client.close();
 * await new Promise((resolve) => client.onclose = resolve);
 * ```
 */
export function serve<Data = unknown>(
  options: ServeOptions<Data> & DataHookRequirement<Data>,
  handler: SocketHandler<Data>,
): Server<Data> {
  return new Server(options, handler);
}

/**
 * A running WebSocket server; create it with {@linkcode serve}.
 *
 * @typeParam Data The type of `socket.data`.
 *
 * @example Shut down when done
 * ```ts
 * import { serve } from "@duplex/ws";
 *
 * const server = serve({ port: 0 }, () => {});
 * await server.shutdown();
 * await server.finished;
 * ```
 */
export class Server<Data = unknown> implements AsyncDisposable {
  /** The address the server listens on (the real port when `port` was 0). */
  readonly addr: Deno.NetAddr;
  /**
   * Resolves once the server has shut down and every connection has ended:
   * its handler returned, or its HTTP exchange was answered. Handlers still
   * running when `shutdown()`'s timeout has passed are not waited for.
   */
  readonly finished: Promise<void>;

  readonly #listener: Deno.Listener;
  // Typed without Data, which the hook makes and the handler takes (so
  // either way round), so that a Server<User> is still a Server.
  readonly #options: ServeOptions<unknown>;
  readonly #handler: (socket: Socket<unknown>) => unknown;
  readonly #limits: ResolvedLimits;
  #socketDefaults: SocketOptions | null = null;
  readonly #scheme: "ws" | "wss";
  readonly #logger: (event: ServerLogEvent) => void;
  // One function for all sockets, rather than a closure per connection.
  readonly #onInternalError = (socket: Socket<unknown>, error: unknown) =>
    this.#logger({
      type: "internal-error",
      url: socket.url.href,
      remoteAddr: socket.remoteAddr,
      error,
    });
  readonly #ticker: Ticker;
  readonly #stats = new StatsCollector();
  readonly #topics: Topics;
  readonly #deflateOptions: PerMessageDeflateOptions | undefined;
  // Connections join and leave the lists below, which are SlotLists: a Set
  // or Map would keep every connection it ever listed alive through V8's
  // young-generation collections (see SlotList). Each connection's Peer
  // holds its slots, and what it is doing.
  // Connections being served.
  readonly #conns = new SlotList<Peer<Data>>();
  // Connections being refused (503 past maxConnections, 429 past
  // maxConnectionsPerAddress) while their answer goes out: not counted in
  // #conns, so that a flood being refused does not take the slots of the
  // clients it would let in; at most maxConnections of them (64 to 1024)
  // at once, beyond which a connection over a limit is closed unanswered.
  readonly #refusing = new SlotList<Deno.Conn>();
  // Connections per client address, when maxConnectionsPerAddress is set.
  readonly #perAddress: AddressCounts | null;
  // Open sockets.
  readonly #sockets = new SlotList<Socket<Data>>();
  // What the sockets hold together, against maxBufferedBytes.
  readonly #budget: BufferBudget<Socket<unknown>>;
  // Connections being served, and who waits for the last to end.
  #active = 0;
  #allEnded: (() => void) | null = null;
  // Connections with a deadline (Peer.deadline), checked on the ticker.
  readonly #deadlines = new SlotList<Peer<Data>>();
  #stopDeadlineChecks: (() => void) | null = null;
  #shutdown: Promise<void> | null = null;

  /**
   * Listens at once. Prefer {@linkcode serve}.
   *
   * @param options Where to listen, hooks, limits and timeouts.
   * @param handler Called with each socket.
   */
  constructor(
    options: ServeOptions<Data> & DataHookRequirement<Data>,
    handler: SocketHandler<Data>,
  ) {
    if (typeof handler !== "function") {
      throw new TypeError(
        typeof options === "function"
          ? "Cannot serve: serve() takes (options, handler), and the handler came first; give the options first (serve({ port: 8080 }, handler))"
          : typeof (options as { handler?: unknown } | undefined)?.handler ===
              "function"
          ? "Cannot serve: pass the handler as the second argument of serve(), not as options.handler"
          : `Cannot serve: "handler" must be a function, got ${typeof handler}`,
      );
    }
    checkServeOptions(options as unknown as ServeOptions<never>);
    this.#limits = resolveLimits(options as unknown as ServeOptions<never>);
    this.#perAddress = this.#limits.maxConnectionsPerAddress === Infinity
      ? null
      : new AddressCounts(this.#limits.maxConnectionsPerAddress);
    const port = options.port === undefined ? DEFAULT_PORT : options.port;
    if (typeof port !== "number") {
      throw new TypeError(
        `Cannot serve: "port" must be a number from 0 to 65535, got ${
          shown(port)
        }${typeof port === "string" ? " (convert it with Number())" : ""}`,
      );
    }
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new RangeError(
        `Cannot serve: "port" must be an integer from 0 to 65535, got ${
          shown(port)
        }`,
      );
    }
    if ((options.cert === undefined) !== (options.key === undefined)) {
      throw new TypeError(
        'Cannot serve: "cert" and "key" go together for TLS; got only one',
      );
    }
    const policy = options.backpressurePolicy === undefined
      ? "close"
      : options.backpressurePolicy;
    if (!["close", "drop", "wait"].includes(policy)) {
      const ErrorClass = typeof policy === "string" ? RangeError : TypeError;
      throw new ErrorClass(
        `Cannot serve: "backpressurePolicy" must be "close", "drop" or "wait", got ${
          describe(policy)
        }`,
      );
    }
    this.#options = options as ServeOptions<unknown>;
    this.#handler = handler as (socket: Socket<unknown>) => unknown;
    raiseMallocThresholds();
    const deflate = options.perMessageDeflate;
    if (deflate) {
      const settings = deflate === true ? {} : deflate;
      resolveDeflateOptions(settings); // throws now for a bad setting
      this.#deflateOptions = settings;
    }
    const logger = options.logger ?? printErrors();
    // A logger that throws would otherwise end whatever step logged; an
    // async one that rejects, the process.
    const failed = (event: ServerLogEvent, error: unknown) =>
      printValue(`duplex: the logger failed on "${event.type}":`, error);
    this.#logger = (event) => {
      try {
        const result: unknown = logger(event);
        if (result instanceof Promise) {
          result.catch((error) => failed(event, error));
        }
      } catch (error) {
        failed(event, error);
      }
    };
    this.#budget = new BufferBudget(
      this.#limits.maxBufferedBytes,
      (socket, held, total) => {
        this.#stats.budgetCloses++;
        const event: ServerLogEvent = {
          type: "over-budget",
          url: socket.url.href,
          remoteAddr: socket.remoteAddr,
          held,
          total,
        };
        // Evictions happen inside send() and publish(): a logger that
        // publishes (to tell a room) must not run in the middle of one,
        // where its message would overtake the one being delivered.
        queueMicrotask(() => this.#logger(event));
      },
    );
    this.#ticker = new Ticker(
      tickPeriod(
        this.#limits.handshakeTimeout,
        this.#limits.requestTimeout,
        this.#limits.pingInterval,
        this.#limits.pongTimeout,
        this.#limits.idleTimeout,
        this.#limits.messageTimeout,
      ),
    );
    const hostname = options.hostname ?? DEFAULT_HOSTNAME;
    this.#scheme = options.cert !== undefined ? "wss" : "ws";
    this.#listener = options.cert !== undefined
      ? listenTls({
        port,
        hostname,
        reusePort: options.reusePort,
        cert: options.cert,
        key: options.key!,
      })
      : listen({ port, hostname, reusePort: options.reusePort });
    // Once listening: a server that cannot listen starts no adapter (its
    // connections would hold the process, and nothing could close them);
    // nor does one whose adapter fails to start keep listening.
    try {
      this.#topics = new Topics(
        options.pubsub,
        (error) => this.#logger({ type: "pubsub-error", error }),
      );
    } catch (error) {
      this.#listener.close();
      throw error;
    }
    this.addr = this.#listener.addr as Deno.NetAddr;
    this.finished = this.#acceptLoop();
    const signal = options.signal;
    if (signal !== undefined) {
      // Let go once finished: a signal that outlives many servers would
      // keep each one reachable.
      const onAbort = () => this.shutdown();
      signal.addEventListener("abort", onAbort, { once: true });
      const forget = () => signal.removeEventListener("abort", onAbort);
      this.finished.then(forget, forget);
      if (signal.aborted) this.shutdown();
    }
    try {
      this.#logger({ type: "listen", addr: this.addr });
      options.onListen?.(this.addr);
    } catch (error) {
      // The caller gets no server to shut down: leave nothing listening.
      this.shutdown({ timeout: 0 });
      throw error;
    }
  }

  /** The number of open WebSocket connections. */
  get connections(): number {
    return this.#sockets.size;
  }

  /**
   * The open WebSocket connections, to look at or close some of them (to
   * reach all of them, `publish()` is cheaper).
   *
   * @returns A snapshot: sockets that open or close later do not change it.
   *
   * @example Closing the connections of one client address
   * ```ts
   * import { serve } from "@duplex/ws";
   *
   * await using server = serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
   *   for await (const message of socket) await socket.send(message);
   * });
   * for (const socket of server.sockets()) {
   *   if (socket.remoteAddr.hostname === "192.0.2.7") await socket.close(1008, "banned");
   * }
   * ```
   */
  sockets(): Socket<Data>[] {
    return this.#sockets.toArray();
  }

  /**
   * A snapshot of the server's counters: connections, messages and bytes
   * both ways, close codes, handshake rejections, drops, ping round trips
   * (with a histogram), and the plain HTTP requests the `fetch` handler
   * answered, by status (see {@linkcode ServerStats}).
   *
   * @returns The counters now.
   *
   * @example Counting plain HTTP requests
   * ```ts
   * import { serve } from "@duplex/ws";
   * import assert from "node:assert/strict";
   *
   * await using server = serve({
   *   port: 0,
   *   hostname: "127.0.0.1",
   *   fetch: (request) =>
   *     new URL(request.url).pathname === "/"
   *       ? new Response("home")
   *       : new Response("not found", { status: 404 }),
   * }, () => {});
   * using client = Deno.createHttpClient({});
   * for (const path of ["/", "/", "/nope"]) {
   *   const url = `http://127.0.0.1:${server.addr.port}${path}`;
   *   await (await fetch(url, { client })).text();
   * }
   * assert.deepEqual(server.stats().httpRequests, { 200: 2, 404: 1 });
   * assert.equal(server.stats().pingRtt.count, 0);
   * ```
   */
  stats(): ServerStats {
    return this.#stats.snapshot(
      this.#sockets.size,
      this.#conns.size + this.#refusing.size,
      this.#budget.recount(),
    );
  }

  /**
   * Publishes `message` to every socket subscribed to `topic` here, and
   * through the pub/sub adapter to the other instances. The message is
   * framed once; each subscriber gets it with `trySend()`, so a slow one
   * meets its backpressure policy instead of stalling the others.
   *
   * @param topic The topic name.
   * @param message Text, bytes, or a prepared message.
   * @param options `except`: a socket to leave out.
   * @returns How many local subscribers got the message queued.
   */
  publish(
    topic: string,
    message: string | Uint8Array | ArrayBuffer | PreparedMessage,
    options?: PublishOptions,
  ): number {
    if (options !== undefined) {
      checkOptionNames("publish", PUBLISH_OPTIONS, options, {
        exceptSelf:
          "server.publish() leaves a socket out with { except: socket } (exceptSelf is socket.publish()'s)",
      });
    }
    return this.#topics.publish(topic, message, options);
  }

  /**
   * The number of local sockets subscribed to `topic`.
   *
   * @param topic The topic name.
   * @returns The count.
   */
  subscriberCount(topic: string): number {
    return this.#topics.subscriberCount(topic);
  }

  /**
   * The stats in the Prometheus text format, for a `/metrics` endpoint (see
   * `renderPrometheus()`): gauges and counters named `duplex_*`, plain HTTP
   * requests as `duplex_http_requests_total{code="200"}`, ping round trips
   * as the `duplex_ping_rtt_seconds` histogram.
   *
   * @returns The metrics text.
   *
   * @example A /metrics endpoint next to the WebSockets
   * ```ts
   * import { serve } from "@duplex/ws";
   * import assert from "node:assert/strict";
   *
   * await using server = serve({
   *   port: 0,
   *   hostname: "127.0.0.1",
   *   fetch: (): Response => new Response(server.metrics()),
   * }, () => {});
   * using client = Deno.createHttpClient({});
   * const url = `http://127.0.0.1:${server.addr.port}/metrics`;
   * await (await fetch(url, { client })).text();
   * // The second scrape sees the first (counted as its head went out).
   * const text = await (await fetch(url, { client })).text();
   * assert.match(text, /^duplex_http_requests_total\{code="200"\} 1$/m);
   * assert.match(text, /^duplex_ping_rtt_seconds_count 0$/m);
   * ```
   */
  metrics(): string {
    return renderPrometheus(this.stats());
  }

  /**
   * Stops accepting and closes connections waiting for a request; answers
   * handshakes being decided (an `onUpgrade` hook under way) with 503 and
   * `Retry-After: 1`; sends 1001 (going away; see `code`) to every open
   * socket, after what is queued for it (a message still streaming out
   * gets half of `timeout` or of `closeTimeout`, whichever is shorter, to
   * end), and lets plain HTTP exchanges under way finish (their responses
   * say `Connection: close`); waits for the closing handshakes and for the
   * handlers to return, up to `timeout`, and closes the pub/sub adapter
   * within what is left of it.
   * Then it abandons the exchanges left, closes every transport, and
   * resolves without waiting for handlers still running (logged as
   * `shutdown-timeout`). Calling it again returns the same promise.
   *
   * @param options How long to wait.
   * @returns A promise that resolves once everything is closed, or rejects
   * with a `RangeError` for a bad `timeout`, `code` or `reason`.
   */
  shutdown(options: ShutdownOptions = {}): Promise<void> {
    if (this.#shutdown !== null) return this.#shutdown;
    try {
      checkOptionNames("shut down", SHUTDOWN_OPTIONS, options);
    } catch (error) {
      return Promise.reject(error);
    }
    const timeout = options.timeout ?? 5_000;
    const code = options.code ?? CLOSE_CODE.GoingAway;
    const reason = options.reason ?? CLOSE_REASON.ServerShutdown;
    try {
      encodeClosePayload(code, reason);
    } catch (error) {
      const message = `Cannot shut down: ${
        (error as Error).message.replace(/^Cannot close: /, "")
      }`;
      return Promise.reject(
        error instanceof RangeError
          ? new RangeError(message)
          : new TypeError(message),
      );
    }
    if (
      typeof timeout !== "number" || !(timeout >= 0) || timeout > MAX_TIMEOUT
    ) {
      return Promise.reject(
        new RangeError(
          `Cannot shut down: "timeout" must be a number of milliseconds from 0 to ${MAX_TIMEOUT}, got ${
            shown(timeout)
          }`,
        ),
      );
    }
    this.#shutdown = this.#shutDown(timeout, code, reason);
    return this.#shutdown;
  }

  /** Shuts down (for `await using`). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  async #shutDown(
    timeout: number,
    code: number,
    reason: string,
  ): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<"timeout">((resolve) =>
      timer = setTimeout(() => resolve("timeout"), timeout)
    );
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    this.#conns.forEach((peer) => peer.stopHook?.());
    // Connections waiting for a request head (a handshake, an idle
    // keep-alive) just close; HTTP exchanges under way may finish, and
    // their responses say `Connection: close`; handshakes being answered
    // get a 503.
    this.#refusing.forEach(closeQuietly);
    this.#conns.forEach((peer) => {
      if (peer.state === "reading") closeQuietly(peer.conn);
    });
    // A message still streaming out gets half of what is left for the
    // closing handshake, so that its socket still closes cleanly in time.
    const streamGrace = Math.min(this.#limits.closeTimeout, timeout) / 2;
    const closing = this.#sockets.toArray().map((socket) =>
      socket.close(code, reason, { streamGrace })
    );
    const outcome = await Promise.race([
      Promise.all(closing).then(() => this.finished),
      deadline,
    ]);
    if (outcome === "timeout") {
      // What is left is cut off: exchanges are abandoned, transports closed
      // (their sockets report 1006), and handlers get one more turn.
      this.#conns.forEach((peer) => peer.abandon?.());
      this.#conns.forEach((peer) => closeQuietly(peer.conn));
      this.#refusing.forEach(closeQuietly);
      await Promise.all(closing);
      await Promise.race([
        this.finished,
        new Promise((resolve) => setTimeout(resolve, 0)),
      ]);
      if (this.#active > 0) {
        this.#logger({ type: "shutdown-timeout", pending: this.#active });
        this.#allEnded?.();
      }
    }
    await this.finished;
    // The pub/sub adapter gets what is left of the timeout to close.
    await Promise.race([this.#topics.close(), deadline]);
    clearTimeout(timer);
  }

  async #acceptLoop(): Promise<void> {
    while (this.#shutdown === null) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#shutdown !== null || isListenerClosed(error)) break;
        if (isPeerFailure(error)) {
          // A client that reset its connection while it waited in the
          // backlog: its own failure, not a reason to stop accepting.
          this.#stats.connectionErrors++;
          this.#logger({ type: "connection-error", error });
          continue;
        }
        // Out of file descriptors, say: keep serving the open connections
        // and try again shortly rather than stop accepting for good.
        this.#logger({ type: "accept-error", error });
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      this.#active++;
      this.#serveConnection(conn);
    }
    if (this.#active > 0) {
      await new Promise<void>((resolve) => this.#allEnded = resolve);
    }
  }

  #connectionEnded(peer: Peer<Data>): void {
    this.#transportEnded(peer);
    if (--this.#active === 0) this.#allEnded?.();
  }

  /**
   * Its transport is gone (or going): it no longer counts against
   * `maxConnections` and `maxConnectionsPerAddress`, though a handler may
   * run on.
   */
  #transportEnded(peer: Peer<Data>): void {
    if (!this.#conns.remove(peer.slot)) return;
    if (peer.address !== undefined) this.#perAddress!.release(peer.address);
  }

  async #serveConnection(conn: Deno.Conn): Promise<void> {
    const peer = new Peer<Data>(conn, this.#conns);
    let upgraded = false;
    try {
      if (this.#conns.size > this.#limits.maxConnections) {
        await this.#refuseOverLimit(
          peer,
          new HandshakeError(503, "The server is at its connection limit", {
            "Retry-After": "1",
          }),
        );
        return;
      }
      if (this.#perAddress !== null) {
        peer.address = this.#perAddress.acquire(peer.remoteAddr.hostname);
        // Refused connections are not counted: the address's count is of
        // the connections served, and one closing lets the next in.
        if (peer.address === undefined) {
          await this.#refuseOverLimit(
            peer,
            new HandshakeError(429, "Too many connections from your address", {
              "Retry-After": "1",
            }),
          );
          return;
        }
      }
      let rest = EMPTY;
      let nagleOff = false;
      const fetch = this.#options.fetch;
      for (let first = true;; first = false) {
        // A request pipelined behind the last one waits for the next turn
        // of the event loop: its bytes are here, its response's write
        // completes at once, and a client pipelining thousands would
        // otherwise be served in one go while other connections wait.
        if (rest.length > 0) {
          await nextTurn();
          // shutdown() may have closed the connection meanwhile.
          if (this.#shutdown !== null) return;
        }
        const result = await this.#readHead(peer, rest, first);
        if (result === null) return;
        if (fetch === undefined || isWebSocketRequest(result.head)) {
          const socket = await this.#upgrade(peer, result);
          if (socket === null) return;
          upgraded = true;
          // Not awaited: nothing of this function is held while the socket
          // runs. The socket closes its transport itself.
          this.#runSocket(socket, peer);
          return;
        }
        // Plain HTTP, within the request timeout (a handler that never
        // answers is abandoned then, or at shutdown); keep-alive loops back.
        // A response's writes leave when written, not behind unacknowledged
        // ones (a WebSocket turns Nagle off with its first write).
        if (!nagleOff && this.#scheme === "ws") {
          nagleOff = true;
          try {
            (conn as Deno.TcpConn).setNoDelay(true);
          } catch {
            return; // closed meanwhile, by shutdown()
          }
        }
        const abandoned = Promise.withResolvers<never>();
        abandoned.promise.catch(() => {});
        // The exchange goes on without us: it is told to cancel the response
        // body and abort request.signal.
        const abandonment = new AbortController();
        const abandon = () => {
          abandonment.abort(new Error("request abandoned"));
          abandoned.reject(new Error("abandoned"));
        };
        this.#startDeadline(
          peer,
          "request",
          this.#limits.requestTimeout,
          abandon,
        );
        peer.state = "exchange";
        peer.abandon = abandon;
        let responseStarted = false;
        let exchange;
        try {
          exchange = await Promise.race([
            serveHttpRequest(
              result.head,
              result.rest,
              peer.reader,
              peer.writer,
              {
                fetch,
                scheme: this.#scheme === "wss" ? "https" : "http",
                remoteAddr: peer.remoteAddr,
                maxBodySize: this.#limits.maxBodySize,
                // The next request head has the handshake's deadline.
                keepAliveTimeout: this.#limits.handshakeTimeout,
                signal: abandonment.signal,
                keepAlive: () => this.#shutdown === null,
                // A response that streams on (server-sent events) is no
                // longer under the request's deadline, but each of its
                // writes is: a client that stops reading is let go.
                onResponseStarted: () => {
                  responseStarted = true;
                  this.#endDeadline(peer);
                },
                onResponseWrite: (pending) => {
                  if (!responseStarted) return;
                  if (!pending) this.#endDeadline(peer);
                  else {
                    this.#startDeadline(
                      peer,
                      "response",
                      this.#limits.requestTimeout,
                      abandon,
                    );
                  }
                },
                // A response that comes after the exchange was abandoned
                // (requestTimeout, shutdown) is never sent: not counted.
                onResponse: (status) => {
                  if (!abandonment.signal.aborted) {
                    this.#stats.countHttpResponse(status);
                  }
                },
                onError: (error) => {
                  this.#stats.httpHandlerErrors++;
                  this.#logger({
                    type: "handler-error",
                    url: result.head.target,
                    error,
                  });
                },
              },
            ),
            abandoned.promise,
          ]);
        } catch {
          return;
        } finally {
          this.#endDeadline(peer);
          peer.state = "reading";
          peer.abandon = null;
        }
        // Shutdown may have begun after the response head said keep-alive.
        if (!exchange.keepAlive || this.#shutdown !== null) {
          await this.#closeGracefully(peer);
          return;
        }
        rest = exchange.rest;
      }
    } finally {
      if (!upgraded) {
        closeQuietly(conn);
        this.#connectionEnded(peer);
      }
    }
  }

  /**
   * Reads a request head within the handshake timeout; `null` if none came.
   * A connection that fails before its `first` head is a connection error.
   */
  async #readHead(
    peer: Peer<Data>,
    rest: Uint8Array,
    first: boolean,
  ): Promise<HeadResult> {
    const reader = peer.reader;
    let deadline = performance.now() + this.#limits.handshakeTimeout;
    // A keep-alive connection that no next request came on is let go, not
    // timed out; one whose next head stopped halfway is.
    let started = !first && beginsRequest(rest);
    this.#startDeadline(
      peer,
      "handshake",
      this.#limits.handshakeTimeout,
      first ? undefined : () => started,
    );
    const parser = new HttpRequestParser({
      maxHeadSize: this.#limits.maxHeadSize,
      maxHeaders: this.#limits.maxHeaders,
    });
    try {
      let head = rest.length > 0 ? parser.receive(rest) : undefined;
      // Most heads fit in 1 KiB; the socket then reads on with the buffer.
      let buffer = new ArrayBuffer(HEAD_READ);
      while (head === undefined) {
        const { value, done } = await reader.read(new Uint8Array(buffer));
        if (done || value === undefined) return null;
        // (The empty lines a server may ignore before a request line, RFC
        // 9112 §2.2, do not begin one.)
        if (!first && !started && beginsRequest(value)) {
          // The next request began: it and onUpgrade have the whole
          // handshakeTimeout from now (the wait before it was the
          // keep-alive's, which the same timeout bounds).
          started = true;
          deadline = performance.now() + this.#limits.handshakeTimeout;
          this.#startDeadline(
            peer,
            "handshake",
            this.#limits.handshakeTimeout,
            () => started,
          );
        }
        buffer = value.buffer;
        head = parser.receive(value);
        // A larger head: the rest in larger reads.
        if (
          head === undefined && value.length === buffer.byteLength &&
          buffer.byteLength < MAX_HEAD_READ
        ) {
          buffer = new ArrayBuffer(buffer.byteLength * 2);
        }
      }
      return { head, rest: parser.rest, deadline, buffer };
    } catch (error) {
      if (error instanceof HandshakeError) await this.#reject(peer, error);
      else if (
        first && peer.deadline !== null && this.#shutdown === null &&
        !isTlsPeerGone(error)
      ) {
        // A reset or a failed TLS handshake, not our own timeout or shutdown
        // (a client that reset an idle keep-alive connection has not failed).
        this.#stats.connectionErrors++;
        this.#logger({
          type: "connection-error",
          remoteAddr: peer.remoteAddr,
          error,
        });
      }
      return null;
    } finally {
      this.#endDeadline(peer);
    }
  }

  /**
   * Closes the connection unless the current step (reading a request head,
   * an HTTP exchange, an upgrade hook) ends within `timeout` milliseconds,
   * and calls `onExpiry` if given: when it returns `false`, the end is not a
   * timeout to count and log (an idle keep-alive connection let go).
   * Deadlines are checked on the shared ticker: no timer each.
   */
  #startDeadline(
    peer: Peer<Data>,
    phase: TimeoutPhase,
    timeout: number,
    onExpiry?: () => boolean | void,
  ): void {
    peer.deadline = {
      at: performance.now() + timeout,
      phase,
      onExpiry,
      slot: peer.deadline?.slot ?? this.#deadlines.add(peer),
    };
    this.#stopDeadlineChecks ??= this.#ticker.add((now) => {
      this.#deadlines.forEach((peer) => {
        const deadline = peer.deadline!;
        if (now < deadline.at) return;
        this.#deadlines.remove(deadline.slot);
        peer.deadline = null;
        closeQuietly(peer.conn);
        if (deadline.onExpiry?.() === false) return;
        this.#stats.countTimeout(deadline.phase);
        this.#logger({
          type: "timeout",
          phase: deadline.phase,
          remoteAddr: peer.remoteAddr,
        });
      });
    });
  }

  #endDeadline(peer: Peer<Data>): void {
    if (peer.deadline !== null) {
      this.#deadlines.remove(peer.deadline.slot);
      peer.deadline = null;
    }
    if (this.#deadlines.size === 0 && this.#stopDeadlineChecks !== null) {
      this.#stopDeadlineChecks();
      this.#stopDeadlineChecks = null;
    }
  }

  /** Validates and answers a handshake; `null` when it was rejected. */
  async #upgrade(
    peer: Peer<Data>,
    { head, rest, deadline, buffer }: NonNullable<HeadResult>,
  ): Promise<Socket<Data> | null> {
    const { conn, reader, writer, remoteAddr } = peer;
    const options = this.#options;
    peer.state = "upgrading";
    try {
      const upgrade = validateUpgradeRequest(head, this.#scheme);
      const origin = upgrade.headers.get("origin");
      if (!isOriginAllowed(origin, options.origins)) {
        throw new HandshakeError(403, `Origin ${origin} is not allowed`);
      }
      let request: Request | undefined;
      const getRequest = () =>
        request ??= new Request(upgrade.url, { headers: upgrade.headers });
      let protocol = selectProtocol(
        options.protocols,
        upgrade.protocols,
        getRequest,
      );
      let data: Data | undefined;
      let extraHeaders: Headers | undefined;
      if (options.onUpgrade) {
        // The hook has the handshake timeout, and no longer than shutdown.
        const abort = new AbortController();
        this.#startDeadline(
          peer,
          "upgrade-hook",
          // What is left of the handshake's own deadline: a head sent a
          // byte at a time does not buy the hook more time.
          Math.max(0, deadline - performance.now()),
          () => abort.abort(new Error("handshake timed out")),
        );
        peer.stopHook = () =>
          abort.abort(new Error("the server is shutting down"));
        let decision: Awaited<ReturnType<typeof options.onUpgrade>> | undefined;
        try {
          decision = await Promise.race([
            options.onUpgrade(getRequest(), {
              remoteAddr,
              protocols: upgrade.protocols,
              protocol,
              signal: abort.signal,
            }),
            new Promise<never>((_, reject) =>
              abort.signal.addEventListener(
                "abort",
                () => reject(abort.signal.reason),
              )
            ),
          ]);
        } catch (error) {
          if (!abort.signal.aborted) throw error;
        } finally {
          this.#endDeadline(peer);
          peer.stopHook = null;
        }
        // Stopped, or a hook that settled from its own abort listener comes
        // too late: the deadline closed the connection, or shutdown gets
        // its 503.
        if (abort.signal.aborted) {
          if (this.#shutdown === null) return null;
          throw SHUTTING_DOWN();
        }
        checkUpgradeDecision(decision);
        if (decision instanceof Response) {
          // Within the handshake timeout, as another rejection: a body that
          // never ends, or a client that takes none of a large one, must
          // not hold the connection.
          const abandon = new AbortController();
          this.#startDeadline(
            peer,
            "rejection",
            this.#limits.handshakeTimeout,
            () => abandon.abort(),
          );
          let result;
          try {
            result = await writeResponse(writer, decision, {
              head: false,
              http10: false,
              keepAlive: false,
              signal: abandon.signal,
            });
          } finally {
            this.#endDeadline(peer);
          }
          // Its body failed before anything went out: the hook's mistake,
          // answered (and counted) as a 500.
          if (result.unsent) throw result.error;
          this.#stats.countRejection(decision.status);
          this.#logger({
            type: "handshake-rejected",
            remoteAddr,
            status: decision.status,
            message: "rejected by onUpgrade",
          });
          if (!abandon.signal.aborted) await this.#closeGracefully(peer);
          return null;
        }
        if (decision) {
          if (decision.protocol !== undefined) {
            assertOffered(decision.protocol, upgrade.protocols);
            protocol = decision.protocol;
          }
          data = decision.data as Data;
          if (decision.headers) {
            extraHeaders = new Headers(decision.headers);
            for (const name of extraHeaders.keys()) {
              if (HANDSHAKE_HEADERS.test(name)) {
                throw new TypeError(
                  `Cannot accept: onUpgrade may not set the handshake header ${name} (the handshake sets Upgrade, Connection and Sec-WebSocket-*, and a 101 has no body); return { protocol } to choose a subprotocol`,
                );
              }
            }
          }
        }
      }
      const headers: [string, string][] = [];
      if (protocol !== "") headers.push(["Sec-WebSocket-Protocol", protocol]);
      const deflate = this.#deflateOptions &&
        negotiatePerMessageDeflate(
          upgrade.headers.get("sec-websocket-extensions"),
          this.#deflateOptions,
        );
      if (deflate) {
        headers.push(["Sec-WebSocket-Extensions", deflate.response]);
      }
      if (extraHeaders) headers.push(...extraHeaders);
      const accept = computeAcceptKey(upgrade.key);
      // Shutdown began while the hook ran: it has already closed the
      // sockets it knew of.
      if (this.#shutdown !== null) throw SHUTTING_DOWN();
      // Queued, not awaited: the socket's frames follow on the same writer.
      writer.write(encodeAcceptResponse(accept, headers)).catch(() => {});
      const socket = new Socket<Data>(
        conn,
        {
          url: upgrade.url,
          headers: upgrade.headers,
          remoteAddr,
          protocol,
        },
        this.#socketOptions({
          perMessageDeflate: deflate ? deflate.params : undefined,
          onClosed: (socket, info) => this.#socketClosed(peer, socket, info),
          head: rest,
          readBuffer: buffer,
          reader,
          writer,
        }),
        data as Data,
      );
      // Registered in the turn its 101 went out: a shutdown() in between
      // must send it a close frame, not take it for a connection still
      // waiting for its request.
      peer.state = "socket";
      peer.socketSlot = this.#sockets.add(socket);
      return socket;
    } catch (error) {
      if (error instanceof HandshakeError) {
        await this.#reject(peer, error, head.target, head.method);
      } else {
        // A hook threw: the client gets a bare 500, the logger the error.
        this.#logger({ type: "handler-error", url: head.target, error });
        await this.#reject(
          peer,
          new HandshakeError(500, "Internal server error"),
          head.target,
          head.method,
        );
      }
      return null;
    } finally {
      if (peer.state === "upgrading") peer.state = "reading";
    }
  }

  /**
   * A socket's options: `own`, over what every socket of this server is
   * given alike (its prototype, one object for all: a copy each was about
   * 300 bytes per idle connection).
   */
  #socketOptions(own: Partial<SocketOptions>): SocketOptions {
    this.#socketDefaults ??= {
      role: "server",
      ...this.#limits,
      backpressurePolicy: this.#options.backpressurePolicy ?? "close",
      ticker: this.#ticker,
      topics: this.#topics,
      streamMessages: this.#options.streamMessages,
      counters: this.#stats.counters,
      budget: this.#budget,
      onInternalError: this.#onInternalError,
    };
    return Object.assign(Object.create(this.#socketDefaults), own);
  }

  async #runSocket(socket: Socket<Data>, peer: Peer<Data>): Promise<void> {
    try {
      this.#stats.totalConnections++;
      const url = socket.url.href;
      const remoteAddr = socket.remoteAddr;
      this.#logger({
        type: "open",
        url,
        remoteAddr,
        protocol: socket.protocol,
      });
      const running = socket.run();
      try {
        await this.#handler(socket);
      } catch (error) {
        // Its own socket closing under it (a send, a stream cut short) is
        // how a handler learns of the close; a send to another socket that
        // closed is a mistake to show.
        let own = false;
        let shown = error;
        try {
          own = raisedBy(error, socket);
          if (!own && error instanceof ConnectionClosedError) {
            shown = foreignCloseError(error);
          }
        } catch {
          // Something `instanceof` cannot look at (a revoked Proxy).
        }
        if (!own) {
          this.#logger({ type: "handler-error", url, error: shown });
          socket.close(1011).catch(() => {});
        }
      }
      socket.close(1000).catch(() => {});
      await running;
      await socket.closed;
    } finally {
      this.#connectionEnded(peer);
    }
  }

  // Called by each socket as it closes, though its handler may run on: it
  // is no longer an open connection.
  #socketClosed(
    peer: Peer<Data>,
    socket: Socket<unknown>,
    info: CloseInfo,
  ): void {
    if (peer.socketSlot === null) return;
    this.#sockets.remove(peer.socketSlot);
    peer.socketSlot = null;
    this.#transportEnded(peer);
    const { remoteAddr } = socket;
    this.#stats.countClose(info.code);
    if (info.error) {
      this.#logger({
        type: "protocol-error",
        remoteAddr,
        code: info.error.code,
        closeCode: info.error.closeCode,
        message: info.error.message,
      });
    }
    this.#logger({
      type: "close",
      url: socket.url.href,
      remoteAddr,
      code: info.code,
      reason: info.reason,
      wasClean: info.wasClean,
    });
  }

  async #write(peer: Peer<Data>, bytes: Uint8Array): Promise<boolean> {
    try {
      await peer.writer.write(bytes);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Refuses a connection over `maxConnections` or
   * `maxConnectionsPerAddress` before reading anything from it, within the
   * handshake timeout (over TLS the write waits for the client's
   * handshake). It stops counting against `maxConnections` while its answer
   * goes out (see #refusing), or, with too many being refused already, is
   * closed at once without one (and counted and logged all the same).
   */
  async #refuseOverLimit(
    peer: Peer<Data>,
    error: HandshakeError,
  ): Promise<void> {
    const conn = peer.conn;
    this.#conns.remove(peer.slot);
    const most = Math.min(
      MAX_REFUSING,
      Math.max(MIN_REFUSING, this.#limits.maxConnections),
    );
    if (this.#refusing.size >= most) {
      // Refused all the same: counted and logged as the answered ones are.
      this.#stats.countRejection(error.status);
      this.#logger({
        type: "handshake-rejected",
        remoteAddr: peer.remoteAddr,
        status: error.status,
        message: `${error.message} (closed unanswered: ${most} refusals ` +
          "were going out already)",
      });
      closeQuietly(conn);
      return;
    }
    const refusing = this.#refusing.add(conn);
    this.#startDeadline(peer, "rejection", this.#limits.handshakeTimeout);
    try {
      await this.#reject(peer, error);
    } finally {
      this.#endDeadline(peer);
      this.#refusing.remove(refusing);
    }
  }

  /** Answers with a rejection, then closes gracefully. */
  async #reject(
    peer: Peer<Data>,
    error: HandshakeError,
    url = "",
    method = "",
  ): Promise<void> {
    const options = { head: method === "HEAD" };
    let response: Uint8Array;
    try {
      response = encodeRejectionResponse(error, options);
    } catch (encoding) {
      // A hook's HandshakeError with a status or a header no rejection may
      // carry.
      this.#logger({ type: "handler-error", url, error: encoding });
      error = new HandshakeError(500, "Internal server error");
      response = encodeRejectionResponse(error, options);
    }
    this.#stats.countRejection(error.status);
    this.#logger({
      type: "handshake-rejected",
      remoteAddr: peer.remoteAddr,
      status: error.status,
      message: error.message,
    });
    if (await this.#write(peer, response)) {
      await this.#closeGracefully(peer);
    }
  }

  /**
   * Half-closes, and discards what the client still sends for a moment, so
   * that unread input does not turn the close into a reset that destroys
   * the response just written.
   */
  async #closeGracefully(peer: Peer<Data>): Promise<void> {
    const lingering = setTimeout(() => closeQuietly(peer.conn), 1000);
    try {
      await peer.conn.closeWrite();
      let buffer = new ArrayBuffer(4096);
      for (let total = 0; total < 1024 * 1024;) {
        const { value, done } = await peer.reader.read(new Uint8Array(buffer));
        if (done || value === undefined) break;
        buffer = value.buffer;
        total += value.length;
      }
    } catch {
      // The client is gone already.
    } finally {
      clearTimeout(lingering);
    }
  }
}

/**
 * One accepted connection, with the reader and writer it is driven by, and
 * all the server knows of it: what it is doing, and its slots in the
 * server's lists.
 */
class Peer<Data> {
  readonly remoteAddr: Deno.NetAddr;
  readonly reader: ReadableStreamBYOBReader;
  readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  /** Its slot in the connections being served (left when refused). */
  readonly slot: Slot<Peer<Data>>;
  /**
   * What shutdown does with it depends on this: "reading" (a request head,
   * or closing) closes at once; "upgrading" (a handshake being answered)
   * gets its 503; "exchange" (plain HTTP) may finish; "socket" is sent a
   * close frame.
   */
  state: "reading" | "upgrading" | "exchange" | "socket" = "reading";
  /** When the current step must end by, and its slot in the deadlines. */
  deadline: {
    at: number;
    phase: TimeoutPhase;
    onExpiry: (() => boolean | void) | undefined;
    slot: Slot<Peer<Data>>;
  } | null = null;
  /** Stops the `onUpgrade` hook under way, at shutdown. */
  stopHook: (() => void) | null = null;
  /** Abandons the HTTP exchange under way, at shutdown's timeout. */
  abandon: (() => void) | null = null;
  /** Its socket's slot in the open sockets, until the socket closes. */
  socketSlot: Slot<Socket<Data>> | null = null;
  /** The key it is counted under per address, if it is. */
  address: string | undefined;

  constructor(readonly conn: Deno.Conn, conns: SlotList<Peer<Data>>) {
    this.remoteAddr = conn.remoteAddr as Deno.NetAddr;
    this.reader = conn.readable.getReader({ mode: "byob" });
    this.writer = conn.writable.getWriter();
    this.slot = conns.add(this);
  }
}

function isListenerClosed(error: unknown): boolean {
  return error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted;
}

/** Errors of `accept()` that are one client's doing (ENOTCONN, a reset). */
function isPeerFailure(error: unknown): boolean {
  return error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Whether a request asks for a WebSocket (rather than plain HTTP). An
 * HTTP/1.0 request's Upgrade is ignored (RFC 9110 §7.8: "A server MUST
 * ignore an Upgrade header field that is received in an HTTP/1.0
 * request"): with `fetch`, it is plain HTTP.
 */
function isWebSocketRequest(head: HttpRequestHead): boolean {
  if (head.versionMajor === 1 && head.versionMinor === 0) return false;
  return head.headers.some(([name, value]) =>
    name.toLowerCase() === "upgrade" &&
    tokenList(value).some((token) => token.toLowerCase() === "websocket")
  );
}

const SHUTTING_DOWN = () =>
  new HandshakeError(503, "The server is shutting down", {
    "Retry-After": "1",
  });

const DECISION_KEYS = new Set(["protocol", "headers", "data"]);
const PUBLISH_OPTIONS: ReadonlySet<string> = new Set(["except"]);
const SHUTDOWN_OPTIONS: ReadonlySet<string> = new Set([
  "timeout",
  "code",
  "reason",
]);

/**
 * What `onUpgrade` returned must say yes or no unmistakably: a falsy or
 * unexpected value from a JavaScript hook (`return isAuthorized(request)`)
 * must not let the connection in.
 */
function checkUpgradeDecision(decision: unknown): void {
  const expected =
    "return a Response to reject, { data, protocol, headers } or nothing to accept";
  if (decision instanceof Response) {
    if (decision.status < 200) {
      throw new TypeError(
        `onUpgrade returned a Response with status ${decision.status}: a rejection needs a final status (200-599); to accept, return { data, protocol, headers } or nothing`,
      );
    }
    return;
  }
  if (decision === undefined) return;
  // An Error, a Headers or an array has no unknown keys of its own either,
  // nor a Response of another implementation (npm:undici's), whose status
  // is inherited: none of them is an accept.
  if (
    typeof decision !== "object" || decision === null ||
    Array.isArray(decision) || decision instanceof Error ||
    decision instanceof Headers
  ) {
    throw new TypeError(
      `onUpgrade must ${expected}, got ${describe(decision)}`,
    );
  }
  for (const key of Object.keys(decision)) {
    if (!DECISION_KEYS.has(key)) {
      throw new TypeError(
        `onUpgrade returned an object with the unknown property ${
          JSON.stringify(key)
        }: ${expected}`,
      );
    }
  }
  if ("status" in decision) {
    throw new TypeError(
      `onUpgrade returned ${
        describe(decision)
      } with a status, but not this runtime's Response: ${expected}`,
    );
  }
}

/** Whether `bytes` hold more than the empty lines before a request line. */
function beginsRequest(bytes: Uint8Array): boolean {
  return bytes.some((byte) => byte !== 0x0d && byte !== 0x0a);
}

/**
 * A TLS peer that closed its TCP connection after the TLS handshake without
 * a `close_notify` alert, as browsers and Node's `https` agent do with idle
 * keep-alive connections: the end of its input, as a FIN is over plain TCP,
 * not a failure.
 */
function isTlsPeerGone(error: unknown): boolean {
  return error instanceof Deno.errors.UnexpectedEof &&
    error.message.includes("close_notify");
}

/** `Deno.listen`, with an error that says where. */
function listen(options: Deno.TcpListenOptions): Deno.TcpListener {
  try {
    return Deno.listen(options);
  } catch (error) {
    throw listenError(error, options);
  }
}

function listenError(error: unknown, options: Deno.TcpListenOptions): unknown {
  const host = options.hostname?.includes(":")
    ? `[${options.hostname}]`
    : options.hostname;
  return withContext(error, `Cannot serve on ${host}:${options.port}`);
}

/** `Deno.listenTls`, with an error that says which option is wrong. */
function listenTls(
  options: Deno.TcpListenOptions & Deno.TlsCertifiedKeyPem,
): Deno.TlsListener {
  try {
    return Deno.listenTls(options);
  } catch (error) {
    const message = (error as Error).message;
    if (/KeyMismatch|keys may not be consistent/.test(message)) {
      throw new TypeError(
        `Cannot serve: "key" is not the private key of "cert" (${message})`,
      );
    }
    if (/certificate|private key|PEM/i.test(message)) {
      throw new TypeError(`Cannot serve: "cert" or "key": ${message}`);
    }
    throw listenError(error, options);
  }
}
