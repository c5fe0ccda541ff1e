/**
 * An echo server: every message comes back with the same type.
 *
 *     deno run -A examples/echo.ts [--port N]
 *
 * The port comes from `--port`, else the PORT environment variable, else
 * 8765; `--port 0` picks a free port. Ctrl-C shuts down gracefully.
 *
 * @module
 */
import { serve } from "../mod.ts";

function portFromArgs(args: string[]): number {
  const flag = args.findIndex((arg) =>
    arg === "--port" || arg.startsWith("--port=")
  );
  const text = flag === -1
    ? Deno.env.get("PORT") ?? "8765"
    : args[flag].includes("=")
    ? args[flag].split("=")[1]
    : args[flag + 1];
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
  signal: controller.signal,
  maxPayload: 64 * 1024 * 1024,
  onListen: ({ port }) => console.log(`Echo server on ws://localhost:${port}`),
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
