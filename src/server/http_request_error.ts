/**
 * A plain HTTP request the server refuses because the *peer* got it wrong
 * (bad framing, a body over `maxBodySize`, an unsupported version), with the
 * HTTP status to answer. The connection is closed after the answer.
 *
 * A `fetch` handler reading a request body that breaks mid-way (a chunked
 * body that grows past `maxBodySize`, broken chunk framing) gets this error
 * from the body's stream; whatever the handler answers then, the client gets
 * this status.
 *
 * @example Telling a body over the limit from other failures in a handler
 * ```ts
 * import { HttpRequestError, serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const seen: number[] = [];
 * await using server = serve({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   maxBodySize: 16,
 *   fetch: async (request) => {
 *     try {
 *       return new Response(`got ${(await request.text()).length} bytes`);
 *     } catch (error) {
 *       if (error instanceof HttpRequestError) seen.push(error.status);
 *       throw error;
 *     }
 *   },
 * }, () => {});
 * const response = await fetch(`http://127.0.0.1:${server.addr.port}/`, {
 *   method: "POST",
 *   body: new Blob(["x".repeat(100)]).stream(), // chunked: no Content-Length
 * });
 * assert.equal(response.status, 413);
 * await response.body?.cancel();
 * assert.deepEqual(seen, [413]);
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
