import { checkOptionNames } from "../_unknown_options.ts";
import { describe } from "../protocol/_describe.ts";

/**
 * Every option of `connect()` (and so of `reconnecting()`, which passes
 * them on); another name is a mistake.
 */
export const CONNECT_OPTIONS: ReadonlySet<string> = new Set([
  "protocols",
  "headers",
  "signal",
  "caCerts",
  "perMessageDeflate",
  "streamMessages",
  "handshakeTimeout",
  "closeTimeout",
  "maxPayload",
  "maxHeadSize",
  "maxHeaders",
  "pingInterval",
  "pongTimeout",
  "idleTimeout",
  "messageTimeout",
  "sendHighWaterMark",
  "maxBackpressure",
  "backpressurePolicy",
  "receiveHighWaterMark",
  "maxQueuedMessages",
]);

/**
 * Checks what `connect()` or `reconnecting()` was given as options: an
 * object, with only `known` names, and a `signal` that is an AbortSignal.
 */
export function checkOptionsObject(
  action: "connect" | "reconnect",
  known: ReadonlySet<string>,
  options: unknown,
): void {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `Cannot ${action}: the options must be an object, got ${
        describe(options)
      }`,
    );
  }
  checkOptionNames(action, known, options);
  const signal = (options as { signal?: unknown }).signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(
      `Cannot ${action}: "signal" must be an AbortSignal, got ${
        describe(signal)
      }`,
    );
  }
}
