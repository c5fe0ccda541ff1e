import type { ServerLogEvent } from "./serve_options.ts";

/**
 * The default logger: the errors that are bugs or broken infrastructure on
 * the server's side, and the memory budget running out, go to
 * `console.error`; the rest (peers that misbehave, the traffic) nowhere.
 */
export function printErrors(): (event: ServerLogEvent) => void {
  // pubsub-error and accept-error repeat while a broker is down or file
  // descriptors run out, over-budget while the server is overloaded: one
  // line, then at most one every ten seconds.
  const lastPrinted = new Map<string, { at: number; suppressed: number }>();
  const throttled = (type: string, ...details: unknown[]) => {
    const now = Date.now();
    const last = lastPrinted.get(type);
    if (last !== undefined && now - last.at < 10_000) {
      last.suppressed++;
      return;
    }
    const more = last?.suppressed ? ` (${last.suppressed} more since)` : "";
    lastPrinted.set(type, { at: now, suppressed: 0 });
    console.error(`duplex: ${type}${more}:`, ...details);
  };
  return (event) => {
    if (event.type === "handler-error" || event.type === "internal-error") {
      printValue(`duplex: ${event.type}:`, event.error);
    } else if (event.type === "pubsub-error" || event.type === "accept-error") {
      throttled(event.type, event.error);
    } else if (event.type === "over-budget") {
      const { hostname, port } = event.remoteAddr;
      throttled(
        event.type,
        `closed ${hostname}:${port} with 1013: it held ${event.held} of the ${event.total} bytes all connections held (maxBufferedBytes)`,
      );
    } else if (event.type === "shutdown-timeout") {
      console.error(
        `duplex: shutdown-timeout: ${event.pending} handler(s) had not returned`,
      );
    }
  };
}

/**
 * `console.error(prefix, value)`, or, for a value that cannot be shown (a
 * revoked Proxy, say), a line that says so: printing an error never throws.
 */
export function printValue(prefix: string, value: unknown): void {
  try {
    console.error(prefix, value);
  } catch (error) {
    let why: string;
    try {
      why = String(error);
    } catch {
      why = "unknown";
    }
    console.error(`${prefix} a value that cannot be shown (${why})`);
  }
}
