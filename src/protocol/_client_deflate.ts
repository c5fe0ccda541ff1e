/**
 * The client's half of the permessage-deflate negotiation (RFC 7692 §7.1):
 * the offer a client's settings make, and the checks of the server's
 * answer. Pure functions over header values, as the server's half in
 * `permessage_deflate.ts`.
 *
 * @module
 */
import {
  type ClientDeflateOptions,
  parseExtensions,
  type PerMessageDeflateParams,
  WINDOW_BITS,
} from "./permessage_deflate.ts";

/**
 * The `Sec-WebSocket-Extensions` value a client with `settings` sends.
 * `client_max_window_bits` is always offered, with the client's own limit
 * when it has one, so that the server may limit the client's window.
 *
 * @param settings Resolved settings (`resolveClientDeflateOptions()`).
 * @returns The offer, e.g. `permessage-deflate; client_max_window_bits`.
 *
 * @example The default offer is a browser's
 * ```ts
 * import { clientDeflateOffer } from "./_client_deflate.ts";
 * import { resolveClientDeflateOptions } from "./permessage_deflate.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(
 *   clientDeflateOffer(resolveClientDeflateOptions({})),
 *   "permessage-deflate; client_max_window_bits",
 * );
 * ```
 */
export function clientDeflateOffer(
  settings: Required<ClientDeflateOptions>,
): string {
  const offer = ["permessage-deflate"];
  if (settings.serverNoContextTakeover) {
    offer.push("server_no_context_takeover");
  }
  if (settings.clientNoContextTakeover) {
    offer.push("client_no_context_takeover");
  }
  if (settings.serverMaxWindowBits !== 0) {
    offer.push(`server_max_window_bits=${settings.serverMaxWindowBits}`);
  }
  offer.push(
    settings.clientMaxWindowBits === 0
      ? "client_max_window_bits"
      : `client_max_window_bits=${settings.clientMaxWindowBits}`,
  );
  return offer.join("; ");
}

/**
 * Checks a server's answer to {@linkcode clientDeflateOffer} and works out
 * what both sides do. "A client MUST _Fail the WebSocket Connection_ if
 * the peer server accepted an extension negotiation offer for this
 * extension with an extension negotiation response meeting any of the
 * following conditions": a parameter not defined for a response, an
 * invalid value, a parameter twice, a configuration the client does not
 * support (RFC 7692 §7.1). Here that means:
 *
 * - one extension, `permessage-deflate`;
 * - `server_no_context_takeover` and `client_no_context_takeover` without
 *   a value; the first present when the client asked for it (§7.1.1.1);
 * - `server_max_window_bits` with a value from 8 to 15, present and no
 *   larger than the client's limit when the client set one (§7.1.2.1); a
 *   server may send it unasked;
 * - `client_max_window_bits` with a value from 8 to 15 (§7.1.2.2; it is
 *   always offered). A value above the client's own limit is allowed: the
 *   client keeps to the smaller.
 *
 * @param value The response's `Sec-WebSocket-Extensions`.
 * @param settings The settings the offer was made with.
 * @returns The agreed parameters, or why the answer fails the connection.
 *
 * @example A server that keeps its context, answering the default offer
 * ```ts
 * import { acceptClientDeflate } from "./_client_deflate.ts";
 * import { resolveClientDeflateOptions } from "./permessage_deflate.ts";
 * import assert from "node:assert/strict";
 *
 * const answer = acceptClientDeflate(
 *   "permessage-deflate; client_max_window_bits=10",
 *   resolveClientDeflateOptions({}),
 * );
 * assert.ok("params" in answer);
 * assert.equal(answer.params.serverNoContextTakeover, false);
 * assert.equal(answer.params.clientMaxWindowBits, 10);
 * ```
 */
export function acceptClientDeflate(
  value: string,
  settings: Required<ClientDeflateOptions>,
): { params: PerMessageDeflateParams } | { reason: string } {
  const extensions = parseExtensions(value);
  if (extensions === null) {
    return { reason: "its syntax is not valid (RFC 6455 §9.1)" };
  }
  if (extensions.length !== 1 || extensions[0].name !== "permessage-deflate") {
    return {
      reason: "the client offered permessage-deflate once, and nothing else",
    };
  }
  const params = new Map<string, string | true>();
  for (const [name, param] of extensions[0].params) {
    if (params.has(name)) return { reason: `it has ${name} twice` };
    params.set(name, param);
  }
  for (const [name, param] of params) {
    switch (name) {
      case "server_no_context_takeover":
      case "client_no_context_takeover":
        if (param !== true) return { reason: `${name} may have no value` };
        break;
      case "server_max_window_bits":
      case "client_max_window_bits":
        if (param === true || !WINDOW_BITS.test(param)) {
          return {
            reason: `${name} must have a value from 8 to 15, got ${
              param === true ? "none" : JSON.stringify(param)
            } (RFC 7692 §7.1.2)`,
          };
        }
        break;
      default:
        return { reason: `${name} is not a permessage-deflate parameter` };
    }
  }
  const serverNoContextTakeover = params.has("server_no_context_takeover");
  if (settings.serverNoContextTakeover && !serverNoContextTakeover) {
    return {
      reason:
        "server_no_context_takeover is missing, though the client asked for it (RFC 7692 §7.1.1.1)",
    };
  }
  const serverBits = params.get("server_max_window_bits") as
    | string
    | undefined;
  if (settings.serverMaxWindowBits !== 0) {
    if (serverBits === undefined) {
      return {
        reason:
          `server_max_window_bits is missing, though the client limited the server's window to ${settings.serverMaxWindowBits} bits (RFC 7692 §7.1.2.1)`,
      };
    }
    if (Number(serverBits) > settings.serverMaxWindowBits) {
      return {
        reason:
          `server_max_window_bits=${serverBits} is larger than the ${settings.serverMaxWindowBits} bits the client offered (RFC 7692 §7.1.2.1)`,
      };
    }
  }
  const clientBits = params.get("client_max_window_bits") as
    | string
    | undefined;
  return {
    params: {
      serverNoContextTakeover,
      clientNoContextTakeover: settings.clientNoContextTakeover ||
        params.has("client_no_context_takeover"),
      serverMaxWindowBits: serverBits === undefined ? 15 : Number(serverBits),
      clientMaxWindowBits: Math.min(
        clientBits === undefined ? 15 : Number(clientBits),
        settings.clientMaxWindowBits || 15,
      ),
      level: settings.level,
      memLevel: settings.memLevel,
      threshold: settings.threshold,
    },
  };
}
