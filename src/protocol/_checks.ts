import { describe } from "./_describe.ts";

/**
 * Checks a size or count option: a positive safe integer.
 *
 * @example
 * ```ts
 * import { positiveInteger } from "./_checks.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(positiveInteger("maxPayload", 1024), 1024);
 * assert.throws(() => positiveInteger("maxPayload", -1), RangeError);
 * ```
 */
export function positiveInteger(name: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) {
    throw new RangeError(
      `"${name}" must be a positive integer, got ${
        typeof value === "number" ? value : describe(value)
      }`,
    );
  }
  return value;
}

/**
 * Checks which end of a connection a parser or connection is for.
 *
 * @example
 * ```ts
 * import { role } from "./_checks.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(role({ role: "client" }), "client");
 * assert.throws(() => role({ role: "Server" }), TypeError);
 * ```
 */
export function role(options: unknown): "server" | "client" {
  const value = (options as { role?: unknown } | undefined)?.role;
  if (value !== "server" && value !== "client") {
    throw new TypeError(
      `"role" must be "server" or "client", got ${describe(value)}`,
    );
  }
  return value;
}
