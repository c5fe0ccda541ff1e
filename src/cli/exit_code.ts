/**
 * The exit codes of the `duplex` command line.
 *
 * @example Usage
 * ```ts
 * import { EXIT_CODE } from "@duplex/ws/cli";
 * import assert from "node:assert/strict";
 *
 * assert.equal(EXIT_CODE.Usage, 2);
 * ```
 */
export const EXIT_CODE = {
  /** Success: the command did what it was asked, and closed cleanly. */
  Ok: 0,
  /** A connection or protocol failure: refused, rejected, closed abnormally. */
  Failure: 1,
  /** A usage error: unknown option, missing or invalid argument. */
  Usage: 2,
} as const;

/** One of the {@linkcode EXIT_CODE} values. */
export type ExitCode = typeof EXIT_CODE[keyof typeof EXIT_CODE];
