import assert from "node:assert/strict";
import { serve } from "../../mod.ts";
import type { BenchSummary } from "../../src/cli/bench.ts";
import { runCli, spawnCli } from "./_helpers.ts";

function echoServer() {
  return serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
    for await (const message of socket) await socket.send(message);
  });
}

Deno.test("duplex bench --json reports sane numbers against an echo server", async () => {
  await using server = echoServer();
  const url = `ws://127.0.0.1:${server.addr.port}/`;
  const { code, stdout, stderr } = await runCli([
    "bench",
    url,
    "--connections",
    "3",
    "--size",
    "1K",
    "--in-flight",
    "4",
    "--duration",
    "1s",
    "--binary",
    "--json",
  ]);
  assert.equal(code, 0, stderr);
  // stdout is exactly one JSON object (progress never goes to stdout here).
  const summary: BenchSummary = JSON.parse(stdout);
  assert.equal(stdout.trimEnd().split("\n").length, 1);
  assert.equal(summary.url, url);
  assert.equal(summary.connections, 3);
  assert.equal(summary.size, 1024);
  assert.equal(summary.binary, true);
  assert.equal(summary.inFlight, 4);
  assert.deepEqual(summary.errors, []);
  assert.ok(summary.messages > 0);
  assert.equal(summary.bytes, summary.messages * 1024);
  assert.ok(summary.seconds > 0);
  assert.ok(summary.messagesPerSecond > 0);
  assert.ok(summary.megabytesPerSecond > 0);
  const { p50, p90, p99, max, mean } = summary.latencyMs;
  assert.ok(
    0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= max,
    JSON.stringify(summary.latencyMs),
  );
  assert.ok(mean > 0 && mean <= max);
});

Deno.test("duplex bench prints progress lines and a report when stdout is not a terminal", async () => {
  await using server = echoServer();
  const { code, stdout, stderr } = await runCli([
    "bench",
    `ws://127.0.0.1:${server.addr.port}`,
    "--connections",
    "2",
    "--duration",
    "1100ms",
  ]);
  assert.equal(code, 0, stderr);
  // One plain progress line per second (no \r), then the report.
  assert.doesNotMatch(stdout, /\r/);
  assert.match(
    stdout,
    /^ +1s +[\d,]+ msg\/s +[\d,]+ echoed +p50 [\d.]+ ms +p99 [\d.]+ ms$/m,
  );
  assert.match(
    stdout,
    /^Target +ws:\/\/127\.0\.0\.1:\d+\/ \(2 connections, 32 B text, 1 in flight each\)$/m,
  );
  assert.match(stdout, /^Messages +[\d,]+ echoed, [\d,]+ msg\/s$/m);
  assert.match(stdout, /^Throughput +[\d.]+ MB\/s each way$/m);
  assert.match(
    stdout,
    /^Latency +p50 [\d.]+ ms +p90 [\d.]+ ms +p99 [\d.]+ ms +max [\d.]+ ms$/m,
  );
});

Deno.test("duplex bench exits with 1 when the server does not echo", async () => {
  await using server = serve(
    { port: 0, hostname: "127.0.0.1" },
    async (socket) => {
      for await (const _ of socket) await socket.send("nope");
    },
  );
  const { code, stdout, stderr } = await runCli([
    "bench",
    `ws://127.0.0.1:${server.addr.port}`,
    "--connections",
    "1",
    "--duration",
    "300ms",
    "--json",
  ]);
  assert.equal(code, 1);
  const summary: BenchSummary = JSON.parse(stdout);
  assert.match(summary.errors[0], /is it an echo server\?/);
  assert.match(
    stderr,
    /^duplex bench: the server answered a 32-byte text message with a text message of length 4: is it an echo server\?$/m,
  );
});

Deno.test("duplex bench stops early on SIGTERM and still reports", async () => {
  await using server = echoServer();
  await using cli = spawnCli([
    "bench",
    `ws://127.0.0.1:${server.addr.port}`,
    "--duration",
    "60s",
  ]);
  // The first progress line: the run is under way.
  await cli.waitFor(/^ +1s /m);
  cli.signal("SIGTERM");
  const { code, stdout, stderr } = await cli.finished();
  assert.equal(code, 0, stderr);
  assert.match(stdout, /^Messages +[\d,]+ echoed/m);
  const [, seconds] = stdout.match(/^Duration +([\d.]+) s$/m) ?? [];
  assert.ok(Number(seconds) < 30, `stopped early: ${seconds} s`);
});

Deno.test("duplex bench refuses a --size over 256M with a usage error, not a crash", async () => {
  const { code, stderr } = await runCli([
    "bench",
    "ws://127.0.0.1:9/",
    "--size",
    "1G",
  ]);
  assert.equal(code, 2, stderr);
  assert.match(stderr, /--size must be at most 256M/);
});
