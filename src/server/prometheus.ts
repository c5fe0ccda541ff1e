import type { ServerStats } from "./stats.ts";

/** A sample's labels, in order: `[name, value]` pairs. */
type Labels = [name: string, value: string][];
/** A sample: its name's suffix (`_bucket` of a histogram), labels, value. */
type Sample = [suffix: string, labels: Labels, value: number];

/**
 * Renders server stats in the Prometheus text exposition format (version
 * 0.0.4), metric names prefixed with `duplex_`. Every metric has its
 * `# HELP` and `# TYPE` lines before its samples; label values are escaped
 * (`\\`, `\"`, `\n`) as the format requires. Ping round trips are a
 * histogram, `duplex_ping_rtt_seconds` (buckets from 1 ms to 10 s), next to
 * the `duplex_ping_rtt_seconds_mean` and `_max` gauges.
 *
 * @param stats A snapshot from `server.stats()`.
 * @returns The metrics text, ending with a newline.
 *
 * @example Usage
 * ```ts
 * import { renderPrometheus, serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ port: 0 }, () => {});
 * const text = renderPrometheus(server.stats());
 * assert.match(text, /^duplex_connections_open 0$/m);
 * assert.match(text, /^# TYPE duplex_ping_rtt_seconds histogram$/m);
 * assert.match(text, /^duplex_ping_rtt_seconds_bucket\{le="\+Inf"\} 0$/m);
 * ```
 */
export function renderPrometheus(stats: ServerStats): string {
  const lines: string[] = [];
  const metric = (
    name: string,
    type: "gauge" | "counter" | "histogram",
    help: string,
    samples: Sample[],
  ) => {
    lines.push(
      `# HELP duplex_${name} ${escapeHelp(help)}`,
      `# TYPE duplex_${name} ${type}`,
    );
    for (const [suffix, labels, value] of samples) {
      lines.push(`duplex_${name}${suffix}${renderLabels(labels)} ${value}`);
    }
  };
  const single = (value: number): Sample[] => [["", [], value]];
  const labelled = (label: string, counts: Record<string, number>) =>
    Object.entries(counts).map((
      [key, value],
    ): Sample => ["", [[label, key]], value]);
  metric(
    "connections_open",
    "gauge",
    "Open WebSocket connections.",
    single(stats.openConnections),
  );
  metric(
    "transport_connections_open",
    "gauge",
    "Open TCP connections: WebSockets, handshakes under way, plain HTTP, refusals going out.",
    single(stats.transportConnections),
  );
  metric(
    "connections_total",
    "counter",
    "WebSocket connections accepted.",
    single(stats.totalConnections),
  );
  metric(
    "messages_received_total",
    "counter",
    "Messages received.",
    single(stats.messagesReceived),
  );
  metric(
    "messages_sent_total",
    "counter",
    "Messages sent.",
    single(stats.messagesSent),
  );
  metric(
    "bytes_received_total",
    "counter",
    "Bytes read from WebSockets.",
    single(stats.bytesReceived),
  );
  metric(
    "bytes_sent_total",
    "counter",
    "Bytes written to WebSockets.",
    single(stats.bytesSent),
  );
  metric(
    "backpressure_drops_total",
    "counter",
    "Messages dropped by the backpressure policy.",
    single(stats.backpressureDrops),
  );
  metric(
    "buffered_bytes",
    "gauge",
    "Bytes WebSocket connections hold: messages arriving or not taken, output not written.",
    single(stats.bufferedBytes),
  );
  metric(
    "budget_closes_total",
    "counter",
    "Connections closed with 1013 for maxBufferedBytes.",
    single(stats.budgetCloses),
  );
  metric(
    "closes_total",
    "counter",
    "Closed connections by close code.",
    labelled("code", stats.closeCodes),
  );
  metric(
    "handshake_rejections_total",
    "counter",
    "Rejected handshakes by HTTP status.",
    labelled("status", stats.handshakeRejections),
  );
  metric(
    "http_requests_total",
    "counter",
    "Plain HTTP requests answered, by response status; handshake rejections are apart.",
    labelled("code", stats.httpRequests),
  );
  metric(
    "http_handler_errors_total",
    "counter",
    "Plain HTTP requests whose fetch handler threw, returned no Response, or whose body failed.",
    single(stats.httpHandlerErrors),
  );
  metric(
    "timeouts_total",
    "counter",
    "Connections closed by a deadline, by phase (handshake, request, response, upgrade-hook, rejection; idle, message, pong, write).",
    labelled("phase", stats.timeouts),
  );
  metric(
    "connection_errors_total",
    "counter",
    "Connections that failed before their request head.",
    single(stats.connectionErrors),
  );
  metric(
    "pings_answered_total",
    "counter",
    "Pings answered by a pong.",
    single(stats.pingRtt.count),
  );
  metric(
    "ping_rtt_seconds_mean",
    "gauge",
    "Mean ping round trip.",
    single(stats.pingRtt.mean / 1000),
  );
  metric(
    "ping_rtt_seconds_max",
    "gauge",
    "Largest ping round trip.",
    single(stats.pingRtt.max / 1000),
  );
  const rtt = stats.pingRtt;
  metric("ping_rtt_seconds", "histogram", "Ping round trips.", [
    ...rtt.buckets.map((
      { le, count },
    ): Sample => ["_bucket", [["le", String(le / 1000)]], count]),
    ["_bucket", [["le", "+Inf"]], rtt.count],
    ["_sum", [], rtt.sum / 1000],
    ["_count", [], rtt.count],
  ]);
  return lines.join("\n") + "\n";
}

function renderLabels(labels: Labels): string {
  if (labels.length === 0) return "";
  const pairs = labels.map(([name, value]) =>
    `${name}="${escapeLabelValue(value)}"`
  );
  return `{${pairs.join(",")}}`;
}

// The text format: in label values, `\`, `"` and line feed are escaped; in
// HELP text, `\` and line feed.
function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}

function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => c === "\n" ? "\\n" : "\\\\");
}
