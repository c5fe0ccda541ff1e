import { STATUS_TEXT } from "./_status_text.ts";
import { concat, encodeLatin1 } from "../protocol/_bytes.ts";

/** Options of {@linkcode writeResponse}. */
export interface WriteResponseOptions {
  /** The request was `HEAD`: write the head only. */
  head: boolean;
  /** The client speaks HTTP/1.0: no chunked coding, keep-alive on request. */
  http10: boolean;
  /** Whether the request allows keeping the connection open. */
  keepAlive: boolean;
  /**
   * How long the connection waits for the next request, in milliseconds:
   * said in `Keep-Alive: timeout=<seconds>` on a response that keeps it
   * open, so that a client stops reusing it before it is closed.
   */
  keepAliveTimeout?: number;
  /**
   * Abandons the response: a body still streaming is canceled (a client
   * that left, the server's request timeout, shutdown).
   */
  signal?: AbortSignal;
  /**
   * Called once the head is handed to the writer (the body may still be
   * streaming).
   */
  onHead?: () => void;
  /**
   * Called once the connection took the head and what of the body went
   * with it (all of a body in memory, written in watched slices): not for a
   * client that is gone.
   */
  onHeadTaken?: () => void;
  /**
   * Called with `true` as each write of the head or of a body chunk starts,
   * and `false` once the client's connection took it: a write that stays
   * pending is a client that stopped reading.
   */
  onWrite?: (pending: boolean) => void;
}

/** How {@linkcode writeResponse} went. */
export interface WriteResponseResult {
  /** Whether the whole response reached the connection. */
  delivered: boolean;
  /** Whether the connection may carry another request. */
  keepAlive: boolean;
  /**
   * An error of the response itself (its body stream failed, or its length
   * differs from its `Content-Length`), for the handler's error report.
   */
  error?: unknown;
  /** Set when nothing was written: the head could not be formed. */
  unsent?: boolean;
}

/** Body bytes available at once, up to this many, go with the head. */
const GATHER_LIMIT = 64 * 1024;
/**
 * Microtasks a read may take to count as "available at once": an in-memory
 * body (string, bytes, `Blob`) answers in 1-5 in Deno 2.
 */
const MICROTASK_BUDGET = 32;
/** Chunks up to this size are copied into their chunk framing. */
const COPY_LIMIT = 64 * 1024;
/** Larger body chunks are written in slices of this size. */
const WRITE_SLICE = 64 * 1024;
// Framing is ours to decide; the handler's values are dropped.
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "transfer-encoding",
  "content-length",
  "proxy-connection",
]);
const DIGITS = /^\d+$/;
// The codings fetch() decodes.
const DECODED_CODINGS = new Set(["gzip", "x-gzip", "deflate", "br", "zstd"]);
// RFC 9110 §5.5: a field value is visible characters, spaces and tabs.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const CRLF = new Uint8Array([13, 10]);
const LAST_CHUNK = new Uint8Array([48, 13, 10, 13, 10]); // "0\r\n\r\n"
const NOT_YET = Symbol("not yet");

type Read = ReadableStreamReadResult<Uint8Array>;

/**
 * Writes a `Response` as HTTP/1.1 (RFC 9112 §6-7, §9) and reports whether
 * the connection can carry another request.
 *
 * - Framing: no body (or `HEAD`, 204, 304) writes no body bytes; the
 *   handler's `Content-Length` is kept and the body written as is; a body
 *   that is available at once and ends within 64 KiB, or in one read past
 *   them (an in-memory `Response` of any size), gets a `Content-Length`;
 *   any other body is streamed with the
 *   chunked coding, or, to an HTTP/1.0 client, delimited by closing the
 *   connection.
 * - Small responses go out in one write, head and body together.
 * - A `Date` header is added unless the handler set one; `Connection`,
 *   `Keep-Alive`, `Transfer-Encoding` and `Content-Length` are the writer's.
 * - A failed write means the client is gone: the body is cancelled and
 *   `delivered` is `false`; this function never rejects.
 *
 * @param writer The connection's writer.
 * @param response The handler's response.
 * @param options The request's method, version and keep-alive wish.
 * @returns What happened.
 *
 * @example A small response in one write
 * ```ts
 * import { writeResponse } from "./_response_writer.ts";
 * import assert from "node:assert/strict";
 *
 * const writes: Uint8Array[] = [];
 * const writer = new WritableStream<Uint8Array>({ write: (c) => void writes.push(c) })
 *   .getWriter();
 * const result = await writeResponse(writer, new Response("hi"), {
 *   head: false,
 *   http10: false,
 *   keepAlive: true,
 * });
 * assert.equal(result.keepAlive, true);
 * assert.equal(writes.length, 1);
 * const text = new TextDecoder().decode(writes[0]);
 * assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
 * assert.match(text, /\r\ncontent-length: 2\r\n/);
 * assert.ok(text.endsWith("\r\n\r\nhi"));
 * ```
 */
export async function writeResponse(
  writer: WritableStreamDefaultWriter<Uint8Array>,
  response: Response,
  options: WriteResponseOptions,
): Promise<WriteResponseResult> {
  const status = response.status;
  const headers = response.headers;
  let keepAlive = options.keepAlive &&
    !hasToken(headers.get("connection"), "close");
  for (const [name, value] of headers) {
    // Headers refuses CR, LF and NUL, not the other control characters,
    // which no field value may hold (RFC 9110 §5.5): the handler's
    // mistake, answered 500 by the caller.
    if (!FIELD_VALUE.test(value)) {
      response.body?.cancel().catch(() => {});
      return {
        delivered: false,
        keepAlive,
        error: new TypeError(
          `Cannot send response: the value of ${name} has a control character, which no header may hold: ${
            JSON.stringify(value.slice(0, 100))
          }`,
        ),
        unsent: true,
      };
    }
  }
  // A response from fetch() (proxied) has its body decoded already, but
  // keeps the upstream's Content-Encoding and Content-Length, which would
  // describe bytes that are not these: both are dropped, as Deno.serve does.
  const decoded = response.type !== "default" &&
    DECODED_CODINGS.has(
      headers.get("content-encoding")?.trim().toLowerCase() ?? "",
    );
  const declaredText = decoded ? null : headers.get("content-length");
  // The handler's digits go out as given (without leading zeros): a length
  // past 2^53 would not survive a trip through a number.
  const declaredField = declaredText !== null && DIGITS.test(declaredText)
    ? declaredText.replace(/^0+(?=\d)/, "")
    : null;
  const declared = declaredField === null ? null : Number(declaredField);
  const body = response.body;

  let lengthField: string | number | null = null;
  let framing: Framing | "none" = "none";
  let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  const gathered: Uint8Array[] = [];
  let pendingRead: Promise<Read> | null = null;
  let ended = false;

  if (status === 204 || status === 304 || status < 200) {
    // RFC 9110 §8.6: no Content-Length in a 204; a 304 may carry the
    // length of the representation it stands for.
    if (status === 304) lengthField = declaredField;
  } else if (body === null) {
    lengthField = options.head ? declaredField ?? 0 : 0;
  } else if (options.head && declaredField !== null) {
    lengthField = declaredField;
  } else {
    let size = 0;
    try {
      reader = body.getReader();
      // Past the limit, one read more: an in-memory Response of any size
      // is one chunk, and whether it ended decides its framing.
      let lookedPast = false;
      for (;;) {
        if (size >= GATHER_LIMIT) {
          if (lookedPast) break;
          lookedPast = true;
        }
        const read = reader.read();
        const result = await soon(read);
        if (result === NOT_YET) {
          pendingRead = read;
          break;
        }
        if (result.done) {
          ended = true;
          break;
        }
        const chunk = checkChunk(result.value);
        gathered.push(chunk);
        size += chunk.length;
      }
    } catch (error) {
      // Nothing is written yet: the caller can still answer 500.
      if (reader !== null) cancelQuietly(reader, pendingRead);
      return { delivered: false, keepAlive, error, unsent: true };
    }
    if (ended && declared !== null && size < declared) {
      // The whole body is known shorter than its Content-Length: a 500
      // now, not a head that promises bytes which never come.
      return {
        delivered: false,
        keepAlive,
        error: new TypeError(
          `Cannot send response: its body is ${size} bytes, shorter than its Content-Length of ${declared}`,
        ),
        unsent: true,
      };
    }
    if (declaredField !== null) {
      lengthField = declaredField;
      framing = "length";
    } else if (ended) {
      lengthField = size;
      framing = "length";
    } else if (options.http10) {
      framing = "close";
      // Without a length, only the end of the connection ends the body.
      if (!options.head) keepAlive = false;
    } else {
      framing = "chunked";
    }
  }

  let head = `HTTP/1.1 ${status} ${
    response.statusText || STATUS_TEXT[status] || ""
  }\r\n`;
  for (const [name, value] of headers) {
    if (HOP_BY_HOP.has(name) || (decoded && name === "content-encoding")) {
      continue;
    }
    head += `${name}: ${value}\r\n`;
  }
  if (!headers.has("date")) head += `date: ${new Date().toUTCString()}\r\n`;
  if (lengthField !== null) head += `content-length: ${lengthField}\r\n`;
  // A HEAD response announces the framing a GET would have had.
  if (framing === "chunked") head += "transfer-encoding: chunked\r\n";
  if (!keepAlive) head += "connection: close\r\n";
  else if (options.http10) head += "connection: keep-alive\r\n";
  if (keepAlive && options.keepAliveTimeout !== undefined) {
    head += `keep-alive: timeout=${
      Math.floor(options.keepAliveTimeout / 1000)
    }\r\n`;
  }
  const headBytes = encodeLatin1(`${head}\r\n`);

  if (framing === "none" || options.head || reader === null) {
    if (reader !== null) cancelQuietly(reader, pendingRead);
    else if (body !== null) body.cancel().catch(() => {});
    // Watched like any write of a response: a client that stopped reading
    // (pipelining HEADs, say) must not hold the connection forever.
    const written = write(writer, headBytes);
    options.onHead?.();
    options.onWrite?.(true);
    const taken = await written;
    options.onWrite?.(false);
    if (!taken) return { delivered: false, keepAlive: false };
    options.onHeadTaken?.();
    return { delivered: true, keepAlive };
  }
  return await writeBody(writer, reader, {
    head: headBytes,
    gathered,
    ended,
    pendingRead,
    framing,
    declared,
    keepAlive,
    signal: options.signal,
    onHead: options.onHead,
    onHeadTaken: options.onHeadTaken,
    onWrite: options.onWrite,
  });
}

type Framing = "length" | "chunked" | "close";

interface BodyPlan {
  head: Uint8Array;
  gathered: Uint8Array[];
  ended: boolean;
  pendingRead: Promise<Read> | null;
  framing: Framing;
  declared: number | null;
  keepAlive: boolean;
  signal: AbortSignal | undefined;
  onHead: (() => void) | undefined;
  onHeadTaken: (() => void) | undefined;
  onWrite: ((pending: boolean) => void) | undefined;
}

async function writeBody(
  writer: WritableStreamDefaultWriter<Uint8Array>,
  reader: ReadableStreamDefaultReader<Uint8Array>,
  plan: BodyPlan,
): Promise<WriteResponseResult> {
  const chunked = plan.framing === "chunked";
  const frame = (chunk: Uint8Array): Uint8Array[] =>
    chunked
      ? [encodeLatin1(`${chunk.length.toString(16)}\r\n`), chunk, CRLF]
      : [chunk];
  const tooLong = (): Error =>
    new TypeError(
      `Cannot send response: its body is longer than its Content-Length of ${plan.declared}`,
    );
  const gone = (): WriteResponseResult => {
    cancelQuietly(reader, pending);
    return { delivered: false, keepAlive: false };
  };
  let pending = plan.pendingRead;
  let written = 0;

  // The head goes out with what the body produced right away.
  const first: Uint8Array[] = [plan.head];
  for (const chunk of plan.gathered) {
    if (chunk.length === 0) continue;
    written += chunk.length;
    first.push(...frame(chunk));
  }
  if (plan.declared !== null && written > plan.declared) {
    // Nothing is written yet: the caller can still answer 500.
    cancelQuietly(reader, pending);
    return {
      delivered: false,
      keepAlive: false,
      error: tooLong(),
      unsent: true,
    };
  }
  // The head is on its way (with what of the body was ready, which a slow
  // client may take long to read): the response has started.
  const firstSize = first.reduce((size, part) => size + part.length, 0);
  // A large body (in memory) follows its head in watched slices.
  const watched = firstSize > WRITE_SLICE;
  const headWritten = watched
    ? writeAll(writer, first, plan.onWrite)
    : write(writer, first.length === 1 ? first[0] : concat(first));
  plan.onHead?.();
  if (!watched) plan.onWrite?.(true);
  const headTaken = await headWritten;
  if (!watched) plan.onWrite?.(false);
  if (!headTaken) return gone();
  plan.onHeadTaken?.();

  // Abandoned: a body waiting for its next chunk is canceled, which ends
  // the read below.
  const abandon = () => cancelQuietly(reader, pending);
  plan.signal?.addEventListener("abort", abandon, { once: true });
  try {
    while (!plan.ended) {
      let result: Read;
      try {
        result = await (pending ?? reader.read());
        pending = null;
        if (plan.signal?.aborted) return { delivered: false, keepAlive: false };
        if (!result.done) checkChunk(result.value);
      } catch (error) {
        // The body failed after the head went out: cut the response short
        // so that the client sees it is incomplete.
        pending = null;
        cancelQuietly(reader, null);
        return { delivered: false, keepAlive: false, error };
      }
      if (result.done) {
        if (
          chunked && !await writeWatched(writer, LAST_CHUNK, plan.onWrite)
        ) return gone();
        break;
      }
      const chunk = result.value;
      if (chunk.length === 0) continue;
      written += chunk.length;
      if (plan.declared !== null && written > plan.declared) {
        cancelQuietly(reader, null);
        return { delivered: false, keepAlive: false, error: tooLong() };
      }
      const parts = frame(chunk);
      const ok = chunk.length <= COPY_LIMIT
        ? await writeWatched(writer, concat(parts), plan.onWrite)
        : await writeAll(writer, parts, plan.onWrite);
      if (!ok) return gone();
    }
  } finally {
    plan.signal?.removeEventListener("abort", abandon);
  }
  if (plan.declared !== null && written < plan.declared) {
    return {
      delivered: false,
      keepAlive: false,
      error: new TypeError(
        `Cannot send response: its body is ${written} bytes, shorter than its Content-Length of ${plan.declared}`,
      ),
    };
  }
  return {
    delivered: true,
    keepAlive: plan.framing === "close" ? false : plan.keepAlive,
  };
}

/**
 * Encodes a plain-text response of ours (a rejection), which closes the
 * connection.
 *
 * @param status The status code.
 * @param message The body sentence.
 * @param head The request was a `HEAD`: no content, though its length is
 * given (RFC 9110 §9.3.2).
 * @returns The response bytes.
 *
 * @example Usage
 * ```ts
 * import { encodeErrorResponse } from "./_response_writer.ts";
 * import assert from "node:assert/strict";
 *
 * const text = new TextDecoder().decode(encodeErrorResponse(413, "Too big"));
 * assert.match(text, /^HTTP\/1\.1 413 Content Too Large\r\n/);
 * assert.match(text, /\r\nconnection: close\r\n/);
 * assert.ok(text.endsWith("\r\n\r\nToo big\n"));
 * ```
 */
export function encodeErrorResponse(
  status: number,
  message: string,
  head = false,
): Uint8Array {
  const body = new TextEncoder().encode(`${message}\n`);
  const fields = encodeLatin1(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ""}\r\n` +
      "content-type: text/plain; charset=utf-8\r\n" +
      `content-length: ${body.length}\r\n` +
      `date: ${new Date().toUTCString()}\r\n` +
      "connection: close\r\n\r\n",
  );
  return head ? fields : concat([fields, body]);
}

/**
 * Writes bytes; `false` when the connection is gone.
 *
 * @param writer The connection's writer.
 * @param bytes What to write.
 * @returns Whether the write succeeded.
 *
 * @example Usage
 * ```ts
 * import { write } from "./_response_writer.ts";
 * import assert from "node:assert/strict";
 *
 * const writer = new WritableStream({ write() { throw new Error("gone"); } }).getWriter();
 * assert.equal(await write(writer, new Uint8Array(1)), false);
 * ```
 */
export async function write(
  writer: WritableStreamDefaultWriter<Uint8Array>,
  bytes: Uint8Array,
): Promise<boolean> {
  try {
    await writer.write(bytes);
    return true;
  } catch {
    return false;
  }
}

async function writeAll(
  writer: WritableStreamDefaultWriter<Uint8Array>,
  parts: Uint8Array[],
  onWrite: ((pending: boolean) => void) | undefined,
): Promise<boolean> {
  for (const part of parts) {
    // In slices, so that a slow reader's progress shows between writes.
    for (let i = 0; i < part.length; i += WRITE_SLICE) {
      const slice = part.subarray(i, i + WRITE_SLICE);
      if (!await writeWatched(writer, slice, onWrite)) return false;
    }
  }
  return true;
}

async function writeWatched(
  writer: WritableStreamDefaultWriter<Uint8Array>,
  bytes: Uint8Array,
  onWrite: ((pending: boolean) => void) | undefined,
): Promise<boolean> {
  onWrite?.(true);
  const ok = await write(writer, bytes);
  onWrite?.(false);
  return ok;
}

/**
 * The read's result if it settles within a few microtasks (the body is in
 * memory), else `NOT_YET` (the read stays pending for the caller). No timer:
 * whether a body is "available at once" never depends on the clock.
 */
async function soon(read: Promise<Read>): Promise<Read | typeof NOT_YET> {
  let settled = false;
  read.then(() => settled = true, () => settled = true);
  for (let i = 0; i < MICROTASK_BUDGET && !settled; i++) await undefined;
  return settled ? await read : NOT_YET;
}

function checkChunk(value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new TypeError(
      `Cannot send response: its body must produce Uint8Array chunks, got ${
        Object.prototype.toString.call(value)
      }`,
    );
  }
  return value;
}

function cancelQuietly(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  pendingRead: Promise<Read> | null,
): void {
  pendingRead?.catch(() => {});
  reader.cancel().catch(() => {});
}

function hasToken(value: string | null, token: string): boolean {
  if (value === null) return false;
  return value.toLowerCase().split(",").some((part) => part.trim() === token);
}
