/**
 * Shared pieces of the server integration tests: deadlines, clients that
 * turn events into promises (npm:ws, Deno's `WebSocket`, raw TCP), and a
 * builder for hand-made frames.
 *
 * @module
 */
import assert from "node:assert/strict";
import { concat as joinBytes } from "../../src/protocol/_bytes.ts";
import type { SocketOptions, Transport } from "../../src/socket_options.ts";
import { WebSocket as WsClient } from "ws";
import {
  type CloseInfo,
  type ServeOptions,
  Socket,
  type SocketHandler,
} from "../../mod.ts";

export { WsClient };
export { assertBytes } from "../protocol/_helpers.ts";

/** How long any single wait may take before the test fails. */
export const DEADLINE = 5_000;

/** Loopback only, a free port. Spread into every `serve()` call. */
export const LOCAL = {
  hostname: "127.0.0.1",
  port: 0,
} as const satisfies ServeOptions;

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

/**
 * Resolves or rejects like `promise`, or rejects after `ms` milliseconds with
 * a message naming `what`. The timer is always cleared.
 */
export async function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** The echo handler: every message goes back with its type. */
export const echo: SocketHandler = async (socket) => {
  for await (const message of socket) await socket.send(message);
};

/** The `ws://` URL of a server listening on 127.0.0.1. */
export function wsUrl(
  addr: Deno.NetAddr,
  path = "/",
  scheme: "ws" | "wss" = "ws",
): string {
  return `${scheme}://127.0.0.1:${addr.port}${path}`;
}

/** Deterministic bytes of any length: a cheap, non-repeating-looking pattern. */
export function pattern(length: number, seed = 0): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    bytes[i] = (i * 31 + (i >>> 8) * 7 + (i >>> 16) * 13 + seed) & 0xff;
  }
  return bytes;
}

/** A FIFO of values with awaitable takes, each with a deadline. */
export class Queue<T> {
  readonly #items: T[] = [];
  readonly #waiters: ((item: T) => void)[] = [];

  push(item: T): void {
    const waiter = this.#waiters.shift();
    if (waiter) waiter(item);
    else this.#items.push(item);
  }

  get size(): number {
    return this.#items.length;
  }

  take(what: string, ms = DEADLINE): Promise<T> {
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift()!);
    let waiter!: (item: T) => void;
    const promise = new Promise<T>((resolve) => waiter = resolve);
    this.#waiters.push(waiter);
    return withTimeout(promise, ms, what).catch((error) => {
      this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
      throw error;
    });
  }
}

/** A received message as the tests compare it. */
export type Received = string | Uint8Array;

/** Response headers as Node's `http` module gives them (lower-case names). */
export type UpgradeHeaders = Record<string, string | string[] | undefined>;

/** How a client saw its connection close. */
export interface ClientClose {
  code: number;
  reason: string;
  wasClean?: boolean;
}

/**
 * An npm:ws client whose events are collected into promises: messages in a
 * queue, `closed` for the close event. Disposing it terminates the connection
 * if it is still open and waits for the close event.
 */
export class NpmClient implements AsyncDisposable {
  // deno-lint-ignore no-explicit-any
  readonly ws: any;
  readonly closed: Promise<ClientClose>;
  readonly #messages = new Queue<Received>();
  readonly #pongs = new Queue<Uint8Array>();
  #error: Error | null = null;

  private constructor(
    url: string,
    options: Record<string, unknown>,
    protocols?: string[],
  ) {
    const wsOptions = { perMessageDeflate: false, ...options };
    this.ws = protocols === undefined
      ? new WsClient(url, wsOptions)
      : new WsClient(url, protocols, wsOptions);
    this.ws.on("message", (data: Uint8Array, isBinary: boolean) => {
      this.#messages.push(
        isBinary ? new Uint8Array(data) : utf8Decoder.decode(data),
      );
    });
    this.ws.on("pong", (data: Uint8Array) => this.#pongs.push(data));
    this.ws.on("error", (error: Error) => this.#error ??= error);
    this.closed = new Promise((resolve) => {
      this.ws.on("close", (code: number, reason: Uint8Array) => {
        resolve({ code, reason: utf8Decoder.decode(reason) });
      });
    });
  }

  /** Connects and waits for the open event. */
  static connect(
    url: string,
    options: Record<string, unknown> = {},
  ): Promise<NpmClient> {
    return NpmClient.#open(new NpmClient(url, options), url);
  }

  /**
   * Connects offering `protocols` (`Sec-WebSocket-Protocol`) and waits for
   * the open event; {@linkcode NpmClient.prototype.upgradeHeaders} holds the
   * headers of the server's 101 response. npm:ws fails the connection when
   * the server answers an offer with no protocol ("Server sent no
   * subprotocol"), so this rejects then.
   */
  static connectWith(
    url: string,
    protocols: string[],
    options: Record<string, unknown> = {},
  ): Promise<NpmClient> {
    const client = new NpmClient(url, options, protocols);
    client.ws.once("upgrade", (response: { headers: UpgradeHeaders }) => {
      client.upgradeHeaders = response.headers;
    });
    return NpmClient.#open(client, url);
  }

  static async #open(client: NpmClient, url: string): Promise<NpmClient> {
    const opened = new Promise<void>((resolve, reject) => {
      client.ws.once("open", resolve);
      client.ws.once("error", reject);
    });
    try {
      await withTimeout(opened, DEADLINE, `npm:ws to open ${url}`);
      client.port = client.ws._socket.localPort;
    } catch (error) {
      await client[Symbol.asyncDispose]();
      throw error;
    }
    return client;
  }

  /** The headers of the 101 response (set by `connectWith` only). */
  upgradeHeaders: UpgradeHeaders = {};

  /** The client's local port, which is the server socket's `remoteAddr.port`. */
  port = 0;

  /** The first error the client reported, if any. */
  get error(): Error | null {
    return this.#error;
  }

  send(message: Received): void {
    this.ws.send(message, { binary: typeof message !== "string" });
  }

  next(what = "a message on the npm:ws client"): Promise<Received> {
    return this.#messages.take(what);
  }

  nextPong(): Promise<Uint8Array> {
    return this.#pongs.take("a pong on the npm:ws client");
  }

  /** Sends one message and returns the echo. */
  async roundTrip(message: Received): Promise<Received> {
    this.send(message);
    return await this.next("the echo on the npm:ws client");
  }

  /** Starts the closing handshake and waits for the close event. */
  close(code?: number, reason?: string): Promise<ClientClose> {
    this.ws.close(code, reason);
    return withTimeout(this.closed, DEADLINE, "npm:ws close event");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.ws.readyState !== WsClient.CLOSED) this.ws.terminate();
    await withTimeout(this.closed, DEADLINE, "npm:ws to close on dispose");
  }
}

/** Deno's own `WebSocket`, with the same shape as {@linkcode NpmClient}. */
export class DenoClient implements AsyncDisposable {
  readonly ws: WebSocket;
  readonly closed: Promise<Required<ClientClose>>;
  readonly #messages = new Queue<Received>();

  private constructor(url: string, options?: WebSocketOptions) {
    this.ws = new WebSocket(url, options);
    this.ws.binaryType = "arraybuffer";
    this.ws.onmessage = (event) => {
      this.#messages.push(
        typeof event.data === "string"
          ? event.data
          : new Uint8Array(event.data as ArrayBuffer),
      );
    };
    this.closed = new Promise((resolve) => {
      this.ws.addEventListener("close", (event) => {
        resolve({
          code: event.code,
          reason: event.reason,
          wasClean: event.wasClean,
        });
      });
    });
  }

  /** Connects and waits for the open event. */
  static async connect(
    url: string,
    options?: WebSocketOptions,
  ): Promise<DenoClient> {
    const client = new DenoClient(url, options);
    const opened = new Promise<void>((resolve, reject) => {
      client.ws.addEventListener("open", () => resolve(), { once: true });
      client.ws.addEventListener(
        "error",
        (event) =>
          reject(
            new Error(`WebSocket error: ${(event as ErrorEvent).message}`),
          ),
        { once: true },
      );
    });
    try {
      await withTimeout(opened, DEADLINE, `Deno WebSocket to open ${url}`);
    } catch (error) {
      await client[Symbol.asyncDispose]();
      throw error;
    }
    return client;
  }

  send(message: Received): void {
    this.ws.send(message as string | Uint8Array<ArrayBuffer>);
  }

  next(what = "a message on the Deno WebSocket"): Promise<Received> {
    return this.#messages.take(what);
  }

  async roundTrip(message: Received): Promise<Received> {
    this.send(message);
    return await this.next("the echo on the Deno WebSocket");
  }

  close(code?: number, reason?: string): Promise<Required<ClientClose>> {
    this.ws.close(code, reason);
    return withTimeout(this.closed, DEADLINE, "Deno WebSocket close event");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.close();
    await withTimeout(this.closed, DEADLINE, "Deno WebSocket to close");
  }
}

/**
 * Remembers every socket a server accepts, by the peer's port, so a test
 * can look at the server side of the connection it opened.
 */
export class SocketTracker {
  readonly #sockets = new Map<number, PromiseWithResolvers<Socket>>();

  #entry(port: number): PromiseWithResolvers<Socket> {
    let entry = this.#sockets.get(port);
    if (entry === undefined) {
      entry = Promise.withResolvers<Socket>();
      this.#sockets.set(port, entry);
    }
    return entry;
  }

  /** Wraps a handler so that it records its socket first. */
  wrap(handler: SocketHandler): SocketHandler {
    return (socket) => {
      this.#entry(socket.remoteAddr.port).resolve(socket);
      return handler(socket);
    };
  }

  /** The server socket of the client whose local port is `port`. */
  socket(port: number): Promise<Socket> {
    return withTimeout(
      this.#entry(port).promise,
      DEADLINE,
      `the server socket of port ${port}`,
    );
  }

  /** How the server socket of the client on `port` closed. */
  async closed(port: number): Promise<CloseInfo> {
    const socket = await this.socket(port);
    return await withTimeout(
      socket.closed,
      DEADLINE,
      `the server socket of port ${port} to close`,
    );
  }
}

/** An HTTP response read from a raw connection. */
export interface RawResponse {
  status: number;
  statusLine: string;
  headers: Headers;
  body: string;
}

/** A frame read from a raw connection (server frames are unmasked). */
export interface RawFrame {
  fin: boolean;
  rsv: number;
  opcode: number;
  payload: Uint8Array;
}

/**
 * A raw TCP (or TLS) connection with a read buffer, for speaking bytes the
 * clients would never send. Every read has a deadline.
 */
/**
 * A raw TCP client: writes bytes and reads them back through a buffer, every
 * read with a deadline. {@linkcode RawPeer} and the HTTP helpers build on it.
 */
export class RawConnection implements Disposable {
  readonly conn: Deno.Conn;
  protected buffer: Uint8Array = new Uint8Array(0);
  #eof = false;
  #closed = false;
  /** Set when a read failed with a reset rather than a clean EOF. */
  reset = false;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  /** Opens a TCP connection to 127.0.0.1. */
  static async open(addr: Deno.NetAddr): Promise<Deno.Conn> {
    return await withTimeout(
      Deno.connect({ hostname: "127.0.0.1", port: addr.port }),
      DEADLINE,
      "TCP connect",
    );
  }

  /** The local port, which is the server socket's `remoteAddr.port`. */
  get port(): number {
    return (this.conn.localAddr as Deno.NetAddr).port;
  }

  /** Writes all of `data` (a string is sent as UTF-8). */
  async write(data: Uint8Array | string): Promise<void> {
    let bytes = typeof data === "string" ? utf8.encode(data) : data;
    while (bytes.length > 0) {
      const n = await withTimeout(this.conn.write(bytes), DEADLINE, "a write");
      bytes = bytes.subarray(n);
    }
  }

  /** Reads more bytes into the buffer; `false` at EOF (or reset). */
  protected async fill(what: string): Promise<boolean> {
    if (this.#eof) return false;
    const chunk = new Uint8Array(64 * 1024);
    let n: number | null;
    try {
      n = await withTimeout(this.conn.read(chunk), DEADLINE, what);
    } catch (error) {
      if (
        error instanceof Deno.errors.ConnectionReset ||
        error instanceof Deno.errors.BrokenPipe
      ) {
        this.reset = true;
        n = null;
      } else throw error;
    }
    if (n === null) {
      this.#eof = true;
      return false;
    }
    const joined = new Uint8Array(this.buffer.length + n);
    joined.set(this.buffer);
    joined.set(chunk.subarray(0, n), this.buffer.length);
    this.buffer = joined;
    return true;
  }

  /** Reads exactly `length` bytes. */
  protected async readExact(length: number, what: string): Promise<Uint8Array> {
    while (this.buffer.length < length) {
      if (!await this.fill(what)) {
        throw new Error(`Connection ended while waiting for ${what}`);
      }
    }
    const bytes = this.buffer.slice(0, length);
    this.buffer = this.buffer.subarray(length);
    return bytes;
  }

  /** Reads until the server closes the connection; returns what came. */
  async readToEof(): Promise<Uint8Array> {
    while (await this.fill("the server to close the connection"));
    const rest = this.buffer;
    this.buffer = new Uint8Array(0);
    return rest;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** A raw TCP WebSocket peer: HTTP responses and unmasked server frames. */
export class RawPeer extends RawConnection {
  /** Opens a TCP connection to 127.0.0.1. */
  static async connect(addr: Deno.NetAddr): Promise<RawPeer> {
    return new RawPeer(await RawConnection.open(addr));
  }

  /** Reads an HTTP response head and its `Content-Length` body. */
  async readResponse(): Promise<RawResponse> {
    const head = await this.readHead();
    const length = Number(head.headers.get("content-length") ?? 0);
    const body = utf8Decoder.decode(
      await this.readExact(length, "an HTTP response body"),
    );
    return { ...head, body };
  }

  /** Reads an HTTP response head, and no more. */
  async readHead(): Promise<Omit<RawResponse, "body">> {
    let end = -1;
    while ((end = indexOfHeadEnd(this.buffer)) === -1) {
      if (!await this.fill("an HTTP response head")) {
        throw new Error(
          `Connection ended before a full HTTP response head; got ${
            JSON.stringify(utf8Decoder.decode(this.buffer))
          }`,
        );
      }
    }
    const head = utf8Decoder.decode(this.buffer.subarray(0, end));
    this.buffer = this.buffer.subarray(end + 4);
    const [statusLine, ...lines] = head.split("\r\n");
    const headers = new Headers();
    for (const line of lines) {
      const colon = line.indexOf(":");
      headers.append(line.slice(0, colon), line.slice(colon + 1).trim());
    }
    return { status: Number(statusLine.split(" ")[1]), statusLine, headers };
  }

  /** Reads one server frame. */
  async readFrame(): Promise<RawFrame> {
    const [b0, b1] = await this.readExact(2, "a frame header");
    assert.equal(b1 & 0x80, 0, "a server frame must not be masked");
    let length = b1 & 0x7f;
    if (length === 126) {
      const ext = await this.readExact(2, "a 16-bit frame length");
      length = (ext[0] << 8) | ext[1];
    } else if (length === 127) {
      const ext = await this.readExact(8, "a 64-bit frame length");
      length = Number(new DataView(ext.buffer).getBigUint64(0));
    }
    return {
      fin: (b0 & 0x80) !== 0,
      rsv: b0 & 0x70,
      opcode: b0 & 0x0f,
      payload: await this.readExact(length, "a frame payload"),
    };
  }

  /** Reads frames up to and including a close frame; returns its code. */
  async readClose(): Promise<ClientClose & { before: RawFrame[] }> {
    const before: RawFrame[] = [];
    for (;;) {
      const frame = await this.readFrame();
      if (frame.opcode !== 0x8) {
        before.push(frame);
        continue;
      }
      const p = frame.payload;
      return {
        code: p.length >= 2 ? (p[0] << 8) | p[1] : 1005,
        reason: utf8Decoder.decode(p.subarray(2)),
        before,
      };
    }
  }
}

function indexOfHeadEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (
      bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 &&
      bytes[i + 3] === 10
    ) return i;
  }
  return -1;
}

/** The sample key from RFC 6455 §1.3 and its accept value. */
export const SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ==";
export const SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/** The header fields of a valid opening handshake. */
export function upgradeHeaders(
  addr: Deno.NetAddr,
): [string, string][] {
  return [
    ["Host", `127.0.0.1:${addr.port}`],
    ["Upgrade", "websocket"],
    ["Connection", "Upgrade"],
    ["Sec-WebSocket-Key", SAMPLE_KEY],
    ["Sec-WebSocket-Version", "13"],
  ];
}

/** Encodes a request head: request line, fields, blank line. */
export function encodeRequest(
  requestLine: string,
  headers: [string, string][],
): Uint8Array {
  let head = `${requestLine}\r\n`;
  for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
  return utf8.encode(`${head}\r\n`);
}

/** Concatenates byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  return joinBytes(parts);
}

/**
 * Opens a raw connection and completes a valid handshake over it, checking
 * the 101 response. `pipelined` bytes go in the same write as the request.
 */
export async function rawHandshake(
  addr: Deno.NetAddr,
  pipelined: Uint8Array = new Uint8Array(0),
): Promise<RawPeer> {
  const peer = await RawPeer.connect(addr);
  try {
    await peer.write(
      concat(encodeRequest("GET / HTTP/1.1", upgradeHeaders(addr)), pipelined),
    );
    const response = await peer.readResponse();
    assert.equal(response.status, 101, response.statusLine);
    assert.equal(
      response.headers.get("sec-websocket-accept"),
      SAMPLE_ACCEPT,
    );
  } catch (error) {
    peer.close();
    throw error;
  }
  return peer;
}

/** Options of {@linkcode frame}. */
export interface FrameOptions {
  /** @default {true} */
  fin?: boolean;
  /** RSV bits as in the first header byte (0x40 = RSV1). @default {0} */
  rsv?: number;
  /** Whether to mask, as a client must. @default {true} */
  mask?: boolean;
  /** The masking key. @default {[0x37, 0xfa, 0x21, 0x3d]} */
  maskKey?: ArrayLike<number>;
  /** The length to declare in the header, when it should lie. */
  declaredLength?: number;
}

/** Opcodes, for readability. */
export const OP = {
  continuation: 0x0,
  text: 0x1,
  binary: 0x2,
  close: 0x8,
  ping: 0x9,
  pong: 0xa,
} as const;

/**
 * Builds one frame as a client sends it: masked by default, with the
 * shortest length encoding (RFC 6455 §5.2).
 */
export function frame(
  opcode: number,
  payload: Uint8Array | string = new Uint8Array(0),
  options: FrameOptions = {},
): Uint8Array {
  const data = typeof payload === "string" ? utf8.encode(payload) : payload;
  const mask = options.mask ?? true;
  const length = options.declaredLength ?? data.length;
  const extended = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const header = new Uint8Array(2 + extended + (mask ? 4 : 0));
  header[0] = ((options.fin ?? true) ? 0x80 : 0) | (options.rsv ?? 0) |
    opcode;
  header[1] = (mask ? 0x80 : 0) |
    (extended === 0 ? length : extended === 2 ? 126 : 127);
  const view = new DataView(header.buffer);
  if (extended === 2) view.setUint16(2, length);
  if (extended === 8) view.setBigUint64(2, BigInt(length));
  const body = data.slice();
  if (mask) {
    const key = options.maskKey ?? [0x37, 0xfa, 0x21, 0x3d];
    header.set(key, 2 + extended);
    for (let i = 0; i < body.length; i++) body[i] ^= key[i & 3];
  }
  return concat(header, body);
}

/** A close frame payload: the code, big-endian, then the UTF-8 reason. */
export function closePayload(code: number, reason = ""): Uint8Array {
  const reasonBytes = utf8.encode(reason);
  const payload = new Uint8Array(2 + reasonBytes.length);
  payload[0] = code >> 8;
  payload[1] = code & 0xff;
  payload.set(reasonBytes, 2);
  return payload;
}

/** Decodes UTF-8. */
export function decode(bytes: Uint8Array): string {
  return utf8Decoder.decode(bytes);
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `check` every few milliseconds until it returns `true`; rejects after
 * `ms` milliseconds naming `what`. For conditions no event announces.
 */
export async function waitUntil(
  check: () => boolean,
  what: string,
  ms = DEADLINE,
): Promise<void> {
  const end = performance.now() + ms;
  while (!check()) {
    if (performance.now() > end) {
      throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    }
    await delay(5);
  }
}

/** A handshake response npm:ws received instead of a 101. */
export interface NpmRejection {
  status: number;
  headers: UpgradeHeaders;
  body: string;
}

/**
 * Opens an npm:ws client that the server is expected to reject, and reads
 * the rejection through npm:ws's `unexpected-response` event: status,
 * headers and body. Rejects if the connection opens instead.
 */
export async function npmRejection(
  url: string,
  options: Record<string, unknown> = {},
  protocols: string[] = [],
): Promise<NpmRejection> {
  const ws = new WsClient(url, protocols, {
    perMessageDeflate: false,
    ...options,
  });
  const closed = new Promise<void>((resolve) => ws.on("close", resolve));
  // terminate() during the handshake reports an error; that is expected.
  ws.on("error", () => {});
  const response = new Promise<NpmRejection>((resolve, reject) => {
    ws.once("open", () => reject(new Error("the handshake succeeded")));
    ws.once(
      "unexpected-response",
      (_request: unknown, response: {
        statusCode: number;
        headers: UpgradeHeaders;
        on(event: string, listener: (chunk?: Uint8Array) => void): void;
      }) => {
        const chunks: Uint8Array[] = [];
        response.on("data", (chunk) => chunks.push(chunk!));
        response.on("end", () =>
          resolve({
            status: response.statusCode,
            headers: response.headers,
            body: utf8Decoder.decode(concat(...chunks)),
          }));
      },
    );
  });
  try {
    return await withTimeout(response, DEADLINE, `a rejection of ${url}`);
  } finally {
    ws.terminate();
    await withTimeout(closed, DEADLINE, "npm:ws to close after a rejection");
  }
}

/**
 * Sends a valid upgrade request with `extra` header fields on a raw
 * connection and reads the response. The caller closes the peer.
 */
export async function rawUpgrade(
  addr: Deno.NetAddr,
  extra: [string, string][] = [],
  target = "/",
): Promise<{ peer: RawPeer; response: RawResponse }> {
  const peer = await RawPeer.connect(addr);
  try {
    await peer.write(
      encodeRequest(`GET ${target} HTTP/1.1`, [
        ...upgradeHeaders(addr),
        ...extra,
      ]),
    );
    return { peer, response: await peer.readResponse() };
  } catch (error) {
    peer.close();
    throw error;
  }
}

/**
 * A server socket over `readable` and `writable`, as the server would make
 * one after a handshake, without keepalive or timeouts; `options` override.
 * `onClose` is called when the socket closes its transport; `transport`
 * adds the transport's optional methods.
 */
export function socketOver(
  readable: ReadableStream<Uint8Array<ArrayBuffer>>,
  writable: WritableStream<Uint8Array> = new WritableStream(),
  options: Partial<SocketOptions> = {},
  onClose: () => void = () => {},
  transport: Pick<Transport, "setNoDelay"> = {},
): Socket {
  return new Socket({ readable, writable, close: onClose, ...transport }, {
    url: new URL("ws://localhost/"),
    headers: new Headers(),
    remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 },
    protocol: "",
  }, {
    role: "server",
    closeTimeout: 1000,
    sendHighWaterMark: 16 * 1024,
    receiveHighWaterMark: 1024 * 1024,
    maxQueuedMessages: 1024,
    maxBackpressure: 1024 * 1024,
    backpressurePolicy: "wait",
    pingInterval: 0,
    pongTimeout: 0,
    idleTimeout: 0,
    ...options,
  }, undefined);
}

/**
 * A byte stream (read with BYOB) that answers the first read with
 * `incoming`, if any, then nothing until `end()`, when it ends.
 */
export function oneReadThenEnd(incoming: Uint8Array | null): {
  readable: ReadableStream<Uint8Array<ArrayBuffer>>;
  end(): void;
} {
  let end!: () => void;
  const endOfInput = new Promise<void>((resolve) => end = resolve);
  let pending = incoming;
  const readable = new ReadableStream({
    type: "bytes",
    async pull(controller) {
      const request = controller.byobRequest!;
      if (pending !== null) {
        (request.view as Uint8Array).set(pending);
        request.respond(pending.length);
        pending = null;
        return;
      }
      await endOfInput;
      controller.close();
      request.respond(0);
    },
  });
  return { readable, end };
}

/**
 * Whether `promise` settles within `ms`; the timer is always cleared. Used
 * only to detect a stall, never to assert a duration.
 */
export async function settlesWithin(
  promise: Promise<unknown>,
  ms: number,
): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** 1024. */
export const KIB = 1024;
/** The size of a backpressure test's messages. */
export const CHUNK = 64 * KIB;
/** More than loopback TCP buffers hold, so every fill loop is bounded. */
export const MAX_CHUNKS = 2_048;

/** A binary payload carrying its sequence number in the first four bytes. */
export function numbered(seq: number, size = CHUNK): Uint8Array {
  const bytes = pattern(size, seq);
  new DataView(bytes.buffer).setUint32(0, seq);
  return bytes;
}

/** The sequence number of a {@linkcode numbered} payload. */
export function seqOf(payload: Uint8Array): number {
  return new DataView(payload.buffer, payload.byteOffset).getUint32(0);
}
