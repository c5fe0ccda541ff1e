import { describe } from "../protocol/_describe.ts";
import type { ServeOptions } from "./serve_options.ts";

/**
 * Whether a handshake's `Origin` passes the `origins` allowlist. A request
 * without `Origin` is not from a browser and passes.
 *
 * @param origin The request's `Origin` header.
 * @param origins The allowlist; `undefined` allows every origin.
 * @returns `true` when the origin is allowed.
 */
export function isOriginAllowed(
  origin: string | null,
  origins: readonly (string | RegExp)[] | undefined,
): boolean {
  if (origins === undefined || origin === null) return true;
  return origins.some((allowed) =>
    typeof allowed === "string" ? allowed === origin : allowed.test(origin)
  );
}

/**
 * Picks the subprotocol to answer with: the first of the server's protocols
 * that the client offered, or what the selector returns. Never a protocol
 * the client did not offer (RFC 6455 §4.2.2).
 *
 * @param option The server's `protocols` option.
 * @param offered The client's `Sec-WebSocket-Protocol` list.
 * @param request The handshake request, for a selector.
 * @returns The protocol, or `""` for none.
 * @throws {TypeError} When a selector returns a protocol not offered.
 */
export function selectProtocol(
  option: ServeOptions["protocols"],
  offered: string[],
  request: () => Request,
): string {
  if (option === undefined || offered.length === 0) return "";
  if (typeof option !== "function") {
    return option.find((protocol) => offered.includes(protocol)) ?? "";
  }
  const chosen = option(offered, request()) ?? "";
  if (typeof chosen !== "string") {
    // A JavaScript selector that is async, or returns a number.
    throw new TypeError(
      `Cannot accept: the protocols selector must return a string at once (not a Promise), got ${
        describe(chosen)
      }`,
    );
  }
  assertOffered(chosen, offered);
  return chosen;
}

/**
 * Throws unless `protocol` is empty or one the client offered.
 *
 * @param protocol The chosen protocol.
 * @param offered The client's offer.
 * @throws {TypeError} When the client did not offer it.
 */
export function assertOffered(protocol: string, offered: string[]): void {
  if (typeof protocol !== "string") {
    throw new TypeError(
      `Cannot accept: a subprotocol must be a string, got ${
        describe(protocol)
      }`,
    );
  }
  if (protocol !== "" && !offered.includes(protocol)) {
    throw new TypeError(
      `Cannot accept: subprotocol ${
        JSON.stringify(protocol)
      } was not offered by the client (offered: ${
        offered.join(", ") || "none"
      })`,
    );
  }
}
