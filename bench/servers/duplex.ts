// Benchmark app on this project's server (same contract as the shared bench peers):
//   /echo       echo every message back with the same type
//   /broadcast  relay every message to all clients connected to /broadcast (sender included),
//               through the "all" topic: framed once, queued on each with trySend()
//   other paths are closed at once
// usage: deno run -A bench/servers/duplex.ts PORT
import { serve } from "../../mod.ts";

const port = Number(Deno.args[0] ?? 8080);

serve({
  port,
  hostname: "127.0.0.1",
  maxPayload: 64 * 1024 * 1024,
  // The other servers have no connection limit; the default 10,000 is
  // exactly idle_10k's count.
  maxConnections: 100_000,
  onListen: (addr) => console.log(`duplex listening on 127.0.0.1:${addr.port}`),
}, async (socket) => {
  const path = socket.url.pathname;
  if (path === "/echo") {
    for await (const message of socket) await socket.send(message);
  } else if (path === "/broadcast") {
    socket.subscribe("all");
    for await (const message of socket) socket.publish("all", message);
  } else {
    await socket.close(1008, "unknown path");
  }
});
