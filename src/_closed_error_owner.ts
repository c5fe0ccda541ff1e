import type { CloseInfo } from "./close_info.ts";
import { ConnectionClosedError } from "./close_info.ts";

// Which socket raised each ConnectionClosedError, so that the server can
// tell a handler ended by its own socket's close from one that awaited a
// send to another socket: kept on the error itself, under a symbol no one
// else has. Not a WeakMap: one that lives as long as the server, keyed by
// errors that die young, keeps their sockets alive through V8's scavenges
// (see SlotList).
const OWNER = Symbol("owner");

interface OwnedError extends ConnectionClosedError {
  [OWNER]?: object;
}

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
  const error: OwnedError = new ConnectionClosedError(action, info);
  Object.defineProperty(error, OWNER, { value: socket });
  return error;
}

/** Whether `error` is a {@linkcode ConnectionClosedError} raised by `socket`. */
export function raisedBy(error: unknown, socket: object): boolean {
  return error instanceof ConnectionClosedError &&
    (error as OwnedError)[OWNER] === socket;
}

/**
 * What to log when a {@linkcode ConnectionClosedError} that another socket
 * raised ended a handler: an error that says so, and what to do, with the
 * original as its `cause`.
 *
 * @example
 * ```ts
 * import { closedError, foreignCloseError } from "./_closed_error_owner.ts";
 * import assert from "node:assert/strict";
 *
 * const other = { remoteAddr: { hostname: "192.0.2.7", port: 4000 } };
 * const error = closedError(other, "send");
 * const logged = foreignCloseError(error);
 * assert.equal(logged.cause, error);
 * assert.match(logged.message, /another socket \(peer 192\.0\.2\.7:4000\)/);
 * ```
 */
export function foreignCloseError(error: ConnectionClosedError): Error {
  const owner = (error as OwnedError)[OWNER] as
    | { remoteAddr?: Deno.NetAddr }
    | undefined;
  const peer = owner?.remoteAddr;
  return new Error(
    `The handler ended on a ConnectionClosedError from another socket${
      peer ? ` (peer ${peer.hostname}:${peer.port})` : ""
    }: "${error.message}"; its own socket closes with 1011. To reach other sockets without failing this one, use trySend() or publish(), or catch the error`,
    { cause: error },
  );
}
