/**
 * The server side of the soak test, in a process of its own (so that client
 * and server do not share one open-file limit, and so that its RSS is its
 * own). An echo server on 127.0.0.1 with keepalive on; it prints one JSON
 * line when listening, then answers commands read line by line on stdin:
 *
 * - `sample`: connections, stats, memory, open file descriptors;
 * - `gc`: a full garbage collection (needs `--v8-flags=--expose-gc`), then
 *   a sample;
 * - `shutdown`: shuts the server down, then a sample, then exits.
 *
 * Environment: `SOAK_MAX_CONNECTIONS` (default 10000).
 *
 * @module
 */
import { serve } from "../../mod.ts";

const expected = Number(Deno.env.get("SOAK_MAX_CONNECTIONS") ?? 10_000);
const server = serve({
  hostname: "127.0.0.1",
  port: 0,
  maxConnections: expected + 100,
  // Keepalive runs on every socket during the soak.
  pingInterval: 5_000,
  pongTimeout: 10_000,
  handshakeTimeout: 30_000,
  onListen() {},
}, async (socket) => {
  for await (const message of socket) await socket.send(message);
});

function sample() {
  const memory = Deno.memoryUsage();
  return {
    connections: server.connections,
    stats: server.stats(),
    rss: memory.rss,
    heapUsed: memory.heapUsed,
    heapTotal: memory.heapTotal,
    external: memory.external,
    fds: [...Deno.readDirSync("/proc/self/fd")].length,
  };
}

function reply(value: unknown): void {
  console.log(JSON.stringify(value));
}

reply({ type: "listening", port: server.addr.port, pid: Deno.pid });

const gc = (globalThis as { gc?: () => void }).gc;
let pending = "";
const decoder = new TextDecoder();
for await (const chunk of Deno.stdin.readable) {
  pending += decoder.decode(chunk, { stream: true });
  let newline;
  while ((newline = pending.indexOf("\n")) !== -1) {
    const command = pending.slice(0, newline).trim();
    pending = pending.slice(newline + 1);
    if (command === "sample") reply(sample());
    else if (command === "gc") {
      // Twice, with a turn of the event loop between: finalizers run.
      gc?.();
      await new Promise((resolve) => setTimeout(resolve, 50));
      gc?.();
      reply(sample());
    } else if (command === "shutdown") {
      await server.shutdown();
      reply(sample());
      Deno.exit(0);
    } else reply({ error: `unknown command ${JSON.stringify(command)}` });
  }
}
await server.shutdown();
