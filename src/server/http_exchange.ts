import { shown } from "../protocol/_describe.ts";
import type { HttpRequestHead } from "../protocol/http_request_parser.ts";
import { headersOf, trimOws } from "../protocol/_headers.ts";
import { HttpRequestError } from "./http_request_error.ts";
import { type BodyFraming, RequestBody } from "./_request_body.ts";
import {
  encodeErrorResponse,
  write,
  writeResponse,
} from "./_response_writer.ts";

/**
 * Answers a plain HTTP request, like the handler of `Deno.serve`.
 *
 * @param request The request; its body streams from the connection.
 * @param info Where the request came from.
 * @returns The response, or a promise of it.
 *
 * @example A health check next to the WebSockets
 * ```ts
 * import { type FetchHandler, serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const health: FetchHandler = (request, { remoteAddr }) =>
 *   new URL(request.url).pathname === "/health"
 *     ? new Response(`ok, ${remoteAddr.hostname}`)
 *     : new Response("not found", { status: 404 });
 * await using server = serve({ port: 0, hostname: "127.0.0.1", fetch: health }, () => {});
 * using client = Deno.createHttpClient({});
 * const response = await fetch(`http://127.0.0.1:${server.addr.port}/health`, { client });
 * assert.equal(await response.text(), "ok, 127.0.0.1");
 * ```
 */
export type FetchHandler = (
  request: Request,
  info: { remoteAddr: Deno.NetAddr },
) => Response | Promise<Response>;

/**
 * Options of {@linkcode serveHttpRequest}.
 *
 * @example Answering with Connection: close while shutting down
 * ```ts
 * import { type HttpExchangeOptions, HttpRequestParser, serveHttpRequest } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const statuses: number[] = [];
 * const options: HttpExchangeOptions = {
 *   fetch: () => new Response(null, { status: 204 }),
 *   scheme: "http",
 *   remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 50000 },
 *   maxBodySize: 1024,
 *   keepAlive: () => false, // whatever the client asks
 *   onResponse: (status) => void statuses.push(status),
 * };
 * const parser = new HttpRequestParser();
 * const head = parser.receive(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"))!;
 * const reader = new ReadableStream({ type: "bytes" }).getReader({ mode: "byob" });
 * const writer = new WritableStream<Uint8Array>().getWriter();
 * const result = await serveHttpRequest(head, parser.rest, reader, writer, options);
 * assert.equal(result.keepAlive, false);
 * assert.deepEqual(statuses, [204]);
 * ```
 */
export interface HttpExchangeOptions {
  /** Answers the request. */
  fetch: FetchHandler;
  /** The scheme of `request.url`, whose authority is the `Host` header. */
  scheme: "http" | "https";
  /** The client's address, passed on to {@linkcode FetchHandler}. */
  remoteAddr: Deno.NetAddr;
  /**
   * The largest request body accepted, in bytes; a larger one is answered
   * with 413 and the connection closes.
   */
  maxBodySize: number;
  /**
   * How long the connection waits for the next request, in milliseconds:
   * said to the client in `Keep-Alive: timeout=<seconds>` (an HTTP client
   * that reuses an idle connection as it is closed loses its request).
   */
  keepAliveTimeout?: number;
  /**
   * Receives what the handler threw (the client then gets a 500 with an
   * empty body), a non-`Response` it returned, and failures of its response
   * body. No reporting by default.
   */
  onError?: (error: unknown) => void;
  /**
   * Abandons the exchange (the server's request timeout, shutdown):
   * `request.signal` is aborted and a response body still streaming is
   * canceled.
   */
  signal?: AbortSignal;
  /**
   * Asked when the response head is written: `false` answers with
   * `Connection: close` whatever the client asked for (a server shutting
   * down, say). Keep-alive as the client asks by default.
   */
  keepAlive?: () => boolean;
  /**
   * Called once the response head is written, if the request's body has
   * been read by then: what is left is the response body, which may stream
   * for as long as it takes (server-sent events).
   */
  onResponseStarted?: () => void;
  /**
   * Called once per request with the status of the response written for it,
   * once the connection took its head: the handler's status, the 500 that
   * stands in for a handler that failed, or a status of this function's own
   * (400, 413, 417, 501, 505). Not called for `100 Continue`, nor for a
   * request left without an answer (the client gone first, the exchange
   * abandoned).
   */
  onResponse?: (status: number) => void;
  /**
   * Called with `true` as each write of the response starts and `false`
   * once it is taken (see `WriteResponseOptions.onWrite`).
   */
  onResponseWrite?: (pending: boolean) => void;
}

/**
 * What {@linkcode serveHttpRequest} leaves for the connection's next request.
 *
 * @example Two pipelined requests: the second is left over
 * ```ts
 * import { type HttpExchangeResult, HttpRequestParser, serveHttpRequest } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const second = "GET /b HTTP/1.1\r\nHost: example.com\r\n\r\n";
 * const parser = new HttpRequestParser();
 * const head = parser.receive(new TextEncoder().encode(`GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n${second}`))!;
 * const reader = new ReadableStream({ type: "bytes" }).getReader({ mode: "byob" });
 * const writer = new WritableStream<Uint8Array>().getWriter();
 * const result: HttpExchangeResult = await serveHttpRequest(head, parser.rest, reader, writer, {
 *   fetch: () => new Response("ok"),
 *   scheme: "http",
 *   remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 50000 },
 *   maxBodySize: 1024,
 * });
 * assert.equal(result.keepAlive, true); // parse the next request from `rest`
 * assert.equal(new TextDecoder().decode(result.rest), second);
 * ```
 */
export interface HttpExchangeResult {
  /** Whether the connection may carry another request; if not, close it. */
  keepAlive: boolean;
  /** Bytes read past this request: the start of the next, pipelined one. */
  rest: Uint8Array;
}

const EMPTY = new Uint8Array(0);
const CONTINUE = new TextEncoder().encode("HTTP/1.1 100 Continue\r\n\r\n");
const CLOSED: HttpExchangeResult = { keepAlive: false, rest: EMPTY };
// Host = uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2.2).
// Percent-encoding is refused: the URL would decode it ("ex%61mple.com" is
// example.com), and the Host header and request.url would disagree.
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=]+)(?::\d*)?$/;
// request-target is visible ASCII (RFC 9112 §3.2).
const TARGET = /^[\x21\x22\x24-\x7e]+$/; // visible ASCII but "#": no fragment
// "http://" or "https://" and the authority, which ends at the path, the
// query or the end (RFC 3986 §3.2).
const ABSOLUTE_FORM = /^https?:\/\/([^/?]*)/i;
const DIGITS = /^\d+$/;
const NORMALIZED_METHODS = new Set([
  "DELETE",
  "GET",
  "HEAD",
  "OPTIONS",
  "POST",
  "PUT",
]);
// The Fetch standard forbids these methods in a `Request`.
const UNSUPPORTED_METHODS = new Set(["CONNECT", "TRACE", "TRACK"]);

/**
 * Answers one plain (non-WebSocket) HTTP/1.x request whose head is already
 * parsed: builds a Web `Request`, calls `options.fetch`, writes the
 * `Response`, and tells whether the connection can carry another request.
 *
 * - Request: `request.url` is `scheme://Host` plus the target (or the
 *   absolute-form target itself). A `Content-Length` or chunked body
 *   (RFC 9112 §6-7) streams from the connection as the handler reads it;
 *   chunk extensions and trailers are dropped. `GET` and `HEAD` get no body
 *   (one sent anyway is read and discarded). `Expect: 100-continue` is
 *   answered before the handler runs.
 * - Rejections, each answered with a plain-text reason and
 *   `Connection: close`: 400 for a missing or repeated `Host`, a malformed
 *   target, both `Content-Length` and `Transfer-Encoding`, an invalid
 *   length or broken chunked framing; 413 for a body over `maxBodySize`;
 *   417 for an unknown expectation; 501 for `CONNECT`, `TRACE`, `OPTIONS *`
 *   and transfer codings other than chunked; 505 for HTTP/2 and up.
 * - Response: status line with its reason phrase, the handler's headers, a
 *   `Date`. A null body gets `Content-Length: 0`; the handler's own
 *   `Content-Length` is honoured and the body written as is; a body that is
 *   all available at once (an in-memory `Response`) gets a
 *   `Content-Length`; anything else is streamed with the chunked coding (to
 *   HTTP/1.0 clients: delimited by closing). `HEAD`, 204 and 304 answers
 *   carry no body bytes. Small responses go out in one write.
 * - Keep-alive (RFC 9112 §9.3): HTTP/1.1 unless either side says
 *   `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`. A
 *   body the handler left unread is drained (it is at most `maxBodySize`)
 *   before the next request; one that cannot be drained closes the
 *   connection. The request body is readable until the response is written.
 * - Handler failures: a throw, or a value that is not a `Response`, is
 *   passed to `onError` and answered with a 500 with an empty body; the
 *   connection stays usable. A body stream that fails mid-response cuts
 *   the response short and closes.
 * - A client that disconnects mid-body or mid-response never makes this
 *   reject: it resolves with `keepAlive: false`, cancels the response body
 *   and aborts `request.signal`. A client that leaves while the body waits
 *   for data is noticed at the next write (a closed read side may be a
 *   half-close, so it is not taken for one); `options.signal` (the
 *   server's request timeout, shutdown) abandons such a response.
 * - It never closes the connection or releases `reader` and `writer`; the
 *   caller does, after a lingering half-close when `keepAlive` is false.
 *
 * @param head The parsed request head.
 * @param rest The bytes already read after the head.
 * @param reader The connection's BYOB reader, for the rest of the body.
 * @param writer The connection's writer.
 * @param options The handler and the limits.
 * @returns Whether to keep the connection, and the bytes read past this
 * request.
 * @throws {TypeError} When `fetch` is not a function or `scheme` is neither
 * `"http"` nor `"https"` (as a rejected promise).
 * @throws {RangeError} When `maxBodySize` is not a positive integer.
 *
 * @example Answering one request over an in-memory connection
 * ```ts
 * import { HttpRequestParser, serveHttpRequest } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const bytes = new TextEncoder().encode(
 *   "POST /echo HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello",
 * );
 * const parser = new HttpRequestParser();
 * const head = parser.receive(bytes)!;
 * const reader = new ReadableStream({ type: "bytes" }).getReader({ mode: "byob" });
 * const written: Uint8Array[] = [];
 * const writer = new WritableStream<Uint8Array>({ write: (c) => void written.push(c) })
 *   .getWriter();
 *
 * const result = await serveHttpRequest(head, parser.rest, reader, writer, {
 *   fetch: async (request) => new Response(`${request.url} ${await request.text()}`),
 *   scheme: "http",
 *   remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 50000 },
 *   maxBodySize: 1024,
 * });
 * assert.equal(result.keepAlive, true);
 * const response = new TextDecoder().decode(written[0]);
 * assert.match(response, /^HTTP\/1\.1 200 OK\r\n/);
 * assert.ok(response.endsWith("\r\n\r\nhttp://example.com/echo hello"));
 * ```
 */
export async function serveHttpRequest(
  head: HttpRequestHead,
  rest: Uint8Array,
  reader: ReadableStreamBYOBReader,
  writer: WritableStreamDefaultWriter<Uint8Array>,
  options: HttpExchangeOptions,
): Promise<HttpExchangeResult> {
  validateOptions(options);
  let prepared: PreparedRequest;
  try {
    prepared = prepareRequest(head, options);
  } catch (error) {
    if (!(error instanceof HttpRequestError)) throw error;
    await answerError(writer, error, options, head.method);
    return CLOSED;
  }
  const { framing, method } = prepared;
  const body = framing === null ? null : new RequestBody(reader, rest, framing);
  const aborter = new AbortController();
  const request = new Request(
    prepared.url,
    {
      method,
      headers: prepared.headers,
      body: method === "GET" || method === "HEAD" ? null : body?.stream,
      signal: aborter.signal,
      duplex: "half",
    } as RequestInit & { duplex: "half" },
  );
  const abandon = () => aborter.abort(options.signal?.reason);
  options.signal?.addEventListener("abort", abandon, { once: true });
  try {
    return await exchange();
  } finally {
    options.signal?.removeEventListener("abort", abandon);
  }

  async function exchange(): Promise<HttpExchangeResult> {
    if (prepared.expectContinue && !await write(writer, CONTINUE)) {
      aborter.abort();
      return CLOSED;
    }

    const report = (error: unknown): void => {
      try {
        options.onError?.(error);
      } catch {
        // A failing reporter must not take the connection down.
      }
    };
    // When the client's body was broken, its status is the answer.
    const answerBodyError = async (): Promise<boolean> => {
      const error = body?.error;
      if (!(error instanceof HttpRequestError)) return false;
      await answerError(writer, error, options, head.method);
      return true;
    };
    const finish = (keepAlive: boolean): HttpExchangeResult => {
      body?.detach();
      if (!keepAlive) aborter.abort();
      return keepAlive ? { keepAlive, rest: body?.rest ?? rest } : CLOSED;
    };

    let response: Response;
    try {
      response = checkResponse(
        await options.fetch(request, { remoteAddr: options.remoteAddr }),
      );
    } catch (error) {
      if (await answerBodyError()) return finish(false);
      report(error);
      response = new Response(null, { status: 500 });
    }
    // A framework that caught the broken body's error (413, 400) answers
    // with a server error of its own: the client's fault is the answer.
    if (response.status >= 500 && await answerBodyError()) {
      await response.body?.cancel().catch(() => {});
      return finish(false);
    }

    const writeOptions = {
      // The framing follows the method as sent: only "HEAD" (methods are
      // case-sensitive, RFC 9110 §9.1) has a response without its content;
      // a proxy would read a "head" answer's body from the next response.
      head: head.method === "HEAD",
      http10: prepared.http10,
      keepAlive: prepared.keepAlive && body?.error == null &&
        (options.keepAlive?.() ?? true),
      signal: aborter.signal,
      onWrite: options.onResponseWrite,
      keepAliveTimeout: options.keepAliveTimeout,
    };
    const send = (answer: Response) =>
      writeResponse(writer, answer, {
        ...writeOptions,
        onHead: () => {
          if (body === null || body.complete) options.onResponseStarted?.();
        },
        onHeadTaken: () => announce(options, answer.status),
      });
    let result = await send(response);
    if (result.unsent) {
      if (await answerBodyError()) return finish(false);
      report(result.error);
      result = await send(new Response(null, { status: 500 }));
    } else if (result.error !== undefined && body?.error == null) {
      // (A failure caused by the client's broken body is not the handler's.)
      report(result.error);
    }

    let keepAlive = result.delivered && result.keepAlive;
    if (keepAlive && body !== null && !body.complete) {
      keepAlive = await body.drain();
    }
    return finish(keepAlive && body?.error == null);
  }
}

/** Answers with a rejection of ours, and tells `onResponse`. */
async function answerError(
  writer: WritableStreamDefaultWriter<Uint8Array>,
  error: HttpRequestError,
  options: HttpExchangeOptions,
  method: string,
): Promise<void> {
  const bytes = encodeErrorResponse(
    error.status,
    error.message,
    method === "HEAD",
  );
  if (await write(writer, bytes)) announce(options, error.status);
}

/** Tells `onResponse` the status going out. */
function announce(options: HttpExchangeOptions, status: number): void {
  try {
    options.onResponse?.(status);
  } catch {
    // A failing counter must not take the connection down.
  }
}

interface PreparedRequest {
  method: string;
  url: string;
  headers: Headers;
  framing: BodyFraming | null;
  http10: boolean;
  keepAlive: boolean;
  expectContinue: boolean;
}

/** Checks the head and works out the URL, body framing and keep-alive. */
function prepareRequest(
  head: HttpRequestHead,
  options: HttpExchangeOptions,
): PreparedRequest {
  if (head.versionMajor !== 1) {
    throw new HttpRequestError(
      505,
      `HTTP/${head.versionMajor}.${head.versionMinor} is not supported; use HTTP/1.1`,
    );
  }
  const http10 = head.versionMinor === 0;
  // As `new Request()` does (Fetch standard, "normalize a method").
  const method = NORMALIZED_METHODS.has(head.method.toUpperCase())
    ? head.method.toUpperCase()
    : head.method;
  // "head" would reach the handler as HEAD (as Request has it) while its
  // response is framed as for an unknown method, with a body: refused.
  if (method === "HEAD" && head.method !== "HEAD") {
    throw new HttpRequestError(
      501,
      `Method ${head.method} is not supported; method names are case-sensitive: HEAD`,
    );
  }
  if (UNSUPPORTED_METHODS.has(method.toUpperCase())) {
    throw new HttpRequestError(501, `Method ${method} is not supported`);
  }
  const values = (name: string): string[] =>
    head.headers.filter(([field]) => field.toLowerCase() === name)
      .map(([, value]) => value);

  // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status
  // code to any HTTP/1.1 request message that lacks a Host header field and
  // to any request message that contains more than one Host header field
  // line or a Host header field with an invalid field value."
  const hosts = values("host");
  if (hosts.length > 1 || (hosts.length === 0 && !http10)) {
    throw new HttpRequestError(
      400,
      hosts.length === 0
        ? "Host header is missing"
        : `Request has ${hosts.length} Host headers`,
    );
  }
  const host = hosts[0] ?? "localhost";
  if (!HOST.test(host)) {
    throw new HttpRequestError(
      400,
      `Malformed Host header: ${JSON.stringify(host.slice(0, 100))}`,
    );
  }
  const target = head.target;
  if (target === "*") {
    // RFC 9112 §3.2.4: the asterisk form is for OPTIONS only.
    throw method === "OPTIONS"
      ? new HttpRequestError(501, "Server-wide OPTIONS * is not supported")
      : new HttpRequestError(
        400,
        `The request target * is only for OPTIONS, not ${method}`,
      );
  }
  const authority = target.startsWith("/")
    ? null
    : ABSOLUTE_FORM.exec(target)?.[1];
  if (authority?.includes("@")) {
    // RFC 9110 §4.2.4: userinfo in an http(s) URI is to be treated as an
    // error (it may be a disguised host).
    throw new HttpRequestError(400, "Request target may not carry userinfo");
  }
  // An empty authority ("http:///x") must be rejected (RFC 9110 §4.2.1),
  // and one the URL parser would mend ("http:////evil/x", "http://\evil/x")
  // names a host other than a strict reader of the request sees.
  if (
    !TARGET.test(target) || authority === undefined ||
    (authority !== null && !HOST.test(authority))
  ) {
    throw new HttpRequestError(
      400,
      `Malformed request target: ${JSON.stringify(target.slice(0, 100))}`,
    );
  }
  let url: URL;
  try {
    // Concatenated, not resolved: "//evil/x" stays a path.
    url = new URL(
      target.startsWith("/") ? `${options.scheme}://${host}${target}` : target,
    );
  } catch {
    throw new HttpRequestError(
      400,
      `Malformed request target: ${JSON.stringify(target.slice(0, 100))}`,
    );
  }
  let headers: Headers;
  try {
    headers = headersOf(head.headers);
  } catch {
    throw new HttpRequestError(400, "Malformed header field");
  }

  const connection = tokens(values("connection"));
  const keepAlive = http10
    ? connection.includes("keep-alive") && !connection.includes("close")
    : !connection.includes("close");
  const framing = bodyFraming(
    values("transfer-encoding"),
    values("content-length"),
    http10,
    options.maxBodySize,
  );
  let expectContinue = false;
  // RFC 9110 §10.1.1: a server "MUST ignore" an expectation from HTTP/1.0.
  const expect = tokens(values("expect"));
  if (!http10 && expect.length > 0) {
    const unknown = expect.find((value) => value !== "100-continue");
    if (unknown !== undefined) {
      throw new HttpRequestError(
        417,
        `Expectation ${JSON.stringify(unknown)} is not supported`,
      );
    }
    expectContinue = framing !== null;
  }
  return {
    method,
    url: url.href,
    headers,
    framing,
    http10,
    keepAlive,
    expectContinue,
  };
}

/** The body's framing from its headers (RFC 9112 §6.3), or `null`. */
function bodyFraming(
  transferEncoding: string[],
  contentLength: string[],
  http10: boolean,
  maxBodySize: number,
): BodyFraming | null {
  if (transferEncoding.length > 0) {
    // RFC 9112 §6.1: such a message "ought to be handled as an error".
    if (contentLength.length > 0) {
      throw new HttpRequestError(
        400,
        "Request has both Content-Length and Transfer-Encoding",
      );
    }
    if (http10) {
      throw new HttpRequestError(
        400,
        "HTTP/1.0 request has a Transfer-Encoding",
      );
    }
    const codings = tokens(transferEncoding);
    if (
      codings.at(-1) !== "chunked" ||
      codings.indexOf("chunked") !== codings.length - 1
    ) {
      throw new HttpRequestError(
        400,
        `Transfer-Encoding must end with a single chunked, got ${
          JSON.stringify(transferEncoding.join(", ").slice(0, 100))
        }`,
      );
    }
    if (codings.length > 1) {
      throw new HttpRequestError(
        501,
        `Transfer coding ${JSON.stringify(codings[0])} is not supported`,
      );
    }
    return { type: "chunked", maxBodySize };
  }
  if (contentLength.length === 0) return null;
  // A list of identical values is one length (RFC 9112 §6.3, item 5).
  // Only spaces and tabs are whitespace here (RFC 9110 §5.6.1): "\xa05"
  // is no length, and a no-break space after "chunked" no chunked.
  const lengths = contentLength.join(",").split(",").map(trimOws);
  if (!lengths.every((v) => DIGITS.test(v) && v === lengths[0])) {
    throw new HttpRequestError(
      400,
      `Malformed Content-Length: ${
        JSON.stringify(contentLength.join(", ").slice(0, 100))
      }`,
    );
  }
  const length = Number(lengths[0]);
  if (length > maxBodySize) {
    throw new HttpRequestError(
      413,
      `Request body is larger than ${maxBodySize} bytes`,
    );
  }
  return length === 0 ? null : { type: "length", length };
}

function checkResponse(value: unknown): Response {
  if (!(value instanceof Response)) {
    throw new TypeError(
      `Cannot send response: the fetch handler must return a Response, got ${
        Object.prototype.toString.call(value)
      }`,
    );
  }
  if (value.type === "error") {
    throw new TypeError(
      "Cannot send response: the fetch handler returned Response.error()",
    );
  }
  return value;
}

function validateOptions(options: HttpExchangeOptions): void {
  if (typeof options?.fetch !== "function") {
    throw new TypeError(
      `Cannot serve: "fetch" must be a function, got ${typeof options?.fetch}`,
    );
  }
  if (options.scheme !== "http" && options.scheme !== "https") {
    throw new TypeError(
      `Cannot serve: "scheme" must be "http" or "https", got ${
        JSON.stringify(options.scheme)
      }`,
    );
  }
  if (!Number.isSafeInteger(options.maxBodySize) || options.maxBodySize <= 0) {
    throw new RangeError(
      `Cannot serve: "maxBodySize" must be a positive integer, got ${
        shown(options.maxBodySize)
      }`,
    );
  }
}

/** The comma-separated, lower-cased elements of some field values. */
function tokens(values: string[]): string[] {
  return values.join(",").toLowerCase().split(",").map(trimOws)
    .filter((v) => v !== "");
}
