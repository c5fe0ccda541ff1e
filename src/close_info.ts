import { CLOSE_CODE, type ProtocolError } from "./protocol/errors.ts";

/**
 * How a connection ended; what `socket.closed` resolves to.
 *
 * @example Telling a goodbye from a lost connection
 * ```ts
 * import { connect, type CloseInfo, serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const describe = ({ code, reason, wasClean, error }: CloseInfo) =>
 *   error ? `protocol error ${error.code}` : wasClean ? `closed ${code} ${reason}` : `lost (${code})`;
 * const closes: string[] = [];
 * await using server = serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
 *   closes.push(describe(await socket.closed));
 * });
 * const socket = await connect(`ws://127.0.0.1:${server.addr.port}`);
 * await socket.close(4000, "bye");
 * await server.shutdown(); // the handlers have ended
 * assert.deepEqual(closes, ["closed 4000 bye"]);
 * ```
 */
export interface CloseInfo {
  /**
   * The code from the peer's close frame; 1005 when it had none; the code we
   * sent when we failed the connection (1002, 1007, 1009; 1008 for
   * `messageTimeout`); 1008 or 1011 when the socket gave up on the peer
   * (backpressure, pong timeout; see
   * {@linkcode CLOSE_REASON}); 1006 when the transport ended without a
   * close frame.
   */
  code: number;
  /** The reason from the peer's close frame, or a description of the failure. */
  reason: string;
  /** Whether both close frames were exchanged before the transport closed. */
  wasClean: boolean;
  /**
   * The peer's protocol violation (or a message that took longer than
   * `messageTimeout`), when that is why the connection closed.
   */
  error?: ProtocolError;
}

/**
 * `send()` or `ping()` was called on a socket that has sent or received a
 * close frame; awaiting such a call rejects with this error.
 *
 * @example Usage
 * ```ts
 * import { ConnectionClosedError } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const error = new ConnectionClosedError("send", { code: 1000, reason: "", wasClean: true });
 * assert.equal(error.code, 1000);
 * ```
 */
export class ConnectionClosedError extends Error {
  /** The close code, when the connection has finished closing; else 1006. */
  readonly code: number;
  /** The close reason, if any. */
  readonly reason: string;

  /**
   * Creates the error.
   *
   * @param action What could not be done (`send`, `ping`).
   * @param info How the connection closed, when known.
   */
  constructor(action: string, info?: CloseInfo) {
    super(
      `Cannot ${action}: the WebSocket is closing or closed${
        info ? ` (code ${info.code})` : ""
      }`,
    );
    this.name = "ConnectionClosedError";
    this.code = info?.code ?? CLOSE_CODE.AbnormalClosure;
    this.reason = info?.reason ?? "";
  }
}

/**
 * Reasons for closes the socket decides itself (documented in the README).
 *
 * @example Telling a keepalive failure from other closes
 * ```ts
 * import { CLOSE_REASON, type CloseInfo } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const lostPeer = (info: CloseInfo) =>
 *   info.reason === CLOSE_REASON.PongTimeout ||
 *   info.reason === CLOSE_REASON.WriteTimeout;
 * assert.ok(lostPeer({ code: 1011, reason: "keepalive pong timeout", wasClean: false }));
 * ```
 */
export const CLOSE_REASON = {
  /** No pong arrived within `pongTimeout` (code 1011). */
  PongTimeout: "keepalive pong timeout",
  /**
   * Nothing we wrote was taken by the peer for `pingInterval` +
   * `pongTimeout` (code 1011): it stopped reading, though it may still send.
   */
  WriteTimeout: "peer stopped reading",
  /** No message either way within `idleTimeout` (code 1001). */
  IdleTimeout: "idle timeout",
  /** `server.shutdown()` closes every socket with this (code 1001). */
  ServerShutdown: "server shutting down",
  /** The peer did not read fast enough (code 1008). */
  Backpressure: "backpressure limit exceeded",
  /**
   * The handler took none of the peer's messages for `closeTimeout` while
   * they filled its queue (code 1008): rather than drop them unseen, the
   * socket closes, and the peer knows they were not handled.
   */
  NotReading: "messages not read",
  /**
   * The source of a message being sent with `sendStream()` failed after the
   * message had started (code 1011): the peer discards what it received.
   */
  StreamFailed: "message stream failed",
  /**
   * The server's sockets together held more than `maxBufferedBytes`, and
   * this one held the most (code 1013, try again later): what it held was
   * let go at once.
   */
  OverBudget: "server memory budget exceeded",
  /**
   * Processing the peer's input failed inside this module (code 1011): a
   * bug, reported to the server's logger as `internal-error`. The
   * transport closed at once.
   */
  InternalError: "internal error",
} as const;
