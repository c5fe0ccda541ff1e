/**
 * Serves the files of a folder over HTTP and a WebSocket echo on the same
 * port.
 *
 *     deno run -A examples/static.ts [--port N] [--root DIR]
 *
 * Open http://localhost:8765/ for a page that talks to ws://localhost:8765/echo.
 * The root defaults to examples/www next to this file.
 *
 * @module
 */
import { serve, serveStatic } from "../mod.ts";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    port: { type: "string", default: Deno.env.get("PORT") ?? "8765" },
    root: {
      type: "string",
      default: new URL("./www", import.meta.url).pathname,
    },
  },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(
    `--port must be an integer from 0 to 65535, got ${values.port}`,
  );
  Deno.exit(2);
}

const controller = new AbortController();
const server = serve({
  port,
  signal: controller.signal,
  fetch: serveStatic(values.root),
  onListen: ({ port }) =>
    console.log(`Serving ${values.root} on http://localhost:${port}/`),
}, async (socket) => {
  for await (const message of socket) await socket.send(message);
});

Deno.addSignalListener("SIGINT", () => controller.abort());
await server.finished;
