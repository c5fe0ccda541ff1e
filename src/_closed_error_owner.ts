import type { CloseInfo } from "./close_info.ts";
import { ConnectionClosedError } from "./close_info.ts";

// Which socket raised each ConnectionClosedError, so that the server can
// tell a handler ended by its own socket's close from one that awaited a
// send to another socket.
const owners = new WeakMap<ConnectionClosedError, object>();

/**
 * Creates a {@linkcode ConnectionClosedError} raised by `socket`.
 *
 * @example
 * ```ts
 * import { closedError, raisedBy } from "./_closed_error_owner.ts";
 * import assert from "node:assert/strict";
 *
 * const socket = {};
 * assert.ok(raisedBy(closedError(socket, "send"), socket));
 * assert.ok(!raisedBy(closedError({}, "send"), socket));
 * ```
 */
export function closedError(
  socket: object,
  action: string,
  info?: CloseInfo,
): ConnectionClosedError {
  const error = new ConnectionClosedError(action, info);
  owners.set(error, socket);
  return error;
}

/** Whether `error` is a {@linkcode ConnectionClosedError} raised by `socket`. */
export function raisedBy(error: unknown, socket: object): boolean {
  return error instanceof ConnectionClosedError &&
    owners.get(error) === socket;
}
