import { shown } from "./protocol/_describe.ts";

/** The longest timeout a timer takes, in milliseconds. */
export const MAX_TIMEOUT = 2 ** 31 - 1;

/** Which numeric options take what, beyond a positive integer. */
export interface NumericOptionRules {
  /** Options where 0 means "disabled". */
  mayBeZero: ReadonlySet<string>;
  /** Options in milliseconds: at most {@linkcode MAX_TIMEOUT}. */
  timeouts: ReadonlySet<string>;
  /** Options where `Infinity` means "no limit". */
  mayBeInfinite?: ReadonlySet<string>;
}

/**
 * Applies `defaults` to the numeric options of `serve()` or `connect()` and
 * checks them: a positive integer (or 0, or Infinity, where the rules say
 * so), a timeout no longer than a timer takes, and `maxBackpressure` at
 * least `sendHighWaterMark`.
 *
 * @param api What is being called, for the messages ("serve").
 * @param defaults Every numeric option with its default.
 * @param options The caller's options.
 * @param rules Which options take 0, Infinity, or are timeouts.
 * @returns Every numeric option.
 * @throws {TypeError} When one is not a number.
 * @throws {RangeError} When one is out of range.
 *
 * @example
 * ```ts
 * import { resolveNumericOptions } from "./_numeric_options.ts";
 * import assert from "node:assert/strict";
 *
 * const rules = { mayBeZero: new Set(["idleTimeout"]), timeouts: new Set(["idleTimeout"]) };
 * const limits = resolveNumericOptions("serve", { idleTimeout: 0 }, { idleTimeout: 500 }, rules);
 * assert.deepEqual(limits, { idleTimeout: 500 });
 * assert.throws(
 *   () => resolveNumericOptions("serve", { idleTimeout: 0 }, { idleTimeout: -1 }, rules),
 *   { message: 'Cannot serve: "idleTimeout" must be a non-negative integer, got -1' },
 * );
 * ```
 */
export function resolveNumericOptions<T extends Record<string, number>>(
  api: string,
  defaults: T,
  options: object,
  rules: NumericOptionRules,
): T {
  const limits: Record<string, number> = { ...defaults };
  const given = options as Record<string, unknown>;
  for (const name of Object.keys(defaults)) {
    const value = given[name];
    if (value === undefined) continue;
    const min = rules.mayBeZero.has(name) ? 0 : 1;
    const infinite = rules.mayBeInfinite?.has(name) ?? false;
    const expected = `a ${min === 0 ? "non-negative" : "positive"} integer${
      infinite ? " or Infinity" : ""
    }`;
    if (
      typeof value !== "number" ||
      (!(infinite && value === Infinity) &&
        (!Number.isSafeInteger(value) || value < min))
    ) {
      throw new (typeof value === "number" ? RangeError : TypeError)(
        `Cannot ${api}: "${name}" must be ${expected}, got ${shown(value)}`,
      );
    }
    // Timers take at most 2^31-1 ms; a longer one would fire at once.
    if (rules.timeouts.has(name) && value > MAX_TIMEOUT) {
      throw new RangeError(
        `Cannot ${api}: "${name}" must be at most ${MAX_TIMEOUT} ms, got ${value}`,
      );
    }
    limits[name] = value;
  }
  // Else send() would never wait before the backpressure policy applies.
  const { maxBackpressure, sendHighWaterMark } = limits;
  if (maxBackpressure < sendHighWaterMark) {
    throw new RangeError(
      `Cannot ${api}: "maxBackpressure" (${maxBackpressure}) must be at least "sendHighWaterMark" (${sendHighWaterMark}), or send() never waits before the backpressure policy applies; lower "sendHighWaterMark" too`,
    );
  }
  return limits as T;
}
