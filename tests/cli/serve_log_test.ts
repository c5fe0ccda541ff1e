import assert from "node:assert/strict";
import { logEvent } from "../../src/cli/serve.ts";

Deno.test("duplex serve's log prints the server's own troubles too: accept, pub/sub and shutdown timeouts", () => {
  const lines: string[] = [];
  const original = Deno.stderr.writeSync;
  Deno.stderr.writeSync = (bytes: Uint8Array) => {
    lines.push(new TextDecoder().decode(bytes));
    return bytes.length;
  };
  try {
    // Repeats of the same trouble within 10 s are printed once.
    for (let i = 0; i < 3; i++) {
      logEvent({ type: "accept-error", error: new Error("EMFILE") });
      logEvent({ type: "pubsub-error", error: new Error("ECONNREFUSED") });
    }
    logEvent({ type: "shutdown-timeout", pending: 2 });
  } finally {
    Deno.stderr.writeSync = original;
  }
  assert.equal(lines.length, 3, lines.join("\n"));
  assert.match(lines[0], /accept-error: Error: EMFILE/);
  assert.match(lines[1], /pubsub-error: Error: ECONNREFUSED/);
  assert.match(lines[2], /2 connection\(s\) still busy/);
});
