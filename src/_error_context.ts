/**
 * `error` with `context` before its message: an error of the same class
 * (`instanceof Deno.errors.ConnectionRefused` still holds), with its `code`
 * (`ECONNREFUSED`), and the original as its `cause`. Anything that is not
 * an `Error` is returned as it is.
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
  const ErrorClass = error.constructor as new (
    message: string,
    options?: ErrorOptions,
  ) => Error;
  let wrapped: Error;
  try {
    wrapped = new ErrorClass(`${context}: ${error.message}`, { cause: error });
  } catch {
    return error;
  }
  wrapped.name = error.name;
  const code = (error as { code?: unknown }).code;
  if (code !== undefined) Object.assign(wrapped, { code });
  return wrapped;
}
