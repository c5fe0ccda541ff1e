/**
 * The `duplex serve` flags that map one to one onto {@linkcode ServeOptions}
 * (limits, timeouts, origins, subprotocols, compression). Their values are
 * only parsed here (a number, a size, a duration); whether they are in range
 * is for `serve()` to say, and {@linkcode usageErrorFromServe} turns what it
 * says into a usage error that names the flag.
 *
 * @module
 */
import type { ParseArgsOptionsConfig } from "node:util";
import type { ServeOptions } from "../server/serve_options.ts";
import {
  parseBytes,
  parseCount,
  parseMilliseconds,
  UsageError,
} from "./_args.ts";

type Parser = (command: string, flag: string, text: string) => number;

/** The numeric flags: each one's ServeOptions name and value parser. */
const NUMERIC_FLAGS = {
  "max-payload": { option: "maxPayload", parse: parseBytes },
  "max-connections": { option: "maxConnections", parse: parseCount },
  "max-connections-per-address": {
    option: "maxConnectionsPerAddress",
    parse: parseCount,
  },
  "max-buffered-bytes": { option: "maxBufferedBytes", parse: parseBytes },
  "idle-timeout": { option: "idleTimeout", parse: parseMilliseconds },
  "message-timeout": { option: "messageTimeout", parse: parseMilliseconds },
  "ping-interval": { option: "pingInterval", parse: parseMilliseconds },
} as const satisfies Record<
  string,
  { option: keyof ServeOptions; parse: Parser }
>;

/** The flags that are lists, repeated to give several values. */
const LIST_FLAGS = {
  origin: "origins",
  protocol: "protocols",
} as const satisfies Record<string, keyof ServeOptions>;

/** The parseArgs configuration of the flags of this module. */
export const SERVE_OPTION_FLAGS = {
  "max-payload": { type: "string" },
  "max-connections": { type: "string" },
  "max-connections-per-address": { type: "string" },
  "max-buffered-bytes": { type: "string" },
  "idle-timeout": { type: "string" },
  "message-timeout": { type: "string" },
  "ping-interval": { type: "string" },
  origin: { type: "string", multiple: true },
  protocol: { type: "string", multiple: true },
  deflate: { type: "boolean" },
} as const satisfies ParseArgsOptionsConfig;

/** What parseArgs made of {@linkcode SERVE_OPTION_FLAGS}. */
export type ServeOptionFlagValues =
  & {
    [K in keyof typeof NUMERIC_FLAGS]?: string;
  }
  & {
    [K in keyof typeof LIST_FLAGS]?: string[];
  }
  & { deflate?: boolean };

/** The ServeOptions set by flags, and the flag (with its text) of each. */
export interface FlagOptions {
  /** The options, for serve(). */
  options: Partial<ServeOptions>;
  /** By option name: the flag that set it and the value as typed. */
  flags: Map<string, { flag: string; text: string }>;
}

/**
 * Turns the flags given into ServeOptions, checking only that numeric
 * values are numbers (with a unit where the flag takes one).
 *
 * @param values What parseArgs returned for the flags.
 * @returns The options, and which flag set each.
 * @throws {UsageError} For a value that is not a number.
 */
export function serveOptionsFromFlags(
  values: ServeOptionFlagValues,
): FlagOptions {
  const options: Record<string, unknown> = {};
  const flags = new Map<string, { flag: string; text: string }>();
  for (const [flag, { option, parse }] of Object.entries(NUMERIC_FLAGS)) {
    const text = values[flag as keyof typeof NUMERIC_FLAGS];
    if (text === undefined) continue;
    options[option] = parse("serve", flag, text);
    flags.set(option, { flag, text });
  }
  for (const [flag, option] of Object.entries(LIST_FLAGS)) {
    const list = values[flag as keyof typeof LIST_FLAGS];
    if (list === undefined) continue;
    options[option] = list;
    flags.set(option, { flag, text: list.join(" ") });
  }
  if (values.deflate) {
    options.perMessageDeflate = true;
    flags.set("perMessageDeflate", { flag: "deflate", text: "" });
  }
  return { options: options as Partial<ServeOptions>, flags };
}

/**
 * The usage error for an error `serve()` threw about an option a flag set:
 * `Cannot serve: "maxPayload" must be a positive integer, got -1` becomes
 * `--max-payload must be a positive integer, got -1`, with the value as
 * typed when it had a unit (`got 102.4 (from "0.1K")`).
 *
 * @param error What serve() threw.
 * @param flags Which flag set each option ({@linkcode serveOptionsFromFlags}).
 * @returns The usage error, or `undefined` when `error` is not about an
 * option a flag set.
 *
 * @example
 * ```ts
 * import { usageErrorFromServe } from "./_serve_flags.ts";
 * import assert from "node:assert/strict";
 *
 * const flags = new Map([["maxPayload", { flag: "max-payload", text: "-1" }]]);
 * const error = new RangeError('Cannot serve: "maxPayload" must be a positive integer, got -1');
 * assert.equal(
 *   usageErrorFromServe(error, flags)?.message,
 *   "--max-payload must be a positive integer, got -1",
 * );
 * ```
 */
export function usageErrorFromServe(
  error: unknown,
  flags: FlagOptions["flags"],
): UsageError | undefined {
  if (!(error instanceof TypeError || error instanceof RangeError)) return;
  const match = /^Cannot serve: "(\w+)"( entries)? (.*)$/s.exec(error.message);
  const given = match === null ? undefined : flags.get(match[1]);
  if (match === null || given === undefined) return;
  const [, , entries, rest] = match;
  let message = `--${given.flag}${entries ? " values" : ""} ${rest}`;
  // A number typed with a unit shows as serve() saw it: say what was typed.
  const shown = /, got (\S+)$/.exec(rest)?.[1];
  if (given.flag in NUMERIC_FLAGS && shown !== given.text.trim()) {
    message += ` (from ${JSON.stringify(given.text)})`;
  }
  return new UsageError("serve", message);
}
