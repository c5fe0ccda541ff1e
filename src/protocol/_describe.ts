/**
 * A value as error messages show it: `string "yes"`, `number 42`, `Map`,
 * `a function`.
 *
 * @example Usage
 * ```ts
 * import { describe } from "./_describe.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(describe("yes"), 'string "yes"');
 * assert.equal(describe(42), "number 42");
 * assert.equal(describe(new Map()), "Map");
 * assert.equal(describe(null), "null");
 * ```
 */
export function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === "function") return "a function";
  if (typeof value === "object" && value !== null) {
    return value.constructor?.name ?? "an object";
  }
  return `${typeof value} ${
    typeof value === "string" ? JSON.stringify(value) : String(value)
  }`;
}

/**
 * A value for "got ..." in an error message about a number: a number as it
 * is (`-1`, `NaN`), anything else with its type (`string "8080"`).
 *
 * @example Usage
 * ```ts
 * import { shown } from "./_describe.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(shown(-1), "-1");
 * assert.equal(shown("8080"), 'string "8080"');
 * ```
 */
export function shown(value: unknown): string {
  return typeof value === "number" ? String(value) : describe(value);
}

// What JSON.stringify leaves as it is and a terminal or a log should not
// get raw: DEL, the C1 controls, format characters (bidi overrides), line
// and paragraph separators.
const LEFT_BY_JSON = /[\x7f-\x9f\p{Cf}\p{Zl}\p{Zp}]/gu;

/**
 * Text from a peer as a JSON string with every character that does not
 * print escaped: `"bye\nopen ..."`, `"\u001b[2J"`, `"a\u202eb"`.
 *
 * @example Usage
 * ```ts
 * import { quoted } from "./_describe.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(quoted("bye\n\x85\u202e"), '"bye\\n\\u0085\\u202e"');
 * ```
 */
export function quoted(text: string): string {
  return JSON.stringify(text).replace(
    LEFT_BY_JSON,
    (char) =>
      Array.from(
        { length: char.length }, // one UTF-16 code unit, or two
        (_, i) => `\\u${char.charCodeAt(i).toString(16).padStart(4, "0")}`,
      ).join(""),
  );
}
