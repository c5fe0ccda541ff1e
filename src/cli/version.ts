import denoJson from "../../deno.json" with { type: "json" };

/**
 * The version of Duplex, read from `deno.json`.
 *
 * @example Usage
 * ```ts
 * import { VERSION } from "@duplex/ws/cli";
 * import assert from "node:assert/strict";
 *
 * assert.match(VERSION, /^\d+\.\d+\.\d+/);
 * ```
 */
export const VERSION: string = denoJson.version;
