import { HttpRequestError } from "./http_request_error.ts";

/** Options of {@linkcode ChunkedDecoder}. */
export interface ChunkedDecoderOptions {
  /** The most content bytes accepted, all chunks together (413 beyond it). */
  maxBodySize: number;
  /**
   * The longest chunk-size line, extensions included (400 beyond it).
   * @default {4096}
   */
  maxLineSize?: number;
  /**
   * The largest trailer section, in bytes (431 beyond it).
   * @default {16384}
   */
  maxTrailerSize?: number;
}

/** What one {@linkcode ChunkedDecoder.prototype.receive} call produced. */
export interface ChunkedOutput {
  /** Content bytes, as views into the chunk that was passed in. */
  data: Uint8Array[];
  /** Whether the last chunk and the trailer section have arrived. */
  done: boolean;
  /** When `done`: the bytes after the body (the next request's start). */
  rest: Uint8Array;
}

const SIZE_LINE = 0;
const DATA = 1;
const DATA_CR = 2;
const DATA_LF = 3;
const TRAILER_LINE = 4;
const DONE = 5;

const EMPTY = new Uint8Array(0);
// chunk = chunk-size [ chunk-ext ] CRLF; chunk-ext = *( BWS ";" ... )
// (RFC 9112 §7.1). Extensions are ignored, but must be printable.
const SIZE_LINE_SYNTAX = /^([0-9A-Fa-f]+)(?:[ \t]*;[\t\x20-\x7e\x80-\xff]*)?$/;
const FIELD_LINE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*$/;
// 13 hex digits are below 2^53; anything longer is over any body limit.
const MAX_SIZE_DIGITS = 13;
/** Size-line bytes tolerated beyond 16 plus twice each chunk's size. */
const MAX_EXCESS = 16 * 1024;

/**
 * A sans-I/O decoder for the chunked transfer coding of a request body
 * (RFC 9112 §7.1): feed it the bytes that follow the head, in any cuts; it
 * returns the content as views and, once the body is over, the bytes that
 * came after it. Chunk extensions and trailer fields are checked for syntax
 * and ignored.
 *
 * - Strict framing: every line ends with CRLF; a bare LF or CR, a size that
 *   is not hex, or chunk data not followed by CRLF is a 400.
 * - Limits: the content total is checked against `maxBodySize` (413) as soon
 *   as a chunk size is read, before any of its data is buffered.
 *
 * @example Decoding a body that arrives in two pieces
 * ```ts
 * import { ChunkedDecoder } from "./_chunked_decoder.ts";
 * import assert from "node:assert/strict";
 *
 * const decoder = new ChunkedDecoder({ maxBodySize: 1024 });
 * const bytes = new TextEncoder().encode("5\r\nhello\r\n0\r\n\r\nGET /next");
 * const first = decoder.receive(bytes.subarray(0, 6));
 * const second = decoder.receive(bytes.subarray(6));
 * const text = [...first.data, ...second.data]
 *   .map((view) => new TextDecoder().decode(view)).join("");
 * assert.equal(text, "hello");
 * assert.equal(second.done, true);
 * assert.equal(new TextDecoder().decode(second.rest), "GET /next");
 * ```
 */
export class ChunkedDecoder {
  readonly #maxBodySize: number;
  readonly #maxLineSize: number;
  readonly #maxTrailerSize: number;
  #state = SIZE_LINE;
  #line = "";
  #remaining = 0;
  #received = 0;
  #trailerSize = 0;
  // Size-line bytes beyond what a sensible client needs (as Go counts
  // them): extensions and padding on tiny chunks, which maxBodySize does
  // not see.
  #excess = 0;

  /**
   * Creates a decoder for one body.
   *
   * @param options The limits.
   */
  constructor(options: ChunkedDecoderOptions) {
    this.#maxBodySize = options.maxBodySize;
    this.#maxLineSize = options.maxLineSize ?? 4096;
    this.#maxTrailerSize = options.maxTrailerSize ?? 16384;
  }

  /** The content bytes decoded so far. */
  get received(): number {
    return this.#received;
  }

  /** Whether the whole body has been decoded. */
  get done(): boolean {
    return this.#state === DONE;
  }

  /**
   * Decodes the next bytes of the body.
   *
   * @param chunk Bytes from the connection (views into it are returned).
   * @returns The content found, and the bytes after the body once it ended.
   * @throws {HttpRequestError} 400 for broken framing, 413 when the content
   * is over `maxBodySize`, 431 when the trailer section is over its limit.
   */
  receive(chunk: Uint8Array): ChunkedOutput {
    const data: Uint8Array[] = [];
    let i = 0;
    while (i < chunk.length && this.#state !== DONE) {
      switch (this.#state) {
        case SIZE_LINE:
        case TRAILER_LINE: {
          const lf = chunk.indexOf(10, i);
          const end = lf === -1 ? chunk.length : lf;
          this.#appendLine(chunk.subarray(i, end));
          if (lf === -1) {
            i = chunk.length;
            break;
          }
          i = lf + 1;
          const line = this.#takeLine();
          if (this.#state === SIZE_LINE) this.#sizeLine(line);
          else this.#trailerLine(line);
          break;
        }
        case DATA: {
          const n = Math.min(this.#remaining, chunk.length - i);
          data.push(chunk.subarray(i, i + n));
          i += n;
          this.#remaining -= n;
          if (this.#remaining === 0) this.#state = DATA_CR;
          break;
        }
        case DATA_CR:
        case DATA_LF: {
          const expected = this.#state === DATA_CR ? 13 : 10;
          if (chunk[i] !== expected) {
            throw new HttpRequestError(
              400,
              "Chunk data is not followed by CRLF",
            );
          }
          i++;
          this.#state = this.#state === DATA_CR ? DATA_LF : SIZE_LINE;
          break;
        }
      }
    }
    return {
      data,
      done: this.#state === DONE,
      rest: this.#state === DONE ? chunk.subarray(i) : EMPTY,
    };
  }

  #appendLine(bytes: Uint8Array): void {
    const limit = this.#state === SIZE_LINE
      ? this.#maxLineSize
      : this.#maxTrailerSize - this.#trailerSize;
    // +1: the CR of the line's CRLF is still in the buffer.
    if (this.#line.length + bytes.length > limit + 1) {
      throw this.#state === SIZE_LINE
        ? new HttpRequestError(
          400,
          `Chunk size line is longer than ${this.#maxLineSize} bytes`,
        )
        : new HttpRequestError(
          431,
          `Chunked body trailer is larger than ${this.#maxTrailerSize} bytes`,
        );
    }
    for (let i = 0; i < bytes.length; i += 4096) {
      this.#line += String.fromCharCode(...bytes.subarray(i, i + 4096));
    }
  }

  /** The line without its CRLF; the LF was just consumed. */
  #takeLine(): string {
    const line = this.#line;
    this.#line = "";
    if (!line.endsWith("\r")) {
      throw new HttpRequestError(
        400,
        "Line in chunked body ends with a bare LF",
      );
    }
    if (line.indexOf("\r") !== line.length - 1) {
      throw new HttpRequestError(400, "Line in chunked body has a bare CR");
    }
    if (this.#state === TRAILER_LINE) this.#trailerSize += line.length + 1;
    return line.slice(0, -1);
  }

  #sizeLine(line: string): void {
    const match = SIZE_LINE_SYNTAX.exec(line);
    if (match === null) {
      throw new HttpRequestError(
        400,
        `Malformed chunk size line: ${JSON.stringify(line.slice(0, 100))}`,
      );
    }
    const digits = match[1].replace(/^0+(?=.)/, "");
    const size = digits.length > MAX_SIZE_DIGITS
      ? Infinity
      : parseInt(digits, 16);
    // A size line (with its CRLF) may take 16 bytes plus twice its chunk's
    // size; what is beyond that adds up, to at most MAX_EXCESS.
    this.#excess += line.length + 2 - 16 - 2 * Math.min(size, 2 ** 40);
    if (this.#excess < 0) this.#excess = 0;
    else if (this.#excess > MAX_EXCESS) {
      throw new HttpRequestError(
        400,
        "Chunked body has too many bytes of chunk extensions or padding for its content",
      );
    }
    if (size > this.#maxBodySize - this.#received) {
      throw new HttpRequestError(
        413,
        `Request body is larger than ${this.#maxBodySize} bytes`,
      );
    }
    this.#received += size;
    if (size === 0) {
      this.#state = TRAILER_LINE;
    } else {
      this.#remaining = size;
      this.#state = DATA;
    }
  }

  #trailerLine(line: string): void {
    if (line === "") {
      this.#state = DONE;
      return;
    }
    if (!FIELD_LINE.test(line)) {
      throw new HttpRequestError(
        400,
        `Malformed trailer field: ${JSON.stringify(line.slice(0, 100))}`,
      );
    }
  }
}
