import { HandshakeError, type ProtocolError } from "../protocol/errors.ts";
import {
  DEFAULT_MAX_FRAGMENTS,
  DEFAULT_MAX_PAYLOAD,
} from "../protocol/connection.ts";
import {
  DEFAULT_MAX_HEAD_SIZE,
  DEFAULT_MAX_HEADERS,
  HttpRequestParser,
} from "../protocol/http_request_parser.ts";
import { validateUpgradeRequest } from "../protocol/upgrade_request.ts";
import {
  computeAcceptKey,
  encodeAcceptResponse,
  encodeRejectionResponse,
} from "../protocol/handshake_response.ts";
import { ConnectionClosedError, Socket } from "../socket.ts";

/** Called once per accepted WebSocket; the socket closes when it returns. */
export type SocketHandler = (socket: Socket) => void | Promise<void>;

/** A structured event for {@linkcode ServeOptions.logger}. */
export type ServerLogEvent =
  | { type: "listen"; addr: Deno.NetAddr }
  | { type: "open"; url: string; remoteAddr: Deno.NetAddr }
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
  | { type: "handler-error"; url: string; error: unknown };

/** Options of {@linkcode serve}. */
export interface ServeOptions {
  /**
   * The TCP port to listen on; `0` picks a free one (see
   * {@linkcode Server.prototype.addr}).
   * @default {8765}
   */
  port?: number;
  /**
   * The address to listen on.
   * @default {"0.0.0.0"}
   */
  hostname?: string;
  /** PEM certificate chain; with `key`, the server speaks `wss://` (TLS). */
  cert?: string;
  /** PEM private key for `cert`. */
  key?: string;
  /** Aborting it shuts the server down like {@linkcode Server.prototype.shutdown}. */
  signal?: AbortSignal;
  /** Called once the server listens, with its address. */
  onListen?: (addr: Deno.NetAddr) => void;
  /** Receives structured events (open, close, errors). No logging by default. */
  logger?: (event: ServerLogEvent) => void;
  /**
   * The largest message accepted, in bytes (1009 beyond it).
   * @default {16777216}
   */
  maxPayload?: number;
  /**
   * The most frames per message (1009 beyond it).
   * @default {4096}
   */
  maxFragments?: number;
  /**
   * The largest handshake request head, in bytes (431 beyond it).
   * @default {16384}
   */
  maxHeadSize?: number;
  /**
   * The most handshake header fields (431 beyond it).
   * @default {100}
   */
  maxHeaders?: number;
  /**
   * Milliseconds a client has to complete its handshake request.
   * @default {10000}
   */
  handshakeTimeout?: number;
  /**
   * Milliseconds `close()` waits for the peer's close frame.
   * @default {5000}
   */
  closeTimeout?: number;
  /**
   * Bytes a socket may hold for its peer before `send()` waits for writes.
   * @default {1048576}
   */
  sendHighWaterMark?: number;
  /**
   * Received bytes queued for a handler before the socket stops reading.
   * @default {1048576}
   */
  receiveHighWaterMark?: number;
}

/** Options of {@linkcode Server.prototype.shutdown}. */
export interface ShutdownOptions {
  /**
   * Milliseconds to wait for closing handshakes before closing the rest.
   * @default {5000}
   */
  timeout?: number;
}

const DEFAULT_PORT = 8765;
const DEFAULT_HOSTNAME = "0.0.0.0";
const DEFAULTS = {
  maxPayload: DEFAULT_MAX_PAYLOAD,
  maxFragments: DEFAULT_MAX_FRAGMENTS,
  maxHeadSize: DEFAULT_MAX_HEAD_SIZE,
  maxHeaders: DEFAULT_MAX_HEADERS,
  handshakeTimeout: 10_000,
  closeTimeout: 5_000,
  sendHighWaterMark: 1024 * 1024,
  receiveHighWaterMark: 1024 * 1024,
} as const;

type Limits = { -readonly [K in keyof typeof DEFAULTS]: number };

/**
 * Starts a WebSocket server on `Deno.listen` (or `Deno.listenTls` with
 * `cert` and `key`) and calls `handler` with every accepted socket.
 *
 * - The handshake is validated strictly (RFC 6455 §4.2.1); a bad request
 *   gets its HTTP status (400, 405, 426, 431) and a plain-text reason.
 * - When `handler` returns, the socket is closed with 1000; when it throws,
 *   with 1011 (the error goes to the logger, never to the peer).
 * - One misbehaving peer never affects the others.
 *
 * @param options Where to listen, limits and timeouts.
 * @param handler Called with each socket.
 * @returns The running server.
 * @throws {RangeError} When an option is out of range.
 * @throws {TypeError} When only one of `cert` and `key` is given.
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
export function serve(options: ServeOptions, handler: SocketHandler): Server {
  return new Server(options, handler);
}

/**
 * A running WebSocket server; create it with {@linkcode serve}.
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
export class Server implements AsyncDisposable {
  /** The address the server listens on (the real port when `port` was 0). */
  readonly addr: Deno.NetAddr;
  /** Resolves once the server has shut down and every connection is closed. */
  readonly finished: Promise<void>;

  readonly #listener: Deno.Listener;
  readonly #handler: SocketHandler;
  readonly #limits: Limits;
  readonly #scheme: "ws" | "wss";
  readonly #logger: (event: ServerLogEvent) => void;
  readonly #handshaking = new Set<Deno.Conn>();
  readonly #sockets = new Set<Socket>();
  readonly #tasks = new Set<Promise<void>>();
  #shutdown: Promise<void> | null = null;

  /**
   * Listens at once. Prefer {@linkcode serve}.
   *
   * @param options Where to listen, limits and timeouts.
   * @param handler Called with each socket.
   */
  constructor(options: ServeOptions, handler: SocketHandler) {
    if (typeof handler !== "function") {
      throw new TypeError(
        `Cannot serve: "handler" must be a function, got ${typeof handler}`,
      );
    }
    this.#limits = { ...DEFAULTS };
    for (const name of Object.keys(DEFAULTS) as (keyof Limits)[]) {
      const value = options[name];
      if (value === undefined) continue;
      if (!Number.isSafeInteger(value) || value <= 0) {
        throw new RangeError(
          `Cannot serve: "${name}" must be a positive integer, got ${value}`,
        );
      }
      this.#limits[name] = value;
    }
    const port = options.port ?? DEFAULT_PORT;
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new RangeError(
        `Cannot serve: "port" must be an integer from 0 to 65535, got ${port}`,
      );
    }
    const hostname = options.hostname ?? DEFAULT_HOSTNAME;
    if ((options.cert === undefined) !== (options.key === undefined)) {
      throw new TypeError(
        'Cannot serve: "cert" and "key" go together for TLS; got only one',
      );
    }
    this.#handler = handler;
    this.#logger = options.logger ?? (() => {});
    this.#scheme = options.cert !== undefined ? "wss" : "ws";
    this.#listener = options.cert !== undefined
      ? Deno.listenTls({
        port,
        hostname,
        cert: options.cert,
        key: options.key!,
      })
      : Deno.listen({ port, hostname });
    this.addr = this.#listener.addr as Deno.NetAddr;
    this.finished = this.#acceptLoop();
    options.signal?.addEventListener("abort", () => this.shutdown(), {
      once: true,
    });
    if (options.signal?.aborted) this.shutdown();
    this.#logger({ type: "listen", addr: this.addr });
    options.onListen?.(this.addr);
  }

  /** The number of open WebSocket connections. */
  get connections(): number {
    return this.#sockets.size;
  }

  /**
   * Stops accepting, sends 1001 (going away) to every open socket, waits for
   * their closing handshakes up to `timeout`, then closes what is left.
   * Calling it again returns the same promise.
   *
   * @param options How long to wait.
   * @returns A promise that resolves once everything is closed.
   */
  shutdown(options: ShutdownOptions = {}): Promise<void> {
    this.#shutdown ??= this.#shutDown(options.timeout ?? 5_000);
    return this.#shutdown;
  }

  /** Shuts down (for `await using`). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  async #shutDown(timeout: number): Promise<void> {
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    for (const conn of this.#handshaking) closeQuietly(conn);
    const closing = [...this.#sockets].map((socket) =>
      socket.close(1001, "server shutting down")
    );
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(closing),
      new Promise((resolve) => timer = setTimeout(resolve, timeout)),
    ]);
    clearTimeout(timer);
    await this.finished;
  }

  async #acceptLoop(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        const task = this.#handle(conn);
        this.#tasks.add(task);
        task.finally(() => this.#tasks.delete(task));
      }
    } catch {
      // The listener was closed.
    }
    while (this.#tasks.size > 0) await Promise.all(this.#tasks);
  }

  async #handle(conn: Deno.Conn): Promise<void> {
    const remoteAddr = conn.remoteAddr as Deno.NetAddr;
    const socket = await this.#handshake(conn, remoteAddr);
    if (socket === null) return;
    this.#sockets.add(socket);
    const url = socket.url.href;
    this.#logger({ type: "open", url, remoteAddr });
    const running = socket.run();
    try {
      await this.#handler(socket);
    } catch (error) {
      if (!(error instanceof ConnectionClosedError)) {
        this.#logger({ type: "handler-error", url, error });
        socket.close(1011).catch(() => {});
      }
    }
    socket.close(1000).catch(() => {});
    await running;
    const info = await socket.closed;
    this.#sockets.delete(socket);
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
      url,
      remoteAddr,
      code: info.code,
      reason: info.reason,
      wasClean: info.wasClean,
    });
  }

  /** Reads and answers the opening handshake; `null` when it failed. */
  async #handshake(
    conn: Deno.Conn,
    remoteAddr: Deno.NetAddr,
  ): Promise<Socket | null> {
    this.#handshaking.add(conn);
    const timer = setTimeout(
      () => closeQuietly(conn),
      this.#limits.handshakeTimeout,
    );
    const parser = new HttpRequestParser({
      maxHeadSize: this.#limits.maxHeadSize,
      maxHeaders: this.#limits.maxHeaders,
    });
    const reader = conn.readable.getReader({ mode: "byob" });
    let buffer = new ArrayBuffer(4096);
    try {
      let head;
      while (head === undefined) {
        const { value, done } = await reader.read(new Uint8Array(buffer));
        if (done || value === undefined) throw new Error("closed");
        buffer = value.buffer;
        head = parser.receive(value);
      }
      const request = validateUpgradeRequest(head, this.#scheme);
      const accept = await computeAcceptKey(request.key);
      reader.releaseLock();
      const writer = conn.writable.getWriter();
      await writer.write(encodeAcceptResponse(accept));
      writer.releaseLock();
      return new Socket(conn, {
        url: request.url,
        headers: request.headers,
        remoteAddr,
        protocol: "",
      }, {
        role: "server",
        maxPayload: this.#limits.maxPayload,
        maxFragments: this.#limits.maxFragments,
        closeTimeout: this.#limits.closeTimeout,
        sendHighWaterMark: this.#limits.sendHighWaterMark,
        receiveHighWaterMark: this.#limits.receiveHighWaterMark,
        head: parser.rest,
      });
    } catch (error) {
      if (error instanceof HandshakeError) {
        this.#logger({
          type: "handshake-rejected",
          remoteAddr,
          status: error.status,
          message: error.message,
        });
        await this.#reject(conn, reader, error);
      }
      closeQuietly(conn);
      return null;
    } finally {
      clearTimeout(timer);
      this.#handshaking.delete(conn);
    }
  }

  /**
   * Answers with the rejection, then closes gracefully: half-close, and
   * discard what the client still sends for a moment, so that unread input
   * does not turn the close into a reset that destroys the response.
   */
  async #reject(
    conn: Deno.Conn,
    reader: ReadableStreamBYOBReader,
    error: HandshakeError,
  ): Promise<void> {
    const lingering = setTimeout(() => closeQuietly(conn), 1000);
    try {
      const writer = conn.writable.getWriter();
      await writer.write(encodeRejectionResponse(error));
      writer.releaseLock();
      await conn.closeWrite();
      let buffer = new ArrayBuffer(4096);
      for (let total = 0; total < 1024 * 1024;) {
        const { value, done } = await reader.read(new Uint8Array(buffer));
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

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}
