import type { ServeOptions } from "./serve_options.ts";
import { encodeLatin1 } from "../protocol/_bytes.ts";
import { STATUS_TEXT } from "./_status_text.ts";

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
  origins: (string | RegExp)[] | undefined,
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
  if (Array.isArray(option)) {
    return option.find((protocol) => offered.includes(protocol)) ?? "";
  }
  const chosen = option(offered, request()) ?? "";
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

/**
 * Encodes a rejection `Response` from an `onUpgrade` hook as HTTP/1.1 bytes,
 * asking the client to close.
 *
 * @param response The hook's response.
 * @returns The bytes to write.
 */
export async function encodeHookResponse(
  response: Response,
): Promise<Uint8Array> {
  const body = new Uint8Array(await response.arrayBuffer());
  const reason = response.statusText || STATUS_TEXT[response.status] || "";
  let head = `HTTP/1.1 ${response.status} ${reason}\r\n`;
  for (const [name, value] of response.headers) {
    if (name === "content-length" || name === "connection") continue;
    head += `${name}: ${value}\r\n`;
  }
  head += `content-length: ${body.length}\r\nconnection: close\r\n\r\n`;
  const headBytes = encodeLatin1(head);
  const bytes = new Uint8Array(headBytes.length + body.length);
  bytes.set(headBytes);
  bytes.set(body, headBytes.length);
  return bytes;
}
