import { connect, type ConnectOptions } from "../client/connect.ts";
import { ClientHandshakeError } from "../protocol/client_handshake.ts";
import type { Socket } from "../socket.ts";
import { UsageError } from "./_args.ts";

/**
 * Connects for `command`, ended by `stop` (see `onStopSignals()`) while the
 * handshake runs.
 *
 * @returns The socket, or the sentence that says why there is none.
 * @throws {UsageError} For a mistake in the command's options.
 */
export async function connectOrExplain(
  command: string,
  url: URL,
  options: ConnectOptions,
  stop: { signal: AbortSignal; remove(): void },
): Promise<Socket | string> {
  try {
    return await connect(url, { ...options, signal: stop.signal });
  } catch (error) {
    stop.remove();
    const usage = usageErrorFromConnect(command, error);
    if (usage !== undefined) throw usage;
    return stop.signal.aborted
      ? "stopped before the connection opened"
      : describeConnectError(url, error);
  }
}

/**
 * The usage error for what `connect()` threw about an option a flag set
 * (`Cannot connect: "protocols" must hold HTTP tokens, got "a b"` becomes
 * `--protocol must hold HTTP tokens, got "a b"`), or `undefined` when
 * `error` is not about an option.
 */
export function usageErrorFromConnect(
  command: string,
  error: unknown,
): UsageError | undefined {
  if (
    !(error instanceof TypeError ||
      (error instanceof RangeError &&
        error.message.startsWith("Cannot connect: ")))
  ) return undefined;
  // connect()'s words for its options, said with the flags' names.
  const message = error.message.replace(/^Cannot connect: /, "")
    .replace(/^"protocols"/, "--protocol")
    .replace(/^"headers"/, "--header")
    .replace(/^"maxPayload"/, "--max-payload")
    .replace(/^"maxFragments"/, "--max-fragments");
  return new UsageError(command, message);
}

/** A message for a failed `connect()`, with a hint where one helps. */
export function describeConnectError(url: URL, error: unknown): string {
  if (error instanceof ClientHandshakeError) return error.message;
  const message = error instanceof Error ? error.message : String(error);
  const prefix = `Cannot connect to ${url.href}: `;
  const text = message.startsWith("Cannot connect")
    ? message
    : prefix + message;
  if (error instanceof Deno.errors.ConnectionRefused) {
    return `${text}. Is the server running on that port?`;
  }
  if (url.protocol === "wss:" && /InvalidContentType/.test(message)) {
    return `${text}. The server answered without TLS: is it a ws:// server?`;
  }
  if (/CaUsedAsEndEntity/.test(message)) {
    return `${text}. The server's certificate is a CA certificate (CA:TRUE), which TLS refuses as a server's: give the server a certificate with CA:FALSE, signed by the CA you pass with --ca.`;
  }
  if (/certificate|UnknownIssuer/i.test(message)) {
    return `${text}. For a self-signed certificate, pass it with --ca FILE.`;
  }
  if (error instanceof Deno.errors.NotCapable) {
    return `${text}. Run with --allow-net (or -A).`;
  }
  return text;
}
