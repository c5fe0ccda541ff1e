import { describe } from "./protocol/_describe.ts";

/**
 * Throws for an option name the function does not know: a misspelled limit
 * (`maxPayLoad`) would otherwise be ignored, leaving the default in force.
 * Names that differ only in case, or by a letter or two, are suggested;
 * `hints` says more about names known to be mistaken for options. Options
 * that are not an object of names (a number, an array, a `Map`) throw too:
 * they would ask for nothing.
 *
 * @example
 * ```ts
 * import { checkOptionNames } from "./_unknown_options.ts";
 * import assert from "node:assert/strict";
 *
 * const known = new Set(["maxPayload", "port"]);
 * checkOptionNames("serve", known, { port: 0 });
 * assert.throws(
 *   () => checkOptionNames("serve", known, { maxPayLoad: 1 }),
 *   { message: 'Cannot serve: unknown option "maxPayLoad" (did you mean "maxPayload"?)' },
 * );
 * ```
 */
export function checkOptionNames(
  action: string,
  known: ReadonlySet<string>,
  options: object,
  hints: Readonly<Record<string, string>> = {},
): void {
  if (!isOptionBag(options)) {
    throw new TypeError(
      `Cannot ${action}: the options must be an object of option names, got ${
        describe(options)
      }`,
    );
  }
  for (const [name, value] of Object.entries(options)) {
    // An option set to undefined asks for nothing (a spread config).
    if (known.has(name) || value === undefined) continue;
    const close = [...known].find((candidate) =>
      candidate.toLowerCase() === name.toLowerCase() ||
      distance(candidate, name) <= 2
    );
    const hint = Object.hasOwn(hints, name)
      ? `: ${hints[name]}`
      : close === undefined
      ? ""
      : ` (did you mean ${JSON.stringify(close)}?)`;
    throw new TypeError(
      `Cannot ${action}: unknown option ${JSON.stringify(name)}${hint}`,
    );
  }
}

/**
 * Whether `value` can hold options by name: an object, but not an array or a
 * `Map` or `Set` (whose entries are not properties).
 */
export function isOptionBag(value: unknown): value is object {
  return typeof value === "object" && value !== null &&
    !Array.isArray(value) && !(value instanceof Map) && !(value instanceof Set);
}

/** Levenshtein distance, for names of a few dozen characters. */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j] + 1,
        current[j - 1] + 1,
        previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length];
}
