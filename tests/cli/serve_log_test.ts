import assert from "node:assert/strict";
import { logEvent } from "../../src/cli/serve.ts";

Deno.test("duplex serve's log prints the server's own troubles too, as its default logger does: accept and pub/sub errors once per 10 s, shutdown timeouts", () => {
  const printed: unknown[][] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => void printed.push(args);
  try {
    for (let i = 0; i < 3; i++) {
      logEvent({ type: "accept-error", error: new Error("EMFILE") });
      logEvent({ type: "pubsub-error", error: new Error("ECONNREFUSED") });
    }
    logEvent({ type: "shutdown-timeout", pending: 2 });
  } finally {
    console.error = original;
  }
  const lines = printed.map((args) => args.map(String).join(" "));
  assert.equal(lines.length, 3, lines.join("\n"));
  assert.match(lines[0], /accept-error: Error: EMFILE/);
  assert.match(lines[1], /pubsub-error: Error: ECONNREFUSED/);
  assert.match(lines[2], /shutdown-timeout: 2 handler\(s\)/);
});
