/**
 * An echo server: every message comes back with the same type.
 *
 *     deno run -A examples/echo.ts [--port N] [--hostname H]
 *
 * The port comes from `--port`, else the PORT environment variable, else
 * 8765; `--port 0` picks a free port. It listens on every interface (0.0.0.0)
 * unless `--hostname` says where: `--hostname 127.0.0.1` for this machine
 * only. Ctrl-C shuts down gracefully.
 *
 * @module
 */
import { serve } from "../mod.ts";
import { checkHostname, listeningAt } from "./_listen.ts";

/** `--name V` or `--name=V`; `fallback` when not given. */
function flag(args: string[], name: string, fallback: string) {
  const index = args.findIndex((arg) =>
    arg === `--${name}` || arg.startsWith(`--${name}=`)
  );
  return index === -1
    ? fallback
    : args[index].includes("=")
    ? args[index].slice(args[index].indexOf("=") + 1)
    : args[index + 1];
}

function portFromArgs(args: string[]): number {
  const text = flag(args, "port", Deno.env.get("PORT") ?? "8765");
  if (text === undefined || !/^\d{1,5}$/.test(text) || Number(text) > 65535) {
    console.error(
      `--port must be an integer from 0 to 65535, got ${JSON.stringify(text)}`,
    );
    Deno.exit(2);
  }
  return Number(text);
}

const controller = new AbortController();
const server = serve({
  port: portFromArgs(Deno.args),
  hostname: checkHostname(flag(Deno.args, "hostname", "0.0.0.0")),
  signal: controller.signal,
  maxPayload: 64 * 1024 * 1024,
  onListen: (addr) => console.log(`Echo server on ${listeningAt("ws", addr)}`),
}, async (socket) => {
  for await (const message of socket) await socket.send(message);
});

Deno.addSignalListener("SIGINT", () => {
  if (controller.signal.aborted) Deno.exit(130); // a second Ctrl-C: now
  console.log("Shutting down...");
  controller.abort();
});
await server.finished;
console.log("Closed.");
Deno.exit(0);
