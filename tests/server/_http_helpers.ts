/**
 * Shared pieces of the plain-HTTP tests: a tiny server loop that drives
 * `serveHttpRequest` the way the server's connection loop does, over TCP or
 * over in-memory streams, and a raw HTTP/1.1 client that reads responses
 * byte for byte. Self-contained on purpose (no npm imports).
 *
 * @module
 */
import { HandshakeError } from "../../src/protocol/errors.ts";
import { DEADLINE, Queue, RawConnection, withTimeout } from "./_helpers.ts";
export { DEADLINE, Queue, withTimeout };
import { encodeRejectionResponse } from "../../src/protocol/handshake_response.ts";
import { HttpRequestParser } from "../../src/protocol/http_request_parser.ts";
import {
  type FetchHandler,
  type HttpExchangeOptions,
  type HttpExchangeResult,
  serveHttpRequest,
} from "../../src/server/http_exchange.ts";

const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** Options of the test loops: what `serveHttpRequest` gets. */
export type LoopOptions = Partial<Omit<HttpExchangeOptions, "fetch">>;

const LOOPBACK: Deno.NetAddr = {
  transport: "tcp",
  hostname: "127.0.0.1",
  port: 1,
};

/**
 * The connection loop the server will run, over any reader and writer:
 * parse a head (starting from the bytes left over by the last request),
 * answer it with `serveHttpRequest`, repeat while `keepAlive`. A malformed
 * head is answered like the server does. Returns when the connection is
 * done; the caller closes it.
 */
export async function runConnection(
  reader: ReadableStreamBYOBReader,
  writer: WritableStreamDefaultWriter<Uint8Array>,
  options: HttpExchangeOptions,
  onResult: (result: HttpExchangeResult) => void = () => {},
): Promise<"eof" | "close"> {
  let rest: Uint8Array = EMPTY;
  try {
    for (;;) {
      const parser = new HttpRequestParser();
      let head = rest.length > 0 ? parser.receive(rest) : undefined;
      let buffer = new ArrayBuffer(4096);
      while (head === undefined) {
        const { value, done } = await reader.read(new Uint8Array(buffer));
        if (done || value === undefined) return "eof";
        buffer = value.buffer;
        head = parser.receive(value);
      }
      const result = await serveHttpRequest(
        head,
        parser.rest,
        reader,
        writer,
        options,
      );
      onResult(result);
      if (!result.keepAlive) return "close";
      rest = result.rest;
    }
  } catch (error) {
    if (error instanceof HandshakeError) {
      await writer.write(encodeRejectionResponse(error)).catch(() => {});
      return "close";
    }
    // The connection broke under the loop (the test closed it).
    return "eof";
  }
}

/**
 * A TCP server on 127.0.0.1 port 0 that runs {@linkcode runConnection} for
 * each connection, with a lingering close (half-close, then read to EOF) so
 * that an early answer is not destroyed by a reset. Disposing it closes the
 * listener and every connection and waits for their loops.
 */
export class HttpLoop implements AsyncDisposable {
  readonly addr: Deno.NetAddr;
  /** What `onError` received. */
  readonly errors: unknown[] = [];
  /** Every `serveHttpRequest` result, in order. */
  readonly results = new Queue<HttpExchangeResult>();
  /** Connections accepted so far. */
  connections = 0;
  readonly #listener: Deno.Listener;
  readonly #conns = new Set<Deno.Conn>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #accepting: Promise<void>;

  constructor(fetch: FetchHandler, options: LoopOptions = {}) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.addr = this.#listener.addr as Deno.NetAddr;
    this.#accepting = this.#accept(fetch, options);
  }

  /** The `http://` URL of `path` on this server. */
  url(path = "/"): string {
    return `http://127.0.0.1:${this.addr.port}${path}`;
  }

  async #accept(fetch: FetchHandler, options: LoopOptions): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        this.connections++;
        this.#conns.add(conn);
        const task = this.#serve(conn, {
          fetch,
          scheme: "http",
          remoteAddr: conn.remoteAddr as Deno.NetAddr,
          maxBodySize: 1024 * 1024,
          onError: (error) => this.errors.push(error),
          ...options,
        });
        this.#tasks.add(task);
        task.finally(() => this.#tasks.delete(task));
      }
    } catch {
      // The listener was closed.
    }
  }

  async #serve(conn: Deno.Conn, options: HttpExchangeOptions): Promise<void> {
    const reader = conn.readable.getReader({ mode: "byob" });
    const writer = conn.writable.getWriter();
    try {
      const end = await runConnection(
        reader,
        writer,
        options,
        (result) => this.results.push(result),
      );
      if (end === "close") await linger(conn, reader);
    } finally {
      this.#conns.delete(conn);
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    await this.#accepting;
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
    await withTimeout(
      Promise.all(this.#tasks),
      DEADLINE,
      "the connection loops to end",
    );
  }
}

/** Half-closes, then discards input until the client closes (or 2 s). */
async function linger(
  conn: Deno.Conn,
  reader: ReadableStreamBYOBReader,
): Promise<void> {
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }, 2_000);
  try {
    await conn.closeWrite();
    let buffer = new ArrayBuffer(4096);
    for (;;) {
      const { value, done } = await reader.read(new Uint8Array(buffer));
      if (done || value === undefined) break;
      buffer = value.buffer;
    }
  } catch {
    // Gone already.
  } finally {
    clearTimeout(timer);
  }
}

/** An in-memory connection run: what the loop wrote, and each result. */
export interface MemoryRun {
  /** Every write, as the loop made it. */
  writes: Uint8Array[];
  /** All writes together, as text (Latin-1 is enough for the tests). */
  output: string;
  results: HttpExchangeResult[];
  errors: unknown[];
}

/**
 * Runs {@linkcode runConnection} over an in-memory connection whose client
 * sends `input` (each element one read) and then ends.
 */
export async function runInMemory(
  input: (Uint8Array | string)[],
  fetch: FetchHandler,
  options: LoopOptions = {},
): Promise<MemoryRun> {
  const chunks = input.map((c) => typeof c === "string" ? utf8.encode(c) : c);
  const wire = new ReadableStream({
    type: "bytes",
    pull(controller) {
      const chunk = chunks.shift();
      if (chunk === undefined) {
        controller.close();
        controller.byobRequest?.respond(0);
        return;
      }
      controller.enqueue(chunk.slice());
    },
  });
  const writes: Uint8Array[] = [];
  const writer = new WritableStream<Uint8Array>({
    write: (chunk) => void writes.push(chunk.slice()),
  }).getWriter();
  const results: HttpExchangeResult[] = [];
  const errors: unknown[] = [];
  await withTimeout(
    runConnection(wire.getReader({ mode: "byob" }), writer, {
      fetch,
      scheme: "http",
      remoteAddr: LOOPBACK,
      maxBodySize: 1024 * 1024,
      onError: (error) => errors.push(error),
      ...options,
    }, (result) => results.push(result)),
    DEADLINE,
    "the in-memory connection to finish",
  );
  let output = "";
  for (const write of writes) output += latin1(write);
  return { writes, output, results, errors };
}

/** A response as read off the wire. */
export interface RawResponse {
  status: number;
  statusLine: string;
  headers: Headers;
  body: Uint8Array;
  /** The body as UTF-8 text. */
  text: string;
}

/**
 * A raw TCP client for HTTP/1.1: writes bytes, reads responses with their
 * framing (Content-Length, chunked, or to EOF). Every read has a deadline.
 */
export class RawHttp extends RawConnection {
  static async connect(addr: Deno.NetAddr): Promise<RawHttp> {
    return new RawHttp(await RawConnection.open(addr));
  }

  async #line(what: string): Promise<string> {
    let end: number;
    while ((end = indexOf(this.buffer, [13, 10])) === -1) {
      if (!await this.fill(what)) {
        throw new Error(`Connection ended while waiting for ${what}`);
      }
    }
    const line = latin1(this.buffer.subarray(0, end));
    this.buffer = this.buffer.subarray(end + 2);
    return line;
  }

  /** Reads a response head only. */
  async readHead(): Promise<Omit<RawResponse, "body" | "text">> {
    const statusLine = await this.#line("a status line");
    const headers = new Headers();
    for (;;) {
      const line = await this.#line("a header line");
      if (line === "") break;
      const colon = line.indexOf(":");
      headers.append(line.slice(0, colon), line.slice(colon + 1).trim());
    }
    return { status: Number(statusLine.split(" ")[1]), statusLine, headers };
  }

  /**
   * Reads one response and its body as its framing says (RFC 9112 §6.3);
   * `head: true` for the answer to a HEAD request (no body).
   */
  async readResponse(options: { head?: boolean } = {}): Promise<RawResponse> {
    const response = await this.readHead();
    const { status, headers } = response;
    let body: Uint8Array = EMPTY;
    if (
      options.head || status === 204 || status === 304 || status < 200
    ) {
      body = EMPTY;
    } else if (headers.get("transfer-encoding") === "chunked") {
      const parts: Uint8Array[] = [];
      for (;;) {
        const size = parseInt(await this.#line("a chunk size"), 16);
        if (size === 0) break;
        parts.push(await this.readExact(size, "chunk data"));
        await this.readExact(2, "a chunk's CRLF");
      }
      while (await this.#line("a trailer line") !== "");
      body = concat(...parts);
    } else if (headers.has("content-length")) {
      body = await this.readExact(
        Number(headers.get("content-length")),
        "a response body",
      );
    } else {
      body = await this.readToEof();
    }
    return { ...response, body, text: utf8Decoder.decode(body) };
  }
}

/** Encodes a request: request line, fields, blank line, then `body`. */
export function request(
  requestLine: string,
  headers: [string, string][] = [["Host", "example.com"]],
  body: Uint8Array | string = "",
): Uint8Array {
  let head = `${requestLine}\r\n`;
  for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
  return concat(
    utf8.encode(`${head}\r\n`),
    typeof body === "string" ? utf8.encode(body) : body,
  );
}

/** Deterministic bytes of any length. */
export function pattern(length: number, seed = 0): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    bytes[i] = (i * 31 + (i >>> 8) * 7 + seed) & 0xff;
  }
  return bytes;
}

/** Concatenates byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const joined = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

/** Decodes bytes one char per byte. */
export function latin1(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    text += String.fromCharCode(...bytes.subarray(i, i + 4096));
  }
  return text;
}

function indexOf(bytes: Uint8Array, needle: number[]): number {
  outer: for (let i = 0; i + needle.length <= bytes.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (bytes[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}
