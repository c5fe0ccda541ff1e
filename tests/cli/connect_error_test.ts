import assert from "node:assert/strict";
import { describeConnectError } from "../../src/cli/_connect.ts";
import { serve } from "../../mod.ts";
import { runCli } from "./_helpers.ts";

const url = new URL("wss://localhost:8443/");

Deno.test("describeConnectError adds the hint that fits the failure", () => {
  const hints: [Error, RegExp][] = [
    [new Deno.errors.ConnectionRefused("refused"), /Is the server running/],
    [
      new Error("invalid peer certificate: UnknownIssuer"),
      /pass it with --ca FILE/,
    ],
    [
      new Error("invalid peer certificate: Other(CaUsedAsEndEntity)"),
      /CA certificate \(CA:TRUE\).*CA:FALSE/,
    ],
    [new Deno.errors.NotCapable("net"), /--allow-net/],
  ];
  for (const [error, hint] of hints) {
    const text = describeConnectError(url, error);
    assert.ok(text.startsWith(`Cannot connect to ${url.href}: `), text);
    assert.match(text, hint);
  }
  // One hint each: a CA used as a server's certificate is not "pass --ca".
  assert.doesNotMatch(
    describeConnectError(url, new Error("Other(CaUsedAsEndEntity)")),
    /pass it with --ca/,
  );
});

Deno.test("duplex listen wss:// to a plain server fails at once, saying the server answered without TLS (the server answers the ClientHello with 400 rather than wait for handshakeTimeout)", async () => {
  const rejected: string[] = [];
  await using server = serve({
    port: 0,
    hostname: "127.0.0.1",
    handshakeTimeout: 60_000,
    logger: (event) => {
      if (event.type === "handshake-rejected") rejected.push(event.message);
    },
  }, () => {});
  const result = await runCli([
    "listen",
    `wss://127.0.0.1:${server.addr.port}/`,
  ]);
  assert.equal(result.code, 1);
  assert.match(
    result.stderr,
    /The server answered without TLS: is it a ws:\/\/ server\?/,
  );
  assert.deepEqual(rejected, [
    "Not an HTTP request but a TLS handshake: the client wants wss:// or https://, and this server is plain",
  ]);
});
