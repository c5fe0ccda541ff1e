import { checkOptionNames } from "../_unknown_options.ts";
import { resolveNumericOptions } from "../_numeric_options.ts";
import { describe } from "../protocol/_describe.ts";
import {
  DEFAULT_MAX_FRAGMENTS,
  DEFAULT_MAX_PAYLOAD,
} from "../protocol/connection.ts";
import {
  type ClientDeflateOptions,
  resolveClientDeflateOptions,
} from "../protocol/permessage_deflate.ts";
import type { ConnectOptions } from "./connect.ts";

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
  "maxFragments",
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

const DEFAULTS = {
  handshakeTimeout: 10_000,
  closeTimeout: 5_000,
  maxPayload: DEFAULT_MAX_PAYLOAD,
  maxFragments: DEFAULT_MAX_FRAGMENTS,
  pingInterval: 0,
  pongTimeout: 20_000,
  idleTimeout: 0,
  messageTimeout: 0,
  sendHighWaterMark: 1024 * 1024,
  // Unbounded: send() waits at sendHighWaterMark, nothing is dropped.
  maxBackpressure: Number.MAX_SAFE_INTEGER,
  receiveHighWaterMark: 1024 * 1024,
  maxQueuedMessages: 1024,
} as const;
type Limits = { -readonly [K in keyof typeof DEFAULTS]: number };
// Options where 0 means "off".
const MAY_BE_ZERO = new Set([
  "pingInterval",
  "pongTimeout",
  "idleTimeout",
  "messageTimeout",
]);
// Options in milliseconds.
const TIMEOUTS = new Set([
  "handshakeTimeout",
  "closeTimeout",
  "pingInterval",
  "pongTimeout",
  "idleTimeout",
  "messageTimeout",
]);
/**
 * Checks what `connect()` (or, for each attempt, `reconnecting()`) was
 * given; returns the limits, defaults applied, and the compression settings
 * when permessage-deflate is offered.
 */
export function checkConnectOptions(
  action: "connect" | "reconnect",
  options: ConnectOptions,
): { limits: Limits; deflate: boolean | ClientDeflateOptions | undefined } {
  checkOptionsObject(action, CONNECT_OPTIONS, options);
  if (
    options.streamMessages !== undefined &&
    typeof options.streamMessages !== "boolean"
  ) {
    throw new TypeError(
      `Cannot ${action}: "streamMessages" must be a boolean, got ${
        describe(options.streamMessages)
      }`,
    );
  }
  const perMessageDeflate: unknown = options.perMessageDeflate;
  if (
    perMessageDeflate !== undefined && typeof perMessageDeflate !== "boolean" &&
    (typeof perMessageDeflate !== "object" || perMessageDeflate === null)
  ) {
    throw new TypeError(
      `Cannot ${action}: "perMessageDeflate" must be a boolean or an object, got ${
        describe(perMessageDeflate)
      }`,
    );
  }
  // Its settings are checked now, before anything is sent.
  if (perMessageDeflate !== undefined && perMessageDeflate !== false) {
    resolveClientDeflateOptions(
      perMessageDeflate === true ? {} : perMessageDeflate,
    );
  }
  const deflate = perMessageDeflate as
    | boolean
    | ClientDeflateOptions
    | undefined;
  const caCerts: unknown = options.caCerts;
  if (
    caCerts !== undefined &&
    !(Array.isArray(caCerts) &&
      caCerts.every((pem) =>
        typeof pem === "string" && pem.includes("-----BEGIN CERTIFICATE-----")
      ))
  ) {
    throw new TypeError(
      `Cannot ${action}: "caCerts" must be an array of PEM certificates (the text, "-----BEGIN CERTIFICATE-----...", not file names), got ${
        Array.isArray(caCerts)
          ? "an array holding something else"
          : describe(caCerts)
      }`,
    );
  }
  const policy = options.backpressurePolicy;
  if (policy !== undefined && !["close", "drop", "wait"].includes(policy)) {
    const ErrorClass = typeof policy === "string" ? RangeError : TypeError;
    throw new ErrorClass(
      `Cannot ${action}: "backpressurePolicy" must be "close", "drop" or "wait", got ${
        describe(policy)
      }`,
    );
  }
  // The unbounded default would never reach the policy: a mistake.
  if (
    (policy === "close" || policy === "drop") &&
    options.maxBackpressure === undefined
  ) {
    throw new TypeError(
      `Cannot ${action}: "backpressurePolicy" ${
        JSON.stringify(policy)
      } applies at "maxBackpressure", which a client leaves unbounded by default: set "maxBackpressure" too`,
    );
  }
  return { limits: checkLimits(action, options), deflate };
}

function checkLimits(action: string, options: ConnectOptions): Limits {
  return resolveNumericOptions(action, { ...DEFAULTS }, options, {
    mayBeZero: MAY_BE_ZERO,
    timeouts: TIMEOUTS,
  });
}
