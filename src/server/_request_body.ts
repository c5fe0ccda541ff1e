import { concat } from "../protocol/_bytes.ts";
import { ChunkedDecoder } from "./_chunked_decoder.ts";
import { HttpRequestError } from "./http_request_error.ts";

/** How a request body is delimited (RFC 9112 §6.3). */
export type BodyFraming =
  | { type: "length"; length: number }
  | { type: "chunked"; maxBodySize: number };

const READ_SIZE = 64 * 1024;
const EMPTY = new Uint8Array(0);

/**
 * The body of one plain HTTP request, read from the connection on demand:
 * first from the bytes that came with the head, then from the connection's
 * BYOB reader. It never reads past the body of a `Content-Length` request;
 * a chunked body may end inside a read, and what follows it is kept as
 * {@linkcode RequestBody.prototype.rest}.
 *
 * - Reads are serialized, so the handler's stream and a later
 *   {@linkcode RequestBody.prototype.drain} never interleave.
 * - Content chunks handed out are never shared with the next request's bytes.
 * - After {@linkcode RequestBody.prototype.detach}, the stream fails: the
 *   body belongs to the exchange that has ended.
 *
 * @example Reading a body that is partly in the bytes after the head
 * ```ts
 * import { RequestBody } from "./_request_body.ts";
 * import assert from "node:assert/strict";
 *
 * const wire = new ReadableStream({
 *   type: "bytes",
 *   start(controller) {
 *     controller.enqueue(new TextEncoder().encode("lo wor"));
 *     controller.enqueue(new TextEncoder().encode("ldGET /next"));
 *   },
 * });
 * const body = new RequestBody(
 *   wire.getReader({ mode: "byob" }),
 *   new TextEncoder().encode("hel"),
 *   { type: "length", length: 11 },
 * );
 * assert.equal(await new Response(body.stream).text(), "hello world");
 * assert.equal(body.complete, true);
 * ```
 */
export class RequestBody {
  /** The body as the handler sees it (`request.body`). */
  readonly stream: ReadableStream<Uint8Array<ArrayBuffer>>;
  readonly #reader: ReadableStreamBYOBReader;
  #pending: Uint8Array;
  #remaining: number;
  readonly #decoder: ChunkedDecoder | null;
  readonly #decoded: Uint8Array<ArrayBuffer>[] = [];
  #complete = false;
  #error: unknown = null;
  #detached = false;
  #busy: Promise<unknown> = Promise.resolve();

  /**
   * Creates the body of one request.
   *
   * @param reader The connection's reader, for the bytes not read yet.
   * @param rest The bytes already read after the head.
   * @param framing How the body is delimited.
   */
  constructor(
    reader: ReadableStreamBYOBReader,
    rest: Uint8Array,
    framing: BodyFraming,
  ) {
    this.#reader = reader;
    this.#pending = rest;
    this.#remaining = framing.type === "length" ? framing.length : 0;
    this.#decoder = framing.type === "chunked"
      ? new ChunkedDecoder({ maxBodySize: framing.maxBodySize })
      : null;
    this.#complete = framing.type === "length" && framing.length === 0;
    this.stream = new ReadableStream<Uint8Array<ArrayBuffer>>({
      pull: async (controller) => {
        try {
          if (this.#detached) {
            throw new TypeError(
              "Cannot read the request body: its response has been sent",
            );
          }
          const chunk = await this.read();
          if (chunk === null) controller.close();
          else controller.enqueue(chunk);
        } catch (error) {
          controller.error(error);
        }
      },
    }, { highWaterMark: 0 });
  }

  /** Whether the body has been read to its end. */
  get complete(): boolean {
    return this.#complete;
  }

  /** The error that ended the body early, or `null`. */
  get error(): unknown {
    return this.#error;
  }

  /** Once complete: the bytes read past the body (the next request's start). */
  get rest(): Uint8Array {
    return this.#complete ? this.#pending : EMPTY;
  }

  /**
   * Reads the next content bytes.
   *
   * @returns A chunk the caller owns, or `null` at the end of the body.
   * @throws {HttpRequestError} 400 when the framing is broken or the client
   * closed the connection mid-body, 413 when it is over the limit.
   */
  read(): Promise<Uint8Array<ArrayBuffer> | null> {
    const next = this.#busy.then(() => this.#read());
    this.#busy = next.catch(() => {});
    return next;
  }

  /**
   * Reads and discards the rest of the body.
   *
   * @returns Whether the body ended cleanly (the connection can be reused).
   */
  async drain(): Promise<boolean> {
    try {
      while (await this.read() !== null);
      return true;
    } catch {
      return false;
    }
  }

  /** Ends the handler's access: later reads of the stream fail. */
  detach(): void {
    this.#detached = true;
  }

  async #read(): Promise<Uint8Array<ArrayBuffer> | null> {
    if (this.#error !== null) throw this.#error;
    try {
      return this.#decoder === null
        ? await this.#readLength()
        : await this.#readChunked(this.#decoder);
    } catch (error) {
      this.#error = error;
      throw error;
    }
  }

  async #readLength(): Promise<Uint8Array<ArrayBuffer> | null> {
    if (this.#remaining === 0) {
      this.#complete = true;
      return null;
    }
    let chunk: Uint8Array<ArrayBuffer>;
    if (this.#pending.length > 0) {
      const n = Math.min(this.#pending.length, this.#remaining);
      // A copy: the rest of the buffer may be the next request.
      chunk = this.#pending.slice(0, n);
      this.#pending = this.#pending.subarray(n);
    } else {
      // Exactly as much as the body still needs, never more.
      chunk = await this.#readConnection(
        Math.min(this.#remaining, READ_SIZE),
      );
    }
    this.#remaining -= chunk.length;
    if (this.#remaining === 0) this.#complete = true;
    return chunk;
  }

  async #readChunked(
    decoder: ChunkedDecoder,
  ): Promise<Uint8Array<ArrayBuffer> | null> {
    while (this.#decoded.length === 0 && !decoder.done) {
      let input: Uint8Array;
      if (this.#pending.length > 0) {
        input = this.#pending;
        this.#pending = EMPTY;
      } else {
        input = await this.#readConnection(READ_SIZE);
      }
      const output = decoder.receive(input);
      // One chunk per read, however many chunks it held: a body sent in
      // 1-byte chunks is otherwise thousands of pieces per read for the
      // handler to take one at a time (3 µs each, the event loop held).
      const data = concat(output.data);
      if (data.length > 0) this.#decoded.push(data);
      if (output.done) {
        this.#pending = output.rest;
        this.#complete = true;
      }
    }
    return this.#decoded.shift() ?? null;
  }

  async #readConnection(size: number): Promise<Uint8Array<ArrayBuffer>> {
    let result: ReadableStreamReadResult<Uint8Array<ArrayBuffer>>;
    try {
      result = await this.#reader.read(new Uint8Array(size));
    } catch {
      result = { done: true, value: undefined };
    }
    if (result.done || result.value === undefined) {
      throw new HttpRequestError(
        400,
        "The client closed the connection in the middle of the request body",
      );
    }
    return result.value;
  }
}
