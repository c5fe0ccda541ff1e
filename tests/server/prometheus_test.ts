import assert from "node:assert/strict";
import { renderPrometheus, type ServerStats } from "../../mod.ts";
import { parseExposition, valueOf, zeroStats } from "./_prometheus.ts";

Deno.test("renderPrometheus() gives every metric HELP and TYPE lines before its samples", () => {
  const families = parseExposition(renderPrometheus(zeroStats()));
  assert.equal(families.get("duplex_connections_open")?.type, "gauge");
  assert.equal(families.get("duplex_closes_total")?.type, "counter");
  assert.deepEqual(families.get("duplex_closes_total")?.samples, []);
  for (const [name, family] of families) {
    if (name.endsWith("_total")) assert.equal(family.type, "counter", name);
  }
});

Deno.test('renderPrometheus() escapes \\, " and line feeds in label values', () => {
  const text = renderPrometheus({
    ...zeroStats(),
    // (Phases no server has: the renderer escapes whatever it is given.)
    timeouts: { 'a"b\\c\nd': 2, plain: 1 } as unknown as ServerStats[
      "timeouts"
    ],
  });
  assert.match(
    text,
    /^duplex_timeouts_total\{phase="a\\"b\\\\c\\nd"\} 2$/m,
  );
  const families = parseExposition(text);
  assert.equal(
    valueOf(families, "duplex_timeouts_total", { phase: 'a"b\\c\nd' }),
    2,
  );
  assert.equal(
    valueOf(families, "duplex_timeouts_total", { phase: "plain" }),
    1,
  );
});

Deno.test("renderPrometheus() renders the ping round trips as a histogram in seconds: cumulative buckets, +Inf, _sum, _count", () => {
  const text = renderPrometheus({
    ...zeroStats(),
    pingRtt: {
      count: 5,
      mean: 1210.5 / 5,
      max: 1200,
      sum: 1210.5,
      buckets: [
        { le: 1, count: 1 },
        { le: 2.5, count: 3 },
        { le: 1000, count: 3 },
        { le: 10000, count: 4 },
      ],
    },
  });
  const histogram = text.split("\n").filter((line) =>
    line.includes("duplex_ping_rtt_seconds ") ||
    /^duplex_ping_rtt_seconds_(bucket|sum|count)/.test(line)
  );
  assert.deepEqual(histogram, [
    "# HELP duplex_ping_rtt_seconds Ping round trips.",
    "# TYPE duplex_ping_rtt_seconds histogram",
    'duplex_ping_rtt_seconds_bucket{le="0.001"} 1',
    'duplex_ping_rtt_seconds_bucket{le="0.0025"} 3',
    'duplex_ping_rtt_seconds_bucket{le="1"} 3',
    'duplex_ping_rtt_seconds_bucket{le="10"} 4',
    'duplex_ping_rtt_seconds_bucket{le="+Inf"} 5',
    "duplex_ping_rtt_seconds_sum 1.2105",
    "duplex_ping_rtt_seconds_count 5",
  ]);
  const families = parseExposition(text);
  assert.equal(families.get("duplex_ping_rtt_seconds")?.type, "histogram");
  // The summary gauges stay, for dashboards that use them.
  assert.equal(valueOf(families, "duplex_ping_rtt_seconds_max"), 1.2);
  assert.equal(valueOf(families, "duplex_pings_answered_total"), 5);
});

Deno.test("renderPrometheus() renders plain HTTP requests as duplex_http_requests_total{code} and handler errors as a counter", () => {
  const text = renderPrometheus({
    ...zeroStats(),
    httpRequests: { 200: 7, 404: 2, 500: 1 },
    httpHandlerErrors: 1,
  });
  assert.match(text, /^# TYPE duplex_http_requests_total counter$/m);
  assert.match(text, /^duplex_http_requests_total\{code="404"\} 2$/m);
  const families = parseExposition(text);
  assert.deepEqual(
    families.get("duplex_http_requests_total")?.samples.map((s) => [
      s.labels.code,
      s.value,
    ]),
    [["200", 7], ["404", 2], ["500", 1]],
  );
  assert.equal(valueOf(families, "duplex_http_handler_errors_total"), 1);
  assert.equal(
    families.get("duplex_http_handler_errors_total")?.type,
    "counter",
  );
});
