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
import { parseArgs } from "node:util";
import {
  checkHostname,
  listeningAt,
  listenOrExit,
  portFrom,
} from "./_listen.ts";

/** Prints what was wrong with the command line and exits with 2. */
function usage(message: string): never {
  console.error(`${message}\nusage: echo.ts [--port N] [--hostname H]`);
  Deno.exit(2);
}

let values: { port?: string; hostname: string };
try {
  ({ values } = parseArgs({
    args: Deno.args,
    options: {
      port: { type: "string" },
      hostname: { type: "string", default: "0.0.0.0" },
    },
  }));
} catch (error) {
  usage((error as Error).message); // an unknown option, or one without value
}

const controller = new AbortController();
// Before the server says where it listens: a Ctrl-C may come at once.
Deno.addSignalListener("SIGINT", () => {
  if (controller.signal.aborted) Deno.exit(130); // a second Ctrl-C: now
  console.log("Shutting down...");
  controller.abort();
});
const server = listenOrExit(() =>
  serve({
    port: portFrom(values.port, usage),
    hostname: checkHostname(values.hostname, usage),
    signal: controller.signal,
    maxPayload: 64 * 1024 * 1024,
    onListen: (addr) =>
      console.log(`Echo server on ${listeningAt("ws", addr)}`),
  }, async (socket) => {
    for await (const message of socket) await socket.send(message);
  })
);

await server.finished;
console.log("Closed.");
Deno.exit(0);
