/**
 * `error` with `context` before its message: an error of the same class
 * (`instanceof Deno.errors.ConnectionRefused` still holds), with its `code`
 * (`ECONNREFUSED`), and the original as its `cause`. Anything that is not
 * an `Error`, or whose class does not rebuild that way, is returned as it
 * is.
 *
 * @param error What was thrown.
 * @param context What was being done, as "Cannot connect to ws://…".
 * @returns The error to throw.
 *
 * @example
 * ```ts
 * import { withContext } from "./_error_context.ts";
 * import assert from "node:assert/strict";
 *
 * const error = new Deno.errors.AddrInUse("Address already in use");
 * const wrapped = withContext(error, "Cannot serve on 127.0.0.1:80");
 * assert.ok(wrapped instanceof Deno.errors.AddrInUse);
 * assert.equal((wrapped as Error).message, "Cannot serve on 127.0.0.1:80: Address already in use");
 * assert.equal((wrapped as Error).cause, error);
 * ```
 */
export function withContext(error: unknown, context: string): unknown {
  if (!(error instanceof Error)) return error;
  const message = `${context}: ${error.message}`;
  try {
    const ErrorClass = error.constructor as new (
      message: string,
      options?: ErrorOptions,
    ) => Error;
    const wrapped = new ErrorClass(message, { cause: error });
    // A class whose constructor takes other arguments (AggregateError,
    // DOMException): the original says enough.
    if (
      wrapped.message !== message || wrapped.cause !== error ||
      wrapped.name !== error.name
    ) return error;
    const code = (error as { code?: unknown }).code;
    if (code !== undefined && (wrapped as { code?: unknown }).code !== code) {
      Object.defineProperty(wrapped, "code", {
        value: code,
        writable: true,
        configurable: true,
      });
    }
    return wrapped;
  } catch {
    return error;
  }
}
