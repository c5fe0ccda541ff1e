import assert from "node:assert/strict";
import { logEvent } from "../../src/cli/serve.ts";

Deno.test("duplex serve's log prints the server's own troubles too, as its default logger does: accept and pub/sub errors and memory budget closes once per 10 s, shutdown timeouts", () => {
  const printed: unknown[][] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => void printed.push(args);
  try {
    for (let i = 0; i < 3; i++) {
      logEvent({ type: "accept-error", error: new Error("EMFILE") });
      logEvent({ type: "pubsub-error", error: new Error("ECONNREFUSED") });
    }
    logEvent({ type: "shutdown-timeout", pending: 2 });
    for (let i = 0; i < 3; i++) {
      logEvent({
        type: "over-budget",
        url: "ws://127.0.0.1:8765/",
        remoteAddr: { transport: "tcp", hostname: "192.0.2.7", port: 5000 },
        held: 600,
        total: 1100,
      });
    }
  } finally {
    console.error = original;
  }
  const lines = printed.map((args) => args.map(String).join(" "));
  assert.equal(lines.length, 4, lines.join("\n"));
  assert.match(lines[0], /accept-error: Error: EMFILE/);
  assert.match(lines[1], /pubsub-error: Error: ECONNREFUSED/);
  assert.match(lines[2], /shutdown-timeout: 2 handler\(s\)/);
  assert.match(
    lines[3],
    /over-budget: closed 192\.0\.2\.7:5000 with 1013: it held 600 of the 1100 bytes/,
  );
});

Deno.test("duplex serve's log shows a close reason with control or format characters as a JSON string, on one line: a peer cannot forge log lines or send terminal escapes", () => {
  const printed: unknown[][] = [];
  const original = console.error;
  const originalWrite = Deno.stderr.writeSync;
  const decoder = new TextDecoder();
  Deno.stderr.writeSync = (bytes: Uint8Array) => {
    printed.push([decoder.decode(bytes)]);
    return bytes.length;
  };
  console.error = (...args: unknown[]) => void printed.push(args);
  const close = (reason: string) =>
    logEvent({
      type: "close",
      url: "ws://127.0.0.1:8765/",
      remoteAddr: { transport: "tcp", hostname: "192.0.2.7", port: 5000 },
      code: 1000,
      reason,
      wasClean: true,
    });
  try {
    close("bye\nopen   203.0.113.9:4444 ws://127.0.0.1:8765/admin");
    close("\x1b[2J\x1b]0;owned\x07");
    close("left\u202eright, del\x7f, c1\x85, tag\u{e0001}");
    close("à bientôt 👋");
    close('"bye\\nopen" (a quote first: as if escaped)');
  } finally {
    console.error = original;
    Deno.stderr.writeSync = originalWrite;
  }
  const text = printed.map((args) => args.map(String).join(" ")).join("");
  assert.equal(
    text,
    'close  192.0.2.7:5000 1000 "bye\\nopen   203.0.113.9:4444 ws://127.0.0.1:8765/admin"\n' +
      'close  192.0.2.7:5000 1000 "\\u001b[2J\\u001b]0;owned\\u0007"\n' +
      'close  192.0.2.7:5000 1000 "left\\u202eright, del\\u007f, c1\\u0085, tag\\udb40\\udc01"\n' +
      "close  192.0.2.7:5000 1000 à bientôt 👋\n" +
      'close  192.0.2.7:5000 1000 "\\"bye\\\\nopen\\" (a quote first: as if escaped)"\n',
  );
});
