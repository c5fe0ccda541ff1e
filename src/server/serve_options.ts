import { resolveNumericOptions } from "../_numeric_options.ts";
import { checkOptionNames } from "../_unknown_options.ts";
import {
  DEFAULT_MAX_FRAGMENTS,
  DEFAULT_MAX_PAYLOAD,
} from "../protocol/connection.ts";
import type { ProtocolError } from "../protocol/errors.ts";
import {
  DEFAULT_MAX_HEAD_SIZE,
  DEFAULT_MAX_HEADERS,
} from "../protocol/http_request_parser.ts";
import type { Socket } from "../socket.ts";
import type { BackpressurePolicy } from "../socket_options.ts";
import type { PubSubAdapter } from "../pubsub/adapter.ts";
import type { FetchHandler } from "./http_exchange.ts";
import type { PerMessageDeflateOptions } from "../protocol/permessage_deflate.ts";
import { describe } from "../protocol/_describe.ts";

/**
 * Called once per accepted WebSocket; the socket closes when it returns, or
 * when the promise it returns settles (so `(socket) => socket.closed` keeps
 * it open until the peer closes; what it resolves with is ignored).
 *
 * @example A handler written apart from serve(), for sockets that carry a user
 * ```ts
 * import { connect, serve, type SocketHandler } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * type User = { name: string };
 * const greet: SocketHandler<User> = async (socket) => {
 *   await socket.send(`hello ${socket.data.name}`);
 * };
 * await using server = serve<User>({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   onUpgrade: (request) => ({ data: { name: new URL(request.url).searchParams.get("name") ?? "guest" } }),
 * }, greet);
 * const socket = await connect(`ws://127.0.0.1:${server.addr.port}/?name=ada`);
 * assert.deepEqual(await Array.fromAsync(socket), ["hello ada"]);
 * ```
 */
export type SocketHandler<Data = unknown> = (
  socket: Socket<Data>,
) => void | PromiseLike<unknown>;

/**
 * What {@linkcode UpgradeHook} learns about a handshake besides the request.
 *
 * @example Admitting only clients that speak our subprotocol
 * ```ts
 * import { connect, serve, type UpgradeInfo } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const speaksV2 = (info: UpgradeInfo) => info.protocols.includes("v2");
 * await using server = serve({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   protocols: ["v2"],
 *   onUpgrade: (_request, info) => speaksV2(info) ? undefined : new Response("v2 only", { status: 403 }),
 * }, () => {});
 * const url = `ws://127.0.0.1:${server.addr.port}`;
 * await assert.rejects(connect(url, { protocols: ["v1"] }), { status: 403, body: "v2 only" });
 * const socket = await connect(url, { protocols: ["v1", "v2"] });
 * assert.equal(socket.protocol, "v2");
 * await socket.closed;
 * ```
 */
export interface UpgradeInfo {
  /** The client's address. */
  remoteAddr: Deno.NetAddr;
  /** The subprotocols the client offers, in its order. */
  protocols: string[];
  /** The subprotocol chosen by the `protocols` option, or `""`. */
  protocol: string;
  /**
   * Aborted when the hook runs past the handshake timeout or the server
   * shuts down; the handshake is abandoned then.
   */
  signal: AbortSignal;
}

/**
 * How {@linkcode UpgradeHook} accepts a handshake.
 *
 * @example Accepting with per-connection data and a cookie
 * ```ts
 * import { connect, serve, type UpgradeAccept } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * type Session = { user: string };
 * await using server = serve<Session>({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   onUpgrade: (request) => {
 *     const user = new URL(request.url).searchParams.get("user") ?? "guest";
 *     return { data: { user }, headers: { "set-cookie": `user=${user}` } } satisfies UpgradeAccept<Session>;
 *   },
 * }, (socket) => socket.send(`hi ${socket.data.user}`));
 * const socket = await connect(`ws://127.0.0.1:${server.addr.port}/?user=ada`);
 * assert.equal(socket.headers.get("set-cookie"), "user=ada");
 * assert.deepEqual(await Array.fromAsync(socket), ["hi ada"]);
 * ```
 */
export interface UpgradeAccept<Data> {
  /** The subprotocol to use; it must be one the client offered. */
  protocol?: string;
  /**
   * Extra headers for the `101` response (cookies, for example); not the
   * handshake's own (`Upgrade`, `Connection`, `Sec-WebSocket-*`).
   */
  headers?: HeadersInit;
  /**
   * Per-connection data, available to the handler as `socket.data`;
   * required by {@linkcode UpgradeHook} unless `Data` allows `undefined`.
   */
  data?: Data;
}

/**
 * Decides on a valid handshake before the `101` is sent: return (or resolve
 * to) a `Response` to reject it with that response (401 or 403 with a body,
 * say); return an {@linkcode UpgradeAccept} to accept it, or nothing. When
 * `Data` does not allow `undefined`, accepting needs `data` (nothing else
 * would give `socket.data` a value). A hook that throws rejects the
 * handshake with 500 (logged as `handler-error`), unless what it throws is
 * a `HandshakeError`: that is answered with its status (200-599, but 204
 * and 304) and headers (not `Content-Length`, `Transfer-Encoding`, or a
 * `Connection` with options other than `close` and `upgrade`: the
 * rejection sets those, and one that does gets the 500).
 *
 * @example Rejecting handshakes without a token
 * ```ts
 * import { connect, serve, type UpgradeHook } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const requireToken: UpgradeHook<undefined> = (request) =>
 *   new URL(request.url).searchParams.has("token")
 *     ? undefined // accept
 *     : new Response("token required", { status: 401 });
 * await using server = serve({ port: 0, hostname: "127.0.0.1", onUpgrade: requireToken }, () => {});
 * const url = `ws://127.0.0.1:${server.addr.port}/`;
 * await assert.rejects(connect(url), { status: 401, body: "token required" });
 * const socket = await connect(`${url}?token=abc`);
 * await socket.closed;
 * ```
 */
export type UpgradeHook<Data> = (
  request: Request,
  info: UpgradeInfo,
) =>
  | Response
  | UpgradeHookAccept<Data>
  | Promise<Response | UpgradeHookAccept<Data>>;

/**
 * What an {@linkcode UpgradeHook} may return to accept: nothing or an
 * {@linkcode UpgradeAccept} when `Data` allows `undefined`, else an
 * {@linkcode UpgradeAccept} with `data`.
 *
 * @example What accepting takes, by the type of the data
 * ```ts
 * import type { UpgradeHookAccept } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * // Data that may be undefined: accepting may return nothing.
 * const bare: UpgradeHookAccept<string | undefined> = undefined;
 * // Data that may not: accepting must give it.
 * const named: UpgradeHookAccept<string> = { data: "ada", protocol: "chat" };
 * // @ts-expect-error: without data, socket.data would not be a string
 * const missing: UpgradeHookAccept<string> = { protocol: "chat" };
 * assert.equal(named.data, "ada");
 * void bare, missing;
 * ```
 */
export type UpgradeHookAccept<Data> = undefined extends Data
  ? UpgradeAccept<Data> | void
  : UpgradeAccept<Data> & { data: Data };

/**
 * What {@linkcode serve} requires of its options for a given `Data`:
 * nothing when `Data` allows `undefined`, else an `onUpgrade` hook, since
 * without one `socket.data` is `undefined`.
 *
 * @example A server whose sockets carry a user needs the hook that sets it
 * ```ts
 * import type { DataHookRequirement, ServeOptions } from "@duplex/ws";
 *
 * type User = { name: string };
 * const options: ServeOptions<User> & DataHookRequirement<User> = {
 *   port: 0,
 *   onUpgrade: (request) => ({ data: { name: request.headers.get("x-user") ?? "guest" } }),
 * };
 * // @ts-expect-error: without onUpgrade, socket.data would not be a User
 * const missing: ServeOptions<User> & DataHookRequirement<User> = { port: 0 };
 * void options, missing;
 * ```
 */
export type DataHookRequirement<Data> = undefined extends Data ? unknown
  : { onUpgrade: UpgradeHook<Data> };

/**
 * A structured event for {@linkcode ServeOptions.logger}.
 *
 * @example A logger that counts events and warns about unclean closes
 * ```ts
 * import { connect, serve, type ServerLogEvent } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const counts: Partial<Record<ServerLogEvent["type"], number>> = {};
 * function logger(event: ServerLogEvent): void {
 *   counts[event.type] = (counts[event.type] ?? 0) + 1;
 *   if (event.type === "close" && !event.wasClean) console.warn("lost", event.remoteAddr, event.code);
 *   if (event.type === "handler-error") console.error("handler failed on", event.url, event.error);
 * }
 * await using server = serve({ port: 0, hostname: "127.0.0.1", logger }, () => {});
 * const socket = await connect(`ws://127.0.0.1:${server.addr.port}`);
 * await socket.closed;
 * await server.shutdown();
 * assert.deepEqual(counts, { listen: 1, open: 1, close: 1 });
 * ```
 */
export type ServerLogEvent =
  | { type: "listen"; addr: Deno.NetAddr }
  | { type: "open"; url: string; remoteAddr: Deno.NetAddr; protocol: string }
  | {
    type: "close";
    url: string;
    remoteAddr: Deno.NetAddr;
    code: number;
    reason: string;
    wasClean: boolean;
  }
  | {
    type: "protocol-error";
    remoteAddr: Deno.NetAddr;
    code: ProtocolError["code"];
    closeCode: number;
    message: string;
  }
  | {
    type: "handshake-rejected";
    remoteAddr: Deno.NetAddr;
    status: number;
    message: string;
  }
  | { type: "handler-error"; url: string; error: unknown }
  /**
   * Processing a WebSocket's input threw inside this module: a bug (please
   * report it). That connection closed with 1011; the others go on.
   */
  | {
    type: "internal-error";
    url: string;
    remoteAddr: Deno.NetAddr;
    error: unknown;
  }
  | { type: "pubsub-error"; error: unknown }
  | { type: "accept-error"; error: unknown }
  /**
   * A connection failed before its request head: a reset, a TLS failure.
   * `remoteAddr` is missing for one reset while it waited to be accepted.
   */
  | { type: "connection-error"; remoteAddr?: Deno.NetAddr; error: unknown }
  /**
   * `shutdown()`'s timeout passed with `pending` connections whose handler
   * (or HTTP exchange) had not ended: it resolves without them.
   */
  | { type: "shutdown-timeout"; pending: number }
  /** A connection closed because a step took too long. */
  | { type: "timeout"; phase: TimeoutPhase; remoteAddr: Deno.NetAddr }
  /**
   * The sockets together held more than `maxBufferedBytes`: the one holding
   * the most (`held` bytes, published frames it had not written included,
   * whole) was closed with 1013. `total` is what they all held then, this
   * one included, each published frame once.
   */
  | {
    type: "over-budget";
    url: string;
    remoteAddr: Deno.NetAddr;
    held: number;
    total: number;
  };

/**
 * What a connection was doing when its time ran out, before it became a
 * WebSocket: sending its request head (`handshakeTimeout`; a keep-alive
 * connection closed before its next request began is no timeout), a plain HTTP
 * exchange (`requestTimeout`), reading a streamed response no more
 * (`requestTimeout` for one write), the `onUpgrade` hook, or receiving a
 * 503 or 429 (both `handshakeTimeout`). A WebSocket's own deadlines are
 * counted in `stats().timeouts` too, as `idle`, `message`, `pong` and
 * `write` (see `ServerStats.timeouts`); the logger reports those closes as
 * `close` events, with their code and reason.
 *
 * @example Seeing which step timed out
 * ```ts
 * import { serve, type TimeoutPhase } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const phases: TimeoutPhase[] = [];
 * await using server = serve({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   handshakeTimeout: 100,
 *   logger: (event) => void (event.type === "timeout" && phases.push(event.phase)),
 * }, () => {});
 * // A client that connects and never sends its request.
 * using conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
 * await conn.readable.pipeTo(new WritableStream()); // until the server hangs up
 * assert.deepEqual(phases, ["handshake"]);
 * assert.equal(server.stats().timeouts.handshake, 1);
 * ```
 */
export type TimeoutPhase =
  | "handshake"
  | "request"
  | "response"
  | "upgrade-hook"
  | "rejection";

/**
 * Options of {@linkcode serve}.
 *
 * @example Options kept apart from the call
 * ```ts
 * import { serve, type ServeOptions } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const options: ServeOptions = {
 *   port: 0, // any free port; the real one is server.addr.port
 *   hostname: "127.0.0.1",
 *   maxPayload: 1 << 20, // messages of 1 MiB at most
 *   idleTimeout: 60_000, // close connections silent for a minute
 * };
 * await using server = serve(options, async (socket) => {
 *   for await (const message of socket) await socket.send(message);
 * });
 * assert.notEqual(server.addr.port, 0);
 * ```
 */
export interface ServeOptions<Data = unknown> {
  /**
   * The TCP port to listen on; `0` picks a free one (see `server.addr`).
   * @default {8765}
   */
  port?: number;
  /**
   * The address to listen on.
   * @default {"0.0.0.0"}
   */
  hostname?: string;
  /**
   * Lets several listeners share the port (Linux `SO_REUSEPORT`), for one
   * server per worker; Deno needs `--unstable-net` for it.
   * @default {false}
   */
  reusePort?: boolean;
  /**
   * Carries `publish()` to other server instances (workers, processes,
   * machines). Without it, topics are local to this server.
   */
  pubsub?: PubSubAdapter;
  /**
   * Compression with permessage-deflate (RFC 7692) for clients that offer
   * it: `true` for the defaults, or settings. Off by default: compression
   * trades CPU for bandwidth.
   * @default {false}
   */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
  /** PEM certificate chain; with `key`, the server speaks `wss://` (TLS). */
  cert?: string;
  /** PEM private key for `cert`. */
  key?: string;
  /** Aborting it shuts the server down like `server.shutdown()`. */
  signal?: AbortSignal;
  /** Called once the server listens, with its address. */
  onListen?: (addr: Deno.NetAddr) => void;
  /**
   * Receives structured events (open, close, errors). By default
   * `handler-error`, `internal-error`, `pubsub-error`, `accept-error`,
   * `over-budget` and `shutdown-timeout` are printed with `console.error` (a repeating
   * `pubsub-error`, `accept-error` or `over-budget` once per 10 s) and the
   * rest dropped; `() => {}` silences everything.
   */
  logger?: (event: ServerLogEvent) => void;
  /**
   * Origins allowed to open WebSockets (exact strings such as
   * `"https://example.com"`, or RegExps). A request whose `Origin` header
   * matches none is rejected with 403; a request without `Origin` (not from
   * a browser) is allowed. A RegExp matches anywhere in the origin, as
   * `test()` does: anchor it (`/^https:\/\/[a-z0-9-]+\.example\.com$/`), or
   * `/example\.com/` lets `https://example.com.evil.net` in; the `g` and `y`
   * flags are refused. Unset: every origin. A string that is not an
   * origin as browsers send it (a trailing slash, a path, upper case, a
   * default port) throws, since it could never match; schemes without a URL
   * origin are written scheme://host (`chrome-extension://id`).
   */
  origins?: readonly (string | RegExp)[];
  /**
   * Subprotocols the server speaks, in its order of preference, or a
   * function choosing one from the client's offer. The server answers with
   * the first of its protocols the client offered, or with none. A function
   * must return one of the offered names or `undefined`: another name fails
   * the handshake with 500 (logged as `handler-error`).
   */
  protocols?:
    | readonly string[]
    | ((offered: string[], request: Request) => string | undefined);
  /** Accepts or rejects each valid handshake; see {@linkcode UpgradeHook}. */
  onUpgrade?: UpgradeHook<Data>;
  /**
   * Answers plain HTTP requests (anything but a WebSocket upgrade) on the
   * same port, with keep-alive, request bodies (`Content-Length` or
   * chunked) and streamed responses. Without it they are checked as
   * handshakes and get the status of the first rule they break (an
   * HTTP/1.1 `GET` without `Upgrade: websocket` gets 426, another method
   * 405).
   */
  fetch?: FetchHandler;
  /**
   * Deliver each message as a stream of its pieces as they arrive
   * (`socket.streams()`) instead of whole (`for await ... of socket`), for
   * messages too large to hold in memory; raise `maxPayload` with it.
   * @default {false}
   */
  streamMessages?: boolean;
  /**
   * The largest message accepted, in bytes (1009 beyond it): checked as
   * received and, with compression, after inflating.
   * @default {16777216}
   */
  maxPayload?: number;
  /**
   * The most frames per message (1009 beyond it). A message sent with
   * `sendStream()` is a frame per piece: an upload of 1 GiB in 64 KiB pieces
   * is 16,384 frames.
   * @default {4096}
   */
  maxFragments?: number;
  /**
   * The largest request head, in bytes (431 beyond it).
   * @default {16384}
   */
  maxHeadSize?: number;
  /**
   * The most request header fields (431 beyond it).
   * @default {100}
   */
  maxHeaders?: number;
  /**
   * The largest plain HTTP request body, in bytes (413 beyond it).
   * @default {1048576}
   */
  maxBodySize?: number;
  /**
   * The most connections at once, WebSocket or HTTP; more get 503 (with
   * `Retry-After: 1`). Connections being refused (this 503, or 429 past
   * `maxConnectionsPerAddress`) do not count while their answer goes out;
   * at most this many of them (64 to 1024) are answered at once, and a
   * connection over a limit beyond that is closed unanswered (counted in
   * `stats().handshakeRejections` and logged all the same).
   * @default {10000}
   */
  maxConnections?: number;
  /**
   * The most connections at once from one client address, WebSocket or
   * HTTP, handshakes still arriving included; more get 429 with
   * `Retry-After: 1` (`maxConnections` is checked first). An IPv4-mapped
   * IPv6 address counts as its IPv4 address, and other IPv6 addresses by
   * their /64 prefix (one host usually has a whole /64). Off by default:
   * behind a reverse proxy every client has the proxy's address, so limit
   * connections per client there instead.
   * @default {Infinity}
   */
  maxConnectionsPerAddress?: number;
  /**
   * The most bytes all WebSocket connections together may hold: messages
   * still arriving (as received, compressed or not), messages and pieces of
   * streamed ones that handlers have not taken yet, and output not yet
   * written (`bufferedAmount`). A message published to many sockets (or a
   * `PreparedMessage` sent to them), framed once, counts once while any of
   * them has not written it, as does its compressed frame, made once for
   * each permessage-deflate setting; a socket's own sends count for it
   * alone. Without it, memory is bounded per connection only (by
   * `maxPayload`, `receiveHighWaterMark` and `maxBackpressure`), so
   * `maxConnections` peers that each send most of a large message, or stop
   * reading what they are sent, can make the server hold hundreds of GB.
   *
   * Over it, the connection holding the most (its own bytes and every
   * published frame it has not written, whole) is closed with 1013 (try
   * again later) and what it held is let go at once, then the next largest,
   * until the total is under the budget; each is logged as `over-budget`
   * and counted in `stats().budgetCloses`. A peer with nothing queued for
   * it gets the close frame; one with output queued is likely not reading,
   * and its transport is closed at once. The largest holder is usually the
   * one to blame (a slow reader with a backlog, a large message trickled
   * in; a subscriber that stopped reading soon holds alone most of what was
   * published since), and closing it frees the most while closing the
   * fewest; but when many peers each hold a little, the largest may be a
   * legitimate client in the middle of one large message (bound tricklers
   * with `messageTimeout` and `maxConnectionsPerAddress`).
   *
   * Off by default, like `maxConnectionsPerAddress`: a budget too small for
   * what an application legitimately holds (large uploads, large broadcasts
   * that some subscribers read slowly) closes its clients. A server that
   * faces the internet should set it, above what `stats().bufferedBytes`
   * shows under real load, and below the memory the process may use.
   * @default {Infinity}
   *
   * @example A server that holds at most 256 MiB for its WebSockets
   * ```ts
   * import { serve } from "@duplex/ws";
   * import assert from "node:assert/strict";
   *
   * await using server = serve(
   *   { port: 0, hostname: "127.0.0.1", maxBufferedBytes: 256 * 1024 * 1024 },
   *   async (socket) => {
   *     for await (const message of socket) await socket.send(message);
   *   },
   * );
   * assert.equal(server.stats().bufferedBytes, 0);
   * ```
   */
  maxBufferedBytes?: number;
  /**
   * Milliseconds a client has to send a complete request head, and for
   * `onUpgrade` to decide (what is left of it); also the time to deliver a
   * 503 or another rejection.
   * @default {10000}
   */
  handshakeTimeout?: number;
  /**
   * Milliseconds a plain HTTP exchange may take until its response head is
   * written with the request body read: a handler that never answers, or a
   * body that never ends, is cut off then. A response body that streams on
   * (server-sent events) is not, once the handler has read the request's
   * body (a request without one, such as a GET, has nothing to read); but
   * a write of it that the client does not take within this time (it
   * stopped reading) closes the connection. Writes are of at most 64 KiB:
   * at the default, a client reading slower than about 2 KB/s is taken for
   * one that stopped.
   * @default {30000}
   */
  requestTimeout?: number;
  /**
   * Milliseconds `close()` waits for the peer's close frame, counted from
   * the last write the peer took: what was queued before the close frame
   * may take longer to go out, as long as it moves. A write counts as taken
   * once the kernel has it, and its buffers hold a few MB: when that much
   * may still be unread by the peer (more than 64 KiB were written lately),
   * it waits on for the peer to read it, as a peer reading 64 KiB per
   * `closeTimeout` would, up to four times `closeTimeout` more, with its
   * side ended (FIN, after the data) a close timeout after everything is
   * written; only then does it close, since a peer that sends anything to
   * a closed connection gets a reset, which discards what it has not read
   * yet. The same holds for its answer to the peer's close frame, queued
   * behind a backlog. Checked on the server's shared tick when that ticks
   * at least four times per close timeout: it may end up to a quarter of
   * itself late.
   * @default {5000}
   */
  closeTimeout?: number;
  /**
   * Milliseconds without traffic from a peer before a keepalive ping is
   * sent; 0 disables keepalive pings.
   * @default {30000}
   */
  pingInterval?: number;
  /**
   * Milliseconds to wait for the pong to a ping (keepalive or
   * `socket.ping()`), counted from when the ping is written (a ping queued
   * behind other output waits its turn); without one the transport is
   * closed and `closed` reports 1011 "keepalive pong timeout". Not applied
   * while the socket has stopped reading for inbound backpressure. 0 waits
   * forever. With
   * `pingInterval`, it also bounds a peer that stops reading while it keeps
   * sending (or while we stopped reading it): when no output was taken for
   * `pingInterval + pongTimeout`, the transport is closed and `closed`
   * reports 1011 "peer stopped reading". A write counts as taken once the
   * kernel has it, and the kernel holds a few MB per connection, so a peer
   * must read roughly 4 to 6 MB per `pingInterval + pongTimeout` (about
   * 100 KB/s with the defaults) not to count as stopped: raise both for
   * slower peers that are sent large backlogs.
   * @default {20000}
   */
  pongTimeout?: number;
  /**
   * Milliseconds without a message either way before the connection is
   * closed with 1001 "idle timeout"; 0 disables it. A message counts as it
   * arrives, with each piece of it (so a peer that sends a byte of a large
   * message now and then is not idle; `maxPayload` bounds what it can make
   * us hold), and again as the handler takes it (or a piece of a streamed
   * one), however long after it was read: a handler slowly reading a large
   * upload is not idleness, and its reply is not cut off. Messages that sit
   * in the queue for a handler that takes none (it only pushes) do not
   * count while they wait; pings and pongs do not count.
   * @default {0}
   */
  idleTimeout?: number;
  /**
   * Milliseconds one frame or message may take to arrive whole, counted
   * from when it began (checked on the shared ticker: it fires up to a
   * quarter of this, and at least 20 ms, late, never early); beyond it the
   * connection fails with
   * 1008 "MESSAGE_TIMEOUT". It bounds a peer that keeps a connection (and
   * what it sent of a large message) by sending a byte of it now and then,
   * which keepalive and `idleTimeout` take for traffic. Allow for your
   * largest message at your slowest client's rate. Not counted while the
   * socket has stopped reading for inbound backpressure (a slow handler),
   * and its count starts over whenever reading stopped so since the last
   * check: a slow handler cannot make a message sent in time fail.
   * 0 disables it.
   * @default {0}
   */
  messageTimeout?: number;
  /**
   * Queued outgoing bytes above which `send()` waits for the writes.
   * @default {1048576}
   */
  sendHighWaterMark?: number;
  /**
   * Queued outgoing bytes at which `backpressurePolicy` applies; at least
   * `sendHighWaterMark`. A bound on memory: what the current turn queued,
   * not yet offered to the peer, counts too, so a burst larger than this
   * meets the policy however fast the peer reads. Under "close" the transport is closed at once (`closed` reports 1008
   * "backpressure limit exceeded"; the peer, not reading, sees 1006).
   * @default {16777216}
   */
  maxBackpressure?: number;
  /**
   * What happens to a message sent while `maxBackpressure` bytes are queued.
   * @default {"close"}
   */
  backpressurePolicy?: BackpressurePolicy;
  /**
   * Received bytes queued for a handler before the socket stops reading
   * (text counts its string length). With `streamMessages`, the pieces of
   * every message not read yet count, in streams taken or still queued,
   * each with an overhead of 128 bytes (small waiting pieces merge, up to
   * 16 KiB). It is checked between reads, and a streamed piece is what one
   * read got of its frame (reads grow with the traffic, up to 256 KiB, or 1
   * MiB inside a frame that needs more): a slow streaming handler may be
   * handed pieces of up to 1 MiB, and the pieces waiting may exceed this
   * by about one read. Parsing stops at the message that
   * reaches it, however many frames a read holds (compressed ones that
   * inflate a thousandfold included): the queue may exceed it by that one
   * message, of up to `maxPayload`.
   * @default {1048576}
   */
  receiveHighWaterMark?: number;
  /**
   * Received messages queued for a handler before the socket stops reading
   * (and parsing: a read of thousands of tiny frames stops at it).
   * @default {1024}
   */
  maxQueuedMessages?: number;
}

/** The numeric options, with their defaults. */
export const NUMERIC_DEFAULTS = {
  maxPayload: DEFAULT_MAX_PAYLOAD,
  maxFragments: DEFAULT_MAX_FRAGMENTS,
  maxHeadSize: DEFAULT_MAX_HEAD_SIZE,
  maxHeaders: DEFAULT_MAX_HEADERS,
  maxBodySize: 1024 * 1024,
  maxConnections: 10_000,
  maxConnectionsPerAddress: Infinity,
  maxBufferedBytes: Infinity,
  handshakeTimeout: 10_000,
  requestTimeout: 30_000,
  closeTimeout: 5_000,
  pingInterval: 30_000,
  pongTimeout: 20_000,
  idleTimeout: 0,
  messageTimeout: 0,
  sendHighWaterMark: 1024 * 1024,
  maxBackpressure: 16 * 1024 * 1024,
  receiveHighWaterMark: 1024 * 1024,
  maxQueuedMessages: 1024,
} as const;

/** The options a server runs with, defaults applied and checked. */
export type ResolvedLimits = {
  -readonly [K in keyof typeof NUMERIC_DEFAULTS]: number;
};

// Options in milliseconds, and the longest timer the platform supports.
const TIMEOUTS = new Set([
  "handshakeTimeout",
  "requestTimeout",
  "closeTimeout",
  "pingInterval",
  "pongTimeout",
  "idleTimeout",
  "messageTimeout",
]);

// An HTTP token (RFC 9110 §5.6.2).
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

// Options where 0 means "disabled".
const MAY_BE_ZERO = new Set([
  "pingInterval",
  "pongTimeout",
  "idleTimeout",
  "messageTimeout",
]);

// Options where Infinity means "no limit".
const MAY_BE_INFINITE = new Set([
  "maxConnectionsPerAddress",
  "maxBufferedBytes",
]);

// Every option of serve(); another name is a mistake.
const SERVE_OPTIONS: ReadonlySet<string> = new Set([
  "port",
  "hostname",
  "reusePort",
  "pubsub",
  "perMessageDeflate",
  "cert",
  "key",
  "signal",
  "onListen",
  "logger",
  "origins",
  "protocols",
  "onUpgrade",
  "fetch",
  "streamMessages",
  "backpressurePolicy",
  ...Object.keys(NUMERIC_DEFAULTS),
]);

// Options of Deno.serve() a config handed to serve() may carry.
const DENO_SERVE_OPTIONS = {
  handler: "pass the handler as the second argument of serve()",
  onError:
    'errors of the server and its handlers go to "logger" (plain HTTP requests go to "fetch")',
  transport: "serve() listens on TCP (and TLS with cert and key)",
} as const;

// The type each option that is not a number must have, as `typeof` says.
const OPTION_TYPES: Record<string, string> = {
  hostname: "string",
  reusePort: "boolean",
  cert: "string",
  key: "string",
  onListen: "function",
  logger: "function",
  onUpgrade: "function",
  fetch: "function",
  streamMessages: "boolean",
};

/**
 * Checks the options that are not numbers (see {@linkcode resolveLimits}):
 * their types, and the shapes of `origins`, `protocols`, `signal` and
 * `pubsub`, so that a mistake throws when the server starts rather than on
 * the first request.
 *
 * @param options The user's options.
 * @throws {TypeError} For the first option of the wrong type.
 */
export function checkServeOptions(options: ServeOptions<never>): void {
  checkOptionNames("serve", SERVE_OPTIONS, options, DENO_SERVE_OPTIONS);
  const fail = (name: string, expected: string, value: unknown) => {
    throw new TypeError(
      `Cannot serve: "${name}" must be ${expected}, got ${describe(value)}`,
    );
  };
  for (const [name, type] of Object.entries(OPTION_TYPES)) {
    const value = options[name as keyof ServeOptions<never>];
    if (value !== undefined && typeof value !== type) {
      fail(name, `a ${type}`, value);
    }
  }
  const { origins, protocols, signal, pubsub, perMessageDeflate } = options;
  if (
    origins !== undefined &&
    (!Array.isArray(origins) ||
      !origins.every((o) => typeof o === "string" || o instanceof RegExp))
  ) {
    fail("origins", "an array of origin strings and RegExps", origins);
  }
  for (const origin of origins ?? []) {
    if (origin instanceof RegExp && (origin.global || origin.sticky)) {
      // test() would go on from where the last match ended: every other
      // request from the same origin would be refused.
      throw new TypeError(
        `Cannot serve: "origins" RegExps may not have the g or y flag (test() would remember where the last match ended), got ${origin}`,
      );
    }
    if (typeof origin !== "string" || origin === "null") continue;
    // Browsers send a serialized origin: scheme://host[:port], lower case,
    // no default port, no path; anything else would never match. Schemes
    // without a URL origin (chrome-extension://id, tauri://localhost) are
    // sent as scheme://host.
    const url = URL.parse(origin);
    const serialized = url === null
      ? undefined
      : url.origin !== "null"
      ? url.origin
      : url.host !== ""
      ? `${url.protocol}//${url.host}`.toLowerCase()
      : undefined;
    if (serialized !== origin) {
      throw new TypeError(
        `Cannot serve: "origins" entries must be origins as browsers send them (scheme://host[:port], no path), got ${
          JSON.stringify(origin)
        }${
          serialized === undefined ? "" : `: use ${JSON.stringify(serialized)}`
        }`,
      );
    }
  }
  if (
    protocols !== undefined && typeof protocols !== "function" &&
    (!Array.isArray(protocols) ||
      !protocols.every((p) => typeof p === "string"))
  ) {
    fail("protocols", "an array of strings or a function", protocols);
  }
  if (Array.isArray(protocols)) {
    // A client offers tokens (RFC 6455 §4.1): nothing else could match.
    const seen = new Set<string>();
    for (const protocol of protocols) {
      if (!TOKEN.test(protocol) || seen.has(protocol)) {
        throw new TypeError(
          `Cannot serve: "protocols" must hold distinct subprotocol names (HTTP tokens: no spaces, commas or quotes), got ${
            JSON.stringify(protocol)
          }${seen.has(protocol) ? " twice" : ""}`,
        );
      }
      seen.add(protocol);
    }
  }
  if (options.hostname === "") fail("hostname", "a host name or address", "");
  // Deno's own errors for these name neither the option nor the fix.
  for (
    const [name, block] of [["cert", "CERTIFICATE"], ["key", "PRIVATE KEY"]]
  ) {
    const pem = options[name as "cert" | "key"];
    if (
      pem !== undefined && !(pem.includes("-----BEGIN") && pem.includes(block))
    ) {
      throw new TypeError(
        `Cannot serve: "${name}" must be PEM text (a "-----BEGIN ...${block}-----" block), got ${
          pem.length < 200 && !pem.includes("\n")
            ? `${
              JSON.stringify(pem)
            }: a file name? Read it with Deno.readTextFileSync()`
            : "text without one"
        }`,
      );
    }
  }
  if (
    options.key?.includes("-----BEGIN ENCRYPTED PRIVATE KEY-----") ||
    options.key?.includes("Proc-Type: 4,ENCRYPTED")
  ) {
    throw new TypeError(
      'Cannot serve: "key" is encrypted, and Deno reads only unencrypted keys: decrypt it first (openssl pkey -in key.pem -out plain-key.pem)',
    );
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    fail("signal", "an AbortSignal", signal);
  }
  if (
    pubsub !== undefined &&
    (typeof pubsub !== "object" || pubsub === null ||
      typeof pubsub.start !== "function" ||
      typeof pubsub.publish !== "function" ||
      typeof pubsub.close !== "function")
  ) {
    fail("pubsub", "an adapter with start, publish and close", pubsub);
  }
  if (
    perMessageDeflate !== undefined && typeof perMessageDeflate !== "boolean" &&
    (typeof perMessageDeflate !== "object" || perMessageDeflate === null)
  ) {
    fail("perMessageDeflate", "a boolean or an object", perMessageDeflate);
  }
}

/**
 * Applies the defaults to the numeric options and checks them.
 *
 * @param options The user's options.
 * @returns Every numeric option.
 * @throws {TypeError} When one is not a number.
 * @throws {RangeError} When one is not a positive (or, for timeouts that
 * may be disabled, non-negative) integer, or `Infinity` where that means no
 * limit.
 */
export function resolveLimits(options: ServeOptions<never>): ResolvedLimits {
  return resolveNumericOptions("serve", { ...NUMERIC_DEFAULTS }, options, {
    mayBeZero: MAY_BE_ZERO,
    timeouts: TIMEOUTS,
    mayBeInfinite: MAY_BE_INFINITE,
  });
}
