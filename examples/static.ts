/**
 * Serves the files of a folder over HTTP and a WebSocket echo on the same
 * port.
 *
 *     deno run -A examples/static.ts [--port N] [--hostname H] [--root DIR]
 *
 * Open http://localhost:8765/ for a page that talks to ws://localhost:8765/echo.
 * The port defaults to the PORT environment variable, else 8765; the hostname
 * to 0.0.0.0, every interface (`--hostname 127.0.0.1`: this machine only);
 * the root to examples/www next to this file.
 *
 * @module
 */
import { serve, serveStatic } from "../mod.ts";
import { parseArgs } from "node:util";
import {
  checkHostname,
  listeningAt,
  listenOrExit,
  portFrom,
} from "./_listen.ts";

/** Prints what was wrong with the command line and exits with 2. */
function usage(message: string): never {
  console.error(
    `${message}\nusage: static.ts [--port N] [--hostname H] [--root DIR]`,
  );
  Deno.exit(2);
}

let values: { port?: string; hostname: string; root?: string };
try {
  ({ values } = parseArgs({
    args: Deno.args,
    options: {
      port: { type: "string" },
      hostname: { type: "string", default: "0.0.0.0" },
      root: { type: "string" },
    },
  }));
} catch (error) {
  usage((error as Error).message);
}
// A URL, not its pathname: that keeps percent-encoding ("my%20code").
const root = values.root ?? new URL("./www", import.meta.url);
let files: (request: Request) => Promise<Response>;
try {
  files = serveStatic(root);
} catch (error) {
  usage((error as Error).message); // a root that is not a directory
}

const controller = new AbortController();
// Ctrl-C shuts down gracefully; a second one exits at once. (Listened for
// before the server says where it listens: a Ctrl-C may come at once.)
Deno.addSignalListener("SIGINT", () => {
  if (controller.signal.aborted) Deno.exit(130);
  controller.abort();
});
const server = listenOrExit(() =>
  serve({
    port: portFrom(values.port, usage),
    hostname: checkHostname(values.hostname, usage),
    signal: controller.signal,
    fetch: files,
    onListen: (addr) =>
      console.log(
        `Serving ${Deno.realPathSync(root)} on ${
          listeningAt("http", addr, "/")
        }`,
      ),
  }, async (socket) => {
    for await (const message of socket) await socket.send(message);
  })
);

await server.finished;
