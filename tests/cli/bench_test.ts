import assert from "node:assert/strict";
import { type CloseInfo, serve } from "../../mod.ts";
import type { BenchSummary } from "../../src/cli/bench.ts";
import { runCli, runPipeline, spawnCli } from "./_helpers.ts";
import { closePayload, frame, rawServer } from "../client/_helpers.ts";

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

Deno.test("duplex bench echoes messages of every small size, text and binary, 0 bytes included, without a false 'not an echo'", async () => {
  await using server = echoServer();
  const url = `ws://127.0.0.1:${server.addr.port}/`;
  for (const binary of [false, true]) {
    for (const size of ["0", "1", "7", "9"]) {
      const { code, stdout, stderr } = await runCli([
        "bench",
        url,
        "--size",
        size,
        "--in-flight",
        "3",
        "--duration",
        "200ms",
        "--json",
        ...(binary ? ["--binary"] : []),
      ]);
      assert.equal(code, 0, `${size} ${binary}: ${stderr}`);
      const summary: BenchSummary = JSON.parse(stdout);
      assert.deepEqual(summary.errors, []);
      assert.ok(summary.messages > 0);
    }
  }
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

/** `duplex serve --broadcast` on a free loopback port. */
const BROADCAST_SERVER = [
  "serve",
  "--port",
  "0",
  "--hostname",
  "127.0.0.1",
  "--broadcast",
];
const LISTENING = /^Listening on ws:\/\/127\.0\.0\.1:(\d+) /m;

const NOT_AN_ECHO =
  "the server sent a message that is not an echo of what was sent: is it an echo server?";

Deno.test("duplex bench says how many echoes are missing when the server stops echoing, not that a connection closed early", async () => {
  // Echoes the first message of each connection, then nothing.
  await using server = serve(
    { port: 0, hostname: "127.0.0.1" },
    async (socket) => {
      let first = true;
      for await (const message of socket) {
        if (first) await socket.send(message);
        first = false;
      }
    },
  );
  const { code, stderr } = await runCli([
    "bench",
    `ws://127.0.0.1:${server.addr.port}`,
    "--connections",
    "2",
    "--duration",
    "300ms",
  ]);
  assert.equal(code, 1);
  assert.equal(
    stderr,
    "duplex bench: 2 echoes still missing 5 s after the run ended: is it an echo server?\n",
  );
});

Deno.test("duplex bench gives up when nothing at all is echoed within 5 s of the start, without waiting for --duration", async () => {
  await using server = serve(
    { port: 0, hostname: "127.0.0.1" },
    async (socket) => {
      for await (const _ of socket) { /* never echoes */ }
    },
  );
  const { code, stderr } = await runCli([
    "bench",
    `ws://127.0.0.1:${server.addr.port}`,
    "--duration",
    "60s",
    "--json",
  ]);
  assert.equal(code, 1);
  assert.equal(
    stderr,
    "duplex bench: no echo arrived within 5 s of the start: is it an echo server?\n",
  );
});

Deno.test("duplex bench whose output is closed early (| head -1) stops, closes its connections with 1000 and exits 0, without a crash", async () => {
  const closes: Promise<CloseInfo>[] = [];
  await using server = serve(
    { port: 0, hostname: "127.0.0.1" },
    async (socket) => {
      closes.push(socket.closed);
      for await (const message of socket) await socket.send(message);
    },
  );
  const { code, stdout, stderr } = await runPipeline(
    `bench ws://127.0.0.1:${server.addr.port} --connections 2 --duration 60s | head -1`,
  );
  assert.equal(code, 0, stderr);
  assert.match(stdout, /^ +1s +[\d,]+ msg\/s/);
  assert.doesNotMatch(stderr, /Uncaught|BrokenPipe|error/);
  assert.equal(closes.length, 2);
  for (const info of await Promise.all(closes)) {
    assert.deepEqual(info, { code: 1000, reason: "", wasClean: true });
  }
});

Deno.test("duplex bench --json whose reader is gone before the summary exits 0 quietly", async () => {
  await using server = echoServer();
  const { code, stderr } = await runPipeline(
    `bench ws://127.0.0.1:${server.addr.port} --connections 1 --duration 300ms --json | true`,
  );
  assert.equal(code, 0, stderr);
  assert.equal(stderr, "");
});

// Sizes too small to carry a whole tag (0 carries none, 1-7 a part of it)
// and the default, which carries it.
const SIZES = ["0", "1", "7", "32"];

Deno.test("duplex bench against a broadcast server exits with 1 at every size, 0 bytes included: a reply that is another connection's message, or a reply with nothing in flight, is not an echo", async () => {
  // The CLI's own broadcast server, the one most likely to be benched by
  // mistake. Each message comes back once per connection: at sizes with a
  // whole tag the copy of another connection's message has the wrong one;
  // at any size replies outnumber the messages sent.
  await using server = spawnCli(BROADCAST_SERVER);
  const [, port] = await server.waitFor(LISTENING);
  await assertNotAnEchoAtEverySize(Number(port), ["--connections", "2"]);
});

Deno.test("duplex bench exits with 1 at every size when the server replies twice to each message", async () => {
  await using server = serve(
    { port: 0, hostname: "127.0.0.1" },
    async (socket) => {
      for await (const message of socket) {
        await socket.send(message);
        await socket.send(message);
      }
    },
  );
  await assertNotAnEchoAtEverySize(server.addr.port, [
    "--connections",
    "1",
    "--in-flight",
    "3",
  ]);
});

/**
 * Benches the server on `port` at every size, text and binary, and expects
 * each run to fail with NOT_AN_ECHO, on stdout's summary and on stderr.
 */
async function assertNotAnEchoAtEverySize(
  port: number,
  args: string[],
): Promise<void> {
  for (const kind of [[], ["--binary"]]) {
    for (const size of SIZES) {
      const { code, stdout, stderr } = await runCli([
        "bench",
        `ws://127.0.0.1:${port}`,
        ...args,
        "--size",
        size,
        "--duration",
        "300ms",
        "--json",
        ...kind,
      ]);
      assert.equal(code, 1, `${size} ${kind}: ${stdout}`);
      const summary: BenchSummary = JSON.parse(stdout);
      assert.deepEqual(summary.errors, [NOT_AN_ECHO], `${size} ${kind}`);
      assert.equal(stderr, `duplex bench: ${NOT_AN_ECHO}\n`);
    }
  }
}

Deno.test("duplex bench exits with 1 and says so when the server closes every connection during the run", async () => {
  await using server = serve(
    { port: 0, hostname: "127.0.0.1" },
    async (socket) => {
      for await (const message of socket) {
        await socket.send(message);
        await socket.close(4000, "enough");
      }
    },
  );
  const { code, stdout, stderr } = await runCli([
    "bench",
    `ws://127.0.0.1:${server.addr.port}`,
    "--connections",
    "2",
    "--duration",
    "5s",
    "--json",
  ]);
  assert.equal(code, 1, stdout);
  const summary: BenchSummary = JSON.parse(stdout);
  assert.equal(summary.errors.length, 1, stderr);
  assert.match(summary.errors[0], /^a connection closed early with .*4000/);
});

Deno.test("duplex bench exits with 1 when a connection's closing handshake at the end is not clean: answered with 1011, or with the TCP connection dropped", async () => {
  for (const answer of ["1011", "drop"]) {
    // An echo server that misbehaves only at the close.
    const server = rawServer(async (peer) => {
      await peer.accept();
      for (;;) {
        const { opcode, payload } = await peer.readFrame();
        if (opcode !== 0x8) {
          await peer.write(frame(opcode, payload));
        } else {
          if (answer === "1011") {
            await peer.write(frame(0x8, closePayload(1011, "oops")));
          }
          return;
        }
      }
    });
    try {
      const { code, stdout } = await runCli([
        "bench",
        server.url,
        "--connections",
        "2",
        "--duration",
        "300ms",
        "--json",
      ]);
      assert.equal(code, 1, `${answer}: ${stdout}`);
      const summary: BenchSummary = JSON.parse(stdout);
      assert.ok(summary.messages > 0, answer);
      assert.deepEqual(summary.errors, [
        answer === "1011"
          ? "a connection's closing handshake ended with 1011 (internal error): oops"
          : "a connection's closing handshake ended with 1006 (abnormal closure, no close frame) (no close frame answered ours)",
      ]);
    } finally {
      await server.close();
    }
  }
});

Deno.test("duplex bench --verify compares every byte of each echo: a server that changes the last one passes the tag check, not --verify", async () => {
  await using server = serve(
    { port: 0, hostname: "127.0.0.1" },
    async (socket) => {
      for await (const message of socket) {
        if (typeof message === "string") {
          await socket.send(`${message.slice(0, -1)}!`);
        } else {
          const changed = message.slice();
          changed[changed.length - 1] ^= 1;
          await socket.send(changed);
        }
      }
    },
  );
  await using honest = echoServer();
  for (const kind of [[], ["--binary"]]) {
    const args = [
      "--size",
      "100",
      "--connections",
      "2",
      "--in-flight",
      "4",
      "--duration",
      "300ms",
      "--json",
      ...kind,
    ];
    const url = (port: number) => `ws://127.0.0.1:${port}`;
    const lax = await runCli(["bench", url(server.addr.port), ...args]);
    assert.equal(lax.code, 0, lax.stdout);
    const strict = await runCli([
      "bench",
      url(server.addr.port),
      "--verify",
      ...args,
    ]);
    assert.equal(strict.code, 1, strict.stdout);
    const summary: BenchSummary = JSON.parse(strict.stdout);
    assert.deepEqual(summary.errors, [
      `the server echoed a message that differs from what was sent, first at ${
        kind.length ? "byte" : "character"
      } 99`,
    ]);
    // Messages in flight share one buffer: --verify compares copies, so an
    // honest echo server passes with several in flight.
    const ok = await runCli([
      "bench",
      url(honest.addr.port),
      "--verify",
      ...args,
    ]);
    assert.equal(ok.code, 0, ok.stdout);
    assert.ok((JSON.parse(ok.stdout) as BenchSummary).messages > 0);
  }
});

Deno.test("duplex bench names the flag in a bad --protocol or --header, as send and listen do", async () => {
  for (
    const [args, message] of [
      [["--protocol", "a b"], '--protocol must hold HTTP tokens, got "a b"'],
      [["--header", "Upgrade: foo"], "--header"],
    ]
  ) {
    const { code, stderr } = await runCli([
      "bench",
      "ws://127.0.0.1:9/",
      ...args,
    ]);
    assert.equal(code, 2, stderr);
    assert.ok(
      stderr.startsWith(`duplex bench: ${message}`),
      `${args}: ${stderr}`,
    );
  }
});
