/**
 * A plain HTTP request the server refuses because the *peer* got it wrong
 * (bad framing, a body over the limit, an unsupported version), with the
 * HTTP status to answer. The connection is closed after the answer.
 *
 * @example Usage
 * ```ts
 * import { HttpRequestError } from "./_http_request_error.ts";
 * import assert from "node:assert/strict";
 *
 * const error = new HttpRequestError(413, "Request body is larger than 1024 bytes");
 * assert.equal(error.status, 413);
 * assert.equal(error.name, "HttpRequestError");
 * ```
 */
export class HttpRequestError extends Error {
  /** The HTTP status code to answer with (400, 413, 417, 431, 501, 505). */
  readonly status: number;

  /**
   * Creates a rejection.
   *
   * @param status The HTTP status code to answer with.
   * @param message A short sentence that becomes the plain-text response body.
   */
  constructor(status: number, message: string) {
    super(message);
    this.name = "HttpRequestError";
    this.status = status;
  }
}
