import { describe, shown } from "../protocol/_describe.ts";
import {
  ClientHandshake,
  ClientHandshakeError,
} from "../protocol/client_handshake.ts";
import type { Socket } from "../socket.ts";
import { parseHttpDate } from "../server/_http_date.ts";
import { connect, type ConnectOptions } from "./connect.ts";
import {
  checkConnectOptions,
  checkOptionsObject,
  CONNECT_OPTIONS,
} from "./_connect_options.ts";

/**
 * Where {@linkcode reconnecting} connects: a URL, or a function called
 * before each attempt for one.
 *
 * @example A fresh token in the URL for each attempt
 * ```ts
 * import { reconnecting, type ReconnectingUrl, serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const tokens: (string | null)[] = [];
 * await using server = serve({ port: 0, hostname: "127.0.0.1" }, (socket) => {
 *   tokens.push(socket.url.searchParams.get("token"));
 * });
 * let issued = 0;
 * const url: ReconnectingUrl = () => `ws://127.0.0.1:${server.addr.port}/?token=t${++issued}`;
 * for await (const socket of reconnecting(url, { initialDelay: 10 })) {
 *   await socket.closed; // the server closes at once
 *   if (tokens.length === 2) break;
 * }
 * assert.deepEqual(tokens, ["t1", "t2"]);
 * ```
 */
export type ReconnectingUrl =
  | string
  | URL
  | (() => string | URL | Promise<string | URL>);

/**
 * Options of {@linkcode reconnecting}; the rest go to {@linkcode connect}.
 *
 * @example Giving up after two retries
 * ```ts
 * import { reconnecting, type ReconnectingOptions, serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const delays: number[] = [];
 * const options: ReconnectingOptions = {
 *   initialDelay: 10,
 *   maxDelay: 100,
 *   maxRetries: 2,
 *   onRetry: (_error, delay) => void delays.push(delay),
 * };
 * await using server = serve({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   onUpgrade: () => new Response(null, { status: 503 }),
 * }, () => {});
 * await assert.rejects(async () => {
 *   for await (const _socket of reconnecting(`ws://127.0.0.1:${server.addr.port}`, options)) break;
 * }, { status: 503 });
 * assert.equal(delays.length, 2);
 * ```
 */
export interface ReconnectingOptions extends Omit<ConnectOptions, "headers"> {
  /**
   * Extra handshake request headers, as for {@linkcode connect}; or a
   * function called before each attempt for them, so that a token that
   * expires can be fetched anew: then a 401 rejection is retried once (after
   * the usual delay) with the headers it returns next, and a second 401 in a
   * row ends the iteration. A function that throws ends the iteration
   * with its error; aborting `signal` while it runs ends the iteration.
   */
  headers?: HeadersInit | (() => HeadersInit | Promise<HeadersInit>);
  /**
   * The base of the backoff, in milliseconds: reconnecting after a
   * connection that lasted waits `initialDelay` times the jitter (0.5-1×),
   * and each consecutive failure doubles it, so the retry after a first
   * failed attempt waits 1-2× `initialDelay` (with 0, reconnecting after a
   * connection that lasted is at once, while failures and short connections
   * back off from 50 ms).
   * @default {500}
   */
  initialDelay?: number;
  /**
   * The longest delay between two attempts, in milliseconds.
   * @default {30000}
   */
  maxDelay?: number;
  /**
   * Consecutive failed attempts tolerated; one more failure ends the
   * iteration by throwing its error.
   * @default {Infinity}
   */
  maxRetries?: number;
  /**
   * Called after each failed attempt that will be retried, with its error
   * and the milliseconds until the next attempt: failures are otherwise
   * silent until `maxRetries` runs out. It must not throw.
   */
  onRetry?: (error: unknown, delay: number) => void;
  /**
   * A source of numbers in [0, 1) for the jitter. Inject one only in tests.
   * @default {Math.random}
   */
  random?: () => number;
}

/**
 * Connects, and connects again whenever the connection ends: an async
 * iterable of open sockets, one per connection.
 *
 * - The first attempt starts at once. Each later attempt waits
 *   `min(maxDelay, initialDelay * 2 ** failures)` milliseconds, scaled by a
 *   random factor in [0.5, 1) so that clients dropped together do not
 *   return together; `failures` counts the failed attempts, and the
 *   connections that ended within 5 seconds, since the last connection
 *   that lasted longer (a server that accepts and closes at once is not
 *   hammered). A 429 or 503 rejection with a `Retry-After` field
 *   (seconds or an HTTP date) waits at least that long, up to `maxDelay`.
 * - It reconnects after every close, clean or not. When the loop asks for
 *   the next socket while the previous one is still open, that one is
 *   closed with 1000 first.
 * - A failed attempt (a network error, a timeout, a reset, a 5xx, 408 or
 *   429 answer) is retried, and reported to `onRetry`. What retrying cannot
 *   fix ends the iteration by throwing: caller mistakes (`TypeError`,
 *   `RangeError`), a missing permission (`Deno.errors.NotCapable`), an
 *   answer with another status (a 2xx page, a 3xx redirect, a 4xx; but a
 *   first 401 when `headers` or the URL is a function), a server that is
 *   not a WebSocket server (a malformed response, such as bytes that are
 *   not HTTP before the connection ends, TLS from a `ws:` URL's server; a
 *   bad `Sec-WebSocket-Accept`, an unrequested subprotocol or extension),
 *   and TLS that cannot work (`Deno.errors.InvalidData` for a certificate
 *   refused, or a `wss:` URL's server without TLS; a fatal TLS alert from
 *   the server is retried). After `maxRetries` consecutive failures the
 *   last error is thrown.
 * - Aborting `signal` ends the iteration: a pending delay or attempt stops,
 *   and an open socket is closed with 1000 (when the loop has already asked
 *   for the next socket and the previous one is still closing, the
 *   iteration ends at once, without waiting for the server's answer).
 *   Breaking out of the loop stops reconnecting and leaves the current
 *   socket to you.
 * - Iterate each socket (take its messages) rather than only awaiting
 *   `closed`: a close frame from the server behind messages nobody takes is
 *   answered after a second, so the reconnection starts that much later.
 * - Nothing carries over from one connection to the next: sending on a
 *   socket that has closed rejects with `ConnectionClosedError` (nothing is
 *   queued for the next connection), and whatever a new connection needs
 *   (a login, subscriptions, messages to resend) is up to the loop body.
 *
 * @param url A `ws:` or `wss:` URL (or `http:`, `https:` for them); or a
 * function called before each attempt for it, so that a token carried in
 * the query string (as browsers must) can be fetched anew: it is treated as
 * a `headers` function is (a first 401 is retried with what it returns
 * next; a function that throws, or returns a URL that is not valid, ends
 * the iteration with its error).
 * @param options Backoff settings and the options of {@linkcode connect}.
 * @returns An async iterable of open sockets.
 * @throws {Error} The error of the last attempt, when it is not retried.
 *
 * @example Reconnecting after the server drops the connection
 * ```ts
 * import { reconnecting, serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * let accepted = 0;
 * await using server = serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
 *   accepted++;
 *   await socket.close(4000, "bye");
 * });
 * let connections = 0;
 * for await (const socket of reconnecting(`ws://127.0.0.1:${server.addr.port}`, { initialDelay: 10 })) {
 *   const { code } = await socket.closed;
 *   assert.equal(code, 4000);
 *   if (++connections === 2) break;
 * }
 * assert.equal(accepted, 2);
 * ```
 */
export function reconnecting(
  url: ReconnectingUrl,
  options: ReconnectingOptions = {},
): AsyncGenerator<Socket, void, undefined> {
  // Checked now, not at the first next() of the generator.
  if (
    typeof url !== "string" && !(url instanceof URL) &&
    typeof url !== "function"
  ) {
    throw new TypeError(
      `Cannot reconnect: the URL must be a string, a URL or a function returning one, got ${
        describe(url)
      }`,
    );
  }
  checkOptionsObject("reconnect", RECONNECTING_OPTIONS, options);
  const initialDelay = nonNegative("initialDelay", options.initialDelay, 500);
  const maxDelay = nonNegative("maxDelay", options.maxDelay, 30_000);
  const maxRetries = nonNegative("maxRetries", options.maxRetries, Infinity);
  if (maxRetries !== Infinity && !Number.isInteger(maxRetries)) {
    throw new RangeError(
      `Cannot reconnect: "maxRetries" must be a whole number (or Infinity), got ${
        shown(maxRetries)
      }`,
    );
  }
  for (const name of ["random", "onRetry"] as const) {
    if (options[name] !== undefined && typeof options[name] !== "function") {
      throw new TypeError(
        `Cannot reconnect: "${name}" must be a function, got ${
          describe(options[name])
        }`,
      );
    }
  }
  // What connect() would refuse on every attempt is refused now: the URL
  // (unless a function gives it) and the options (but headers a function
  // gives).
  const { headers, ...rest } = options;
  try {
    ClientHandshake.create(
      typeof url === "function" ? "ws://localhost/" : url,
      {
        headers: typeof headers === "function" ? undefined : headers,
        protocols: options.protocols,
        maxHeadSize: options.maxHeadSize,
        maxHeaders: options.maxHeaders,
      },
    );
  } catch (error) {
    (error as Error).message = (error as Error).message.replace(
      /^Cannot connect:/,
      "Cannot reconnect:",
    );
    throw error;
  }
  checkConnectOptions("reconnect", connectOptionsOf(rest));
  return reconnect(url, options, initialDelay, maxDelay, maxRetries);
}

/** The options of `reconnecting()` that it passes on to `connect()`. */
function connectOptionsOf(options: object): ConnectOptions {
  return Object.fromEntries(
    Object.entries(options).filter(([name]) => CONNECT_OPTIONS.has(name)),
  );
}

async function* reconnect(
  url: ReconnectingUrl,
  options: ReconnectingOptions,
  initialDelay: number,
  maxDelay: number,
  maxRetries: number,
): AsyncGenerator<Socket, void, undefined> {
  const random = options.random ?? Math.random;
  const signal = options.signal;
  const connectOptions = connectOptionsOf(options);
  // Failed attempts in a row (for maxRetries); the backoff also counts
  // connections that ended soon after opening.
  let failures = 0;
  let backoff = 0;
  // What the last rejection's Retry-After asked for, in milliseconds.
  let serverDelay = 0;
  // A 401 is retried once with headers fetched anew, when they can be.
  const canRefresh = typeof options.headers === "function" ||
    typeof url === "function";
  let lastUnauthorized = false;
  // The error of the attempt that just failed, for onRetry.
  let failed: unknown = NONE;
  for (let attempt = 0; !signal?.aborted; attempt++) {
    if (attempt > 0) {
      // With initialDelay 0, only a reconnection after a connection that
      // lasted is at once.
      const base = initialDelay > 0 || backoff === 0
        ? initialDelay
        : ZERO_DELAY_BACKOFF;
      const wait = Math.min(maxDelay, base * 2 ** Math.min(backoff, 40)) *
        (0.5 + random() / 2);
      const delay = Math.min(Math.max(wait, serverDelay), maxDelay);
      if (failed !== NONE) {
        options.onRetry?.(failed, delay);
        failed = NONE;
      }
      if (!await sleep(Math.min(delay, MAX_TIMER), signal)) return;
    }
    let headers: HeadersInit | undefined;
    if (typeof options.headers === "function") {
      const fetched = await untilAborted(options.headers(), signal);
      if (fetched === ABORTED) return;
      headers = fetched;
    } else headers = options.headers;
    let target: string | URL;
    if (typeof url === "function") {
      const fetched = await untilAborted(url(), signal);
      if (fetched === ABORTED) return;
      target = fetched;
    } else target = url;
    let socket: Socket;
    try {
      socket = await connect(target, { ...connectOptions, headers });
    } catch (error) {
      if (signal?.aborted) return;
      const unauthorized = isStatus(error, 401);
      const refresh = unauthorized && canRefresh && !lastUnauthorized;
      if (!(refresh || retryable(error)) || failures >= maxRetries) {
        throw error;
      }
      lastUnauthorized = unauthorized;
      failed = error;
      failures++;
      backoff++;
      serverDelay = retryAfter(error);
      continue;
    }
    failures = 0;
    serverDelay = 0;
    lastUnauthorized = false;
    // How long the connection lasted, however long the loop took over it.
    const opened = performance.now();
    let ended = Infinity;
    socket.closed.then(() => ended = performance.now());
    const onAbort = () => socket.close().catch(() => {});
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      yield socket;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
    // The loop asked for the next socket: this one is done. Aborted in the
    // loop's body, its close (begun then) is waited for; an abort while
    // waiting ends the iteration at once, and the close goes on by itself
    // (within closeTimeout), nothing queued before it dropped.
    socket.close().catch(() => {});
    if (signal?.aborted) await socket.closed;
    else if (await untilAborted(socket.closed, signal) === ABORTED) return;
    backoff = ended - opened < STABLE ? backoff + 1 : 0;
  }
}

// A connection that lasts this long (ms) resets the backoff.
const STABLE = 5000;
// What the backoff doubles from when initialDelay is 0 (ms).
const ZERO_DELAY_BACKOFF = 50;
// setTimeout's limit (about 24.8 days).
const MAX_TIMER = 2 ** 31 - 1;

function retryable(error: unknown): boolean {
  if (
    error instanceof TypeError || error instanceof RangeError ||
    error instanceof Deno.errors.NotCapable || tlsRefusedForGood(error)
  ) return false;
  if (error instanceof ClientHandshakeError) {
    if (error.code === "CONNECTION_CLOSED") return true;
    if (error.code !== "UNEXPECTED_STATUS") return false;
    const { status } = error;
    return status >= 500 || status === 408 || status === 429;
  }
  return true;
}

// TLS refused for good: a certificate the client does not accept, or a
// server that does not speak TLS. A fatal alert from the server
// (internal_error from an overloaded terminator, say) may pass next time.
const TLS_REFUSED = /invalid peer certificate|InvalidContentType/;

function tlsRefusedForGood(error: unknown): boolean {
  return error instanceof Deno.errors.InvalidData &&
    TLS_REFUSED.test(error.message);
}

function isStatus(error: unknown, status: number): boolean {
  return error instanceof ClientHandshakeError &&
    error.code === "UNEXPECTED_STATUS" && error.status === status;
}

/** A 429 or 503 rejection's `Retry-After` (RFC 9110 §10.2.3), in ms; else 0. */
function retryAfter(error: unknown): number {
  if (
    !(error instanceof ClientHandshakeError) ||
    (error.status !== 429 && error.status !== 503)
  ) return 0;
  const value = error.headers.get("retry-after")?.trim() ?? "";
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const date = parseHttpDate(value);
  return date === null ? 0 : Math.max(0, date - Date.now());
}

const ABORTED = Symbol("aborted");
const NONE = Symbol("none");

/** `value`, or {@linkcode ABORTED} as soon as `signal` aborts. */
function untilAborted<T>(
  value: T | Promise<T>,
  signal?: AbortSignal,
): Promise<T | typeof ABORTED> {
  if (signal === undefined) return Promise.resolve(value);
  if (signal.aborted) return Promise.resolve(ABORTED);
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(ABORTED);
    signal.addEventListener("abort", onAbort, { once: true });
    Promise.resolve(value).then(resolve, reject).finally(() =>
      signal.removeEventListener("abort", onAbort)
    );
  });
}

function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  // Aborted already (by onRetry, say): its event will not come again.
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function nonNegative(
  name: string,
  value: number | undefined,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || Number.isNaN(value) || value < 0) {
    throw new (typeof value === "number" ? RangeError : TypeError)(
      `Cannot reconnect: "${name}" must be a non-negative number, got ${
        shown(value)
      }`,
    );
  }
  return value;
}

const RECONNECTING_OPTIONS: ReadonlySet<string> = new Set([
  ...CONNECT_OPTIONS,
  "initialDelay",
  "maxDelay",
  "maxRetries",
  "random",
  "onRetry",
]);
