import assert from "node:assert/strict";
import { describeConnectError } from "../../src/cli/_connect.ts";

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
