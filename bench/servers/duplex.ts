// Benchmark app on this project's server (same contract as the shared bench peers):
//   /echo       echo every message back with the same type
//   /broadcast  relay every message to all clients connected to /broadcast (sender included)
//   other paths are closed at once
// usage: deno run -A bench/servers/duplex.ts PORT
import { serve, type Socket } from "../../mod.ts";

const port = Number(Deno.args[0] ?? 8080);
const subs = new Set<Socket>();
const ignore = () => {};

serve({
  port,
  hostname: "127.0.0.1",
  maxPayload: 64 * 1024 * 1024,
  onListen: (addr) => console.log(`duplex listening on 127.0.0.1:${addr.port}`),
}, async (socket) => {
  const path = socket.url.pathname;
  if (path === "/echo") {
    for await (const message of socket) await socket.send(message);
  } else if (path === "/broadcast") {
    subs.add(socket);
    try {
      for await (const message of socket) {
        for (const s of subs) s.send(message).catch(ignore);
      }
    } finally {
      subs.delete(socket);
    }
  } else {
    await socket.close(1008, "unknown path");
  }
});
