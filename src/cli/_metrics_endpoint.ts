/**
 * `duplex serve --metrics PATH`: the server's counters in the Prometheus
 * text format on one HTTP path, in front of `--static` (or of a 404).
 *
 * @module
 */
import type { FetchHandler } from "../server/http_exchange.ts";
import { UsageError } from "./_args.ts";

/** The Content-Type of the Prometheus text exposition format. */
const PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/**
 * The path of `--metrics`: it must be a URL path as a request carries it
 * (`/metrics`), or no request could ever reach it.
 *
 * @param text The flag's value.
 * @returns The path.
 * @throws {UsageError} When it is not such a path.
 */
export function parseMetricsPath(text: string): string {
  const url = URL.parse(text, "http://localhost");
  if (!text.startsWith("/") || url?.pathname !== text) {
    throw new UsageError(
      "serve",
      `--metrics must be a URL path such as /metrics, got ${
        JSON.stringify(text)
      }${
        url !== null && url.pathname !== text && text.startsWith("/")
          ? ` (did you mean ${JSON.stringify(url.pathname)}?)`
          : ""
      }`,
    );
  }
  return text;
}

/**
 * A fetch handler that answers `GET` and `HEAD` of `path` (whatever the
 * query) with `metrics()`, other methods there with 405, and passes any
 * other request on to `next` (404 without one).
 *
 * @param path The metrics path, such as `/metrics`.
 * @param metrics Renders the metrics (`server.metrics()`).
 * @param next The handler of the other paths (`--static`).
 * @returns The fetch handler.
 *
 * @example
 * ```ts
 * import { metricsEndpoint } from "./_metrics_endpoint.ts";
 * import assert from "node:assert/strict";
 *
 * const fetch = metricsEndpoint("/metrics", () => "duplex_connections_open 0\n");
 * const info = { remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 } } as const;
 * const response = await fetch(new Request("http://localhost/metrics"), info);
 * assert.equal(await response.text(), "duplex_connections_open 0\n");
 * const other = await fetch(new Request("http://localhost/"), info);
 * assert.equal(other.status, 404);
 * await other.body?.cancel();
 * ```
 */
export function metricsEndpoint(
  path: string,
  metrics: () => string,
  next?: FetchHandler,
): FetchHandler {
  return (request, info) => {
    if (new URL(request.url).pathname !== path) {
      return next?.(request, info) ??
        new Response("Not Found\n", {
          status: 404,
          headers: { "content-type": "text/plain; charset=utf-8" },
        });
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("Method Not Allowed: use GET\n", {
        status: 405,
        headers: {
          allow: "GET, HEAD",
          "content-type": "text/plain; charset=utf-8",
        },
      });
    }
    return new Response(metrics(), {
      headers: { "content-type": PROMETHEUS_TYPE, "cache-control": "no-store" },
    });
  };
}
