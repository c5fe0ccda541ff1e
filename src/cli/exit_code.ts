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

/**
 * One of the {@linkcode EXIT_CODE} values.
 *
 * @example A message for every exit code
 * ```ts
 * import { main, type ExitCode } from "@duplex/ws/cli";
 * import assert from "node:assert/strict";
 *
 * // A Record over ExitCode must name them all.
 * const meaning: Record<ExitCode, string> = {
 *   0: "done",
 *   1: "connection or protocol failure",
 *   2: "usage error",
 * };
 * assert.equal(meaning[await main(["send"])], "usage error"); // send needs a URL
 * ```
 */
export type ExitCode = typeof EXIT_CODE[keyof typeof EXIT_CODE];
