// `duplex serve`'s flags for serve()'s limits, access options and metrics:
// each drives the real CLI (a child process) and shows the limit on a real
// connection; bad values are usage errors naming the flag.
import assert from "node:assert/strict";
import { SERVE_HELP } from "../../src/cli/serve.ts";
import { SERVE_OPTION_FLAGS } from "../../src/cli/_serve_flags.ts";
import {
  parseBytes,
  parseCount,
  parseMilliseconds,
} from "../../src/cli/_args.ts";
import { type CliProcess, deadline, runCli, spawnCli } from "./_helpers.ts";
import { NpmClient, npmRejection } from "../server/_helpers.ts";

const LISTENING = /^Listening on ws:\/\/127\.0\.0\.1:(\d+) \((.*)\)$/m;

/** `duplex serve ARGS` on a free loopback port, once it listens. */
async function startServe(
  args: string[],
): Promise<{ cli: CliProcess; url: string; http: string; mode: string }> {
  const cli = spawnCli([
    "serve",
    "--port",
    "0",
    "--hostname",
    "127.0.0.1",
    ...args,
  ]);
  try {
    const [, port, mode] = await cli.waitFor(LISTENING);
    return {
      cli,
      url: `ws://127.0.0.1:${port}/`,
      http: `http://127.0.0.1:${port}`,
      mode,
    };
  } catch (error) {
    await cli[Symbol.asyncDispose]();
    throw error;
  }
}

for (const [value, limit] of [["100", 100], ["1KiB", 1024]] as const) {
  Deno.test(
    `duplex serve --max-payload ${value}: a ${limit}-byte message is echoed, a ${
      limit + 1
    }-byte one closes with 1009`,
    async () => {
      const { cli, url } = await startServe(["--max-payload", value]);
      await using _cli = cli;
      await using client = await NpmClient.connect(url);
      const largest = new Uint8Array(limit).fill(7);
      assert.deepEqual(await client.roundTrip(largest), largest);
      client.send(new Uint8Array(limit + 1));
      const close = await deadline(client.closed, 5_000, "the 1009 close");
      assert.equal(close.code, 1009);
    },
  );
}

Deno.test("duplex serve --max-connections 1: the second handshake gets 503", async () => {
  const { cli, url } = await startServe(["--max-connections", "1"]);
  await using _cli = cli;
  await using first = await NpmClient.connect(url);
  const rejection = await npmRejection(url);
  assert.equal(rejection.status, 503);
  assert.equal(await first.roundTrip("still served"), "still served");
});

Deno.test("duplex serve --max-connections-per-address 1: a second connection from the same address gets 429", async () => {
  const { cli, url } = await startServe([
    "--max-connections-per-address",
    "1",
  ]);
  await using _cli = cli;
  await using _first = await NpmClient.connect(url);
  const rejection = await npmRejection(url);
  assert.equal(rejection.status, 429);
  assert.equal(rejection.headers["retry-after"], "1");
});

Deno.test("duplex serve --max-buffered-bytes 64KiB: a message trickled in past the budget closes its connection with 1013, logged", async () => {
  const { cli, url } = await startServe(["--max-buffered-bytes", "64KiB"]);
  await using _cli = cli;
  await using client = await NpmClient.connect(url);
  // A message well under the budget is served.
  const small = "s".repeat(16 * 1024);
  assert.equal(await client.roundTrip(small), small);
  // Fragments of a message that never ends, far under --max-payload (16 MiB
  // by default) but over the budget after five of them.
  const fragment = new Uint8Array(16 * 1024);
  for (let i = 0; i < 8; i++) client.ws.send(fragment, { fin: false });
  const close = await deadline(client.closed, 5_000, "the 1013 close");
  assert.equal(close.code, 1013);
  await cli.waitFor(/with 1013: it held \d+ of the \d+ bytes/, "stderr");
});

Deno.test("duplex serve --max-buffered-bytes Infinity (the default) sets no budget: the same trickle is not closed", async () => {
  const { cli, url } = await startServe(["--max-buffered-bytes", "Infinity"]);
  await using _cli = cli;
  await using client = await NpmClient.connect(url);
  const fragment = new Uint8Array(16 * 1024);
  for (let i = 0; i < 8; i++) client.ws.send(fragment, { fin: false });
  client.ws.send(fragment, { fin: true });
  const echoed = await client.next() as Uint8Array;
  assert.equal(echoed.length, 9 * 16 * 1024);
});

Deno.test("duplex serve --idle-timeout 200: a connection without messages is closed with 1001 idle timeout", async () => {
  const { cli, url } = await startServe([
    "--idle-timeout",
    "200",
    "--quiet",
  ]);
  await using _cli = cli;
  await using client = await NpmClient.connect(url);
  const close = await deadline(client.closed, 5_000, "the idle close");
  assert.deepEqual(close, { code: 1001, reason: "idle timeout" });
});

Deno.test("duplex serve --message-timeout 0.2s: a message that never ends fails with 1008 MESSAGE_TIMEOUT", async () => {
  const { cli, url } = await startServe(["--message-timeout", "0.2s"]);
  await using _cli = cli;
  await using client = await NpmClient.connect(url);
  // The first fragment of a message whose last never comes.
  client.ws.send("first ", { fin: false });
  const close = await deadline(client.closed, 5_000, "the 1008 close");
  assert.deepEqual(close, { code: 1008, reason: "MESSAGE_TIMEOUT" });
});

Deno.test("duplex serve --ping-interval 100ms: an idle client is pinged", async () => {
  const { cli, url } = await startServe(["--ping-interval", "100ms"]);
  await using _cli = cli;
  await using client = await NpmClient.connect(url);
  const ping = new Promise((resolve) => client.ws.once("ping", resolve));
  await deadline(ping, 5_000, "a keepalive ping");
  // npm:ws answered it: the connection is still served.
  assert.equal(await client.roundTrip("after the ping"), "after the ping");
});

Deno.test("duplex serve --origin (repeated): pages of other origins get 403; the origins given and clients without Origin are accepted", async () => {
  const { cli, url } = await startServe([
    "--origin",
    "https://good.example",
    "--origin",
    "https://other.example",
  ]);
  await using _cli = cli;
  const rejection = await npmRejection(url, { origin: "https://evil.example" });
  assert.equal(rejection.status, 403);
  for (const origin of ["https://good.example", "https://other.example"]) {
    await using client = await NpmClient.connect(url, { origin });
    assert.equal(await client.roundTrip(origin), origin);
  }
  await using noOrigin = await NpmClient.connect(url);
  assert.equal(await noOrigin.roundTrip("no origin"), "no origin");
  await cli.waitFor(/^reject 127\.0\.0\.1:\d+ 403: /m, "stderr");
});

Deno.test("duplex serve --protocol (repeated): the server's first protocol the client offers is chosen", async () => {
  const { cli, url } = await startServe([
    "--protocol",
    "chat.v2",
    "--protocol",
    "chat.v1",
  ]);
  await using _cli = cli;
  await using both = await NpmClient.connectWith(url, ["chat.v1", "chat.v2"]);
  assert.equal(both.ws.protocol, "chat.v2");
  await using old = await NpmClient.connectWith(url, ["chat.v1"]);
  assert.equal(old.ws.protocol, "chat.v1");
  await cli.waitFor(/^open .* \(chat\.v1\)$/m, "stderr");
});

Deno.test("duplex serve --deflate: an npm:ws client negotiates permessage-deflate, which it does not without the flag", async () => {
  for (const deflate of [false, true]) {
    const { cli, url } = await startServe(deflate ? ["--deflate"] : []);
    await using _cli = cli;
    await using client = await NpmClient.connect(url, {
      perMessageDeflate: true,
    });
    if (deflate) assert.match(client.ws.extensions, /^permessage-deflate\b/);
    else assert.equal(client.ws.extensions, "");
    const text = "compress me ".repeat(100);
    assert.equal(await client.roundTrip(text), text);
  }
});

Deno.test("duplex serve --metrics /metrics serves server.metrics() in the Prometheus text format; other plain HTTP requests get 404", async () => {
  const { cli, url, http, mode } = await startServe(["--metrics", "/metrics"]);
  await using _cli = cli;
  assert.equal(mode, `echo, metrics at ${http}/metrics`);
  await using client = await NpmClient.connect(url);
  assert.equal(await client.roundTrip("counted"), "counted");
  const response = await fetch(`${http}/metrics`);
  assert.equal(response.status, 200);
  assert.equal(
    response.headers.get("content-type"),
    "text/plain; version=0.0.4; charset=utf-8",
  );
  const text = await response.text();
  assert.match(text, /^# TYPE duplex_connections_open gauge$/m);
  assert.match(text, /^duplex_connections_open 1$/m);
  assert.match(text, /^duplex_messages_received_total 1$/m);
  const other = await fetch(`${http}/`);
  assert.equal(other.status, 404);
  await other.body?.cancel();
  const post = await fetch(`${http}/metrics`, { method: "POST", body: "x" });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET, HEAD");
  await post.body?.cancel();
});

Deno.test("duplex serve --metrics with --static: the metrics path first, files for the rest", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/index.html`, "<h1>duplex</h1>");
    await Deno.writeTextFile(`${dir}/metrics`, "a file under the path");
    const { cli, http, mode } = await startServe([
      "--static",
      dir,
      "--metrics",
      "/metrics",
    ]);
    await using _cli = cli;
    assert.equal(
      mode,
      `echo, static files from ${dir} at ${http}/, metrics at ${http}/metrics`,
    );
    const metrics = await fetch(`${http}/metrics`);
    assert.match(await metrics.text(), /^duplex_connections_open 0$/m);
    const page = await fetch(`${http}/`);
    assert.equal(await page.text(), "<h1>duplex</h1>");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("duplex serve: a bad value for a limit flag exits with 2 and a message naming the flag, from serve()'s own checks", async () => {
  const cases: [string[], string][] = [
    [
      ["--max-payload", "-1"],
      "--max-payload must be a positive integer, got -1",
    ],
    [["--max-payload", "0"], "--max-payload must be a positive integer, got 0"],
    [
      ["--max-payload", "0.1K"],
      '--max-payload must be a positive integer, got 102.4 (from "0.1K")',
    ],
    [
      ["--max-payload", "lots"],
      '--max-payload must be a number of bytes such as 100, 64KiB or 1MiB, got "lots"',
    ],
    [
      ["--max-connections", "1.5"],
      "--max-connections must be a positive integer, got 1.5",
    ],
    [
      ["--max-connections", "Infinity"],
      "--max-connections must be a positive integer, got Infinity",
    ],
    [
      ["--max-connections-per-address", "0"],
      "--max-connections-per-address must be a positive integer or Infinity, got 0",
    ],
    [
      ["--max-buffered-bytes", "0"],
      "--max-buffered-bytes must be a positive integer or Infinity, got 0",
    ],
    [
      ["--max-buffered-bytes", "lots"],
      '--max-buffered-bytes must be a number of bytes such as 100, 64KiB or 1MiB, got "lots"',
    ],
    [
      ["--max-payload", "Infinity"],
      "--max-payload must be a positive integer, got Infinity",
    ],
    [
      ["--idle-timeout", "-5"],
      "--idle-timeout must be a non-negative integer, got -5",
    ],
    [
      ["--idle-timeout", "9999999999"],
      "--idle-timeout must be at most 2147483647 ms, got 9999999999",
    ],
    [
      ["--message-timeout", "soon"],
      '--message-timeout must be milliseconds such as 500, or a duration such as 30s or 5m, got "soon"',
    ],
    [
      ["--message-timeout", "0.5ms"],
      '--message-timeout must be a non-negative integer, got 0.5 (from "0.5ms")',
    ],
    [
      ["--ping-interval", "-1"],
      "--ping-interval must be a non-negative integer, got -1",
    ],
    [
      ["--origin", "https://example.com/"],
      '--origin values must be origins as browsers send them (scheme://host[:port], no path), got "https://example.com/": use "https://example.com"',
    ],
    [
      ["--protocol", "a b"],
      '--protocol must hold distinct subprotocol names (HTTP tokens: no spaces, commas or quotes), got "a b"',
    ],
    [
      ["--protocol", "chat", "--protocol", "chat"],
      '--protocol must hold distinct subprotocol names (HTTP tokens: no spaces, commas or quotes), got "chat" twice',
    ],
    [
      ["--metrics", "metrics"],
      '--metrics must be a URL path such as /metrics, got "metrics"',
    ],
    [
      ["--metrics", "/metrics?x"],
      '--metrics must be a URL path such as /metrics, got "/metrics?x" (did you mean "/metrics"?)',
    ],
  ];
  await Promise.all(cases.map(async ([args, message]) => {
    const { code, stdout, stderr } = await runCli([
      "serve",
      "--port",
      "0",
      "--hostname",
      "127.0.0.1",
      ...args,
    ]);
    assert.equal(code, 2, `${args.join(" ")}: ${stderr}`);
    assert.equal(
      stderr,
      `duplex serve: ${message}\nRun "duplex serve --help" for usage.\n`,
    );
    assert.equal(stdout, "", "nothing listened");
  }));
});

Deno.test("duplex serve's value parsers read numbers and units exactly and leave ranges to serve()", () => {
  assert.equal(parseMilliseconds("serve", "idle-timeout", "1.1s"), 1100);
  assert.equal(parseMilliseconds("serve", "idle-timeout", "5m"), 300_000);
  assert.equal(parseMilliseconds("serve", "idle-timeout", "250"), 250);
  assert.equal(parseBytes("serve", "max-payload", "1.5MiB"), 1_572_864);
  assert.equal(parseBytes("serve", "max-payload", "64k"), 65_536);
  assert.equal(parseBytes("serve", "max-payload", "-1"), -1);
  assert.equal(parseBytes("serve", "max-buffered-bytes", "2GiB"), 2 ** 31);
  assert.equal(
    parseBytes("serve", "max-buffered-bytes", "Infinity"),
    Infinity,
  );
  assert.equal(parseCount("serve", "max-connections", "-3"), -3);
  assert.equal(parseCount("serve", "max-connections", "infinity"), Infinity);
});

Deno.test("duplex serve --help describes every flag", () => {
  for (const flag of Object.keys(SERVE_OPTION_FLAGS)) {
    assert.match(SERVE_HELP, new RegExp(`^ {2}--${flag}\\b`, "m"), flag);
  }
  assert.match(SERVE_HELP, /^ {2}--metrics PATH/m);
});
