import assert from "node:assert/strict";
import { renderPrometheus, type ServerStats } from "../../mod.ts";
import { parseExposition, valueOf } from "./_prometheus.ts";

/** A server's stats before anything happened. */
function zeroStats(): ServerStats {
  return {
    openConnections: 0,
    transportConnections: 0,
    totalConnections: 0,
    messagesReceived: 0,
    messagesSent: 0,
    bytesReceived: 0,
    bytesSent: 0,
    backpressureDrops: 0,
    closeCodes: {},
    handshakeRejections: {},
    timeouts: {},
    connectionErrors: 0,
    pingRtt: { count: 0, mean: 0, max: 0 },
  };
}

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
    timeouts: { 'a"b\\c\nd': 2, plain: 1 },
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
