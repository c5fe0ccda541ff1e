import { serve } from "../server/server.ts";
import type { ServeOptions, ServerLogEvent } from "../server/serve_options.ts";
import { serveStatic } from "../server/static_files.ts";
import type { Socket } from "../socket.ts";
import {
  parseCommandArgs,
  parsePort,
  readPemFiles,
  UsageError,
} from "./_args.ts";
import { printError, printLine } from "./_output.ts";
import { printErrors } from "../server/_print_errors.ts";
import { onStopSignals } from "./_signals.ts";
import { EXIT_CODE, type ExitCode } from "./exit_code.ts";

/** The help text of `duplex serve`. */
export const SERVE_HELP =
  `Usage: duplex serve [--port N] [--hostname H] [--echo | --broadcast]
                    [--static DIR] [--cert FILE --key FILE] [--quiet]

Runs a WebSocket server until Ctrl-C (SIGINT) or SIGTERM, then shuts down
gracefully (close code 1001 to every client) and exits with 0.

Prints "Listening on ws://HOST:PORT (MODE)" on stdout once it listens;
connections and errors are logged on stderr.

Options:
  --port N          TCP port; 0 picks a free one (default 8765)
  --hostname H      Address to listen on (default 0.0.0.0, every interface)
  --echo            Send every message back to its sender (the default)
  --broadcast       Send every message to every connected client, the sender
                    included
  --static DIR      Also serve the files under DIR over plain HTTP on the
                    same port (index.html for directories)
  --cert FILE       PEM certificate chain: serve wss:// (needs --key)
  --key FILE        PEM private key for --cert
  --quiet           Do not log connections on stderr
  -h, --help        Show this help

Examples:
  duplex serve --port 9000
  duplex serve --broadcast --static ./public
  duplex serve --cert cert.pem --key key.pem`;

const OPTIONS = {
  port: { type: "string" },
  hostname: { type: "string" },
  echo: { type: "boolean" },
  broadcast: { type: "boolean" },
  static: { type: "string" },
  cert: { type: "string" },
  key: { type: "string" },
  quiet: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

const DEFAULT_PORT = 8765;
const DEFAULT_HOSTNAME = "0.0.0.0";

/**
 * `duplex serve`: an echo or broadcast WebSocket server, with optional static
 * files and TLS. Resolves once the server has shut down after SIGINT or
 * SIGTERM (or `signal`).
 *
 * @param args The arguments after `serve`.
 * @param signal Stops the server like SIGINT does (for embedding and tests).
 * @returns The exit code.
 * @throws {UsageError} When the arguments are not valid (exit code 2).
 *
 * @example Serving on a free port until told to stop
 * ```ts
 * import { main } from "@duplex/ws/cli";
 * import assert from "node:assert/strict";
 *
 * const controller = new AbortController();
 * const running = main(["serve", "--port", "0", "--hostname", "127.0.0.1", "--quiet"], {
 *   signal: controller.signal,
 * });
 * controller.abort();
 * assert.equal(await running, 0);
 * ```
 */
export async function serveCommand(
  args: string[],
  signal?: AbortSignal,
): Promise<ExitCode> {
  const { values, positionals } = parseCommandArgs("serve", args, OPTIONS);
  if (values.help) {
    printLine(SERVE_HELP);
    return EXIT_CODE.Ok;
  }
  if (positionals.length > 0) {
    throw new UsageError(
      "serve",
      `unexpected argument ${JSON.stringify(positionals[0])}`,
    );
  }
  if (values.echo && values.broadcast) {
    throw new UsageError(
      "serve",
      "--echo and --broadcast cannot be combined; pick one",
    );
  }
  if ((values.cert === undefined) !== (values.key === undefined)) {
    throw new UsageError(
      "serve",
      "--cert and --key go together: pass both to serve wss://",
    );
  }
  const port = values.port === undefined
    ? DEFAULT_PORT
    : parsePort("serve", values.port);
  const hostname = values.hostname ?? DEFAULT_HOSTNAME;
  if (hostname.trim() === "") {
    throw new UsageError(
      "serve",
      '--hostname must be an address or host name, such as 127.0.0.1 or ::, got ""',
    );
  }
  let cert: string | undefined;
  let key: string | undefined;
  if (values.cert !== undefined && values.key !== undefined) {
    [cert] = await readPemFiles("serve", "cert", [values.cert]);
    [key] = await readPemFiles("serve", "key", [values.key]);
  }
  const mode = values.broadcast ? "broadcast" : "echo";
  let fetch: ServeOptions["fetch"];
  if (values.static !== undefined) {
    try {
      fetch = serveStatic(values.static);
    } catch {
      throw new UsageError(
        "serve",
        `--static must name a directory, got ${JSON.stringify(values.static)}`,
      );
    }
  }

  const clients = new Set<Socket>();
  const handler = mode === "echo"
    ? async (socket: Socket) => {
      for await (const message of socket) await socket.send(message);
    }
    : async (socket: Socket) => {
      clients.add(socket);
      try {
        for await (const message of socket) {
          for (const client of clients) client.send(message).catch(() => {});
        }
      } finally {
        clients.delete(socket);
      }
    };

  const controller = new AbortController();
  const stop = () => controller.abort();
  signal?.addEventListener("abort", stop, { once: true });
  const signals = onStopSignals(stop);
  let server;
  try {
    server = serve({
      port,
      hostname,
      cert,
      key,
      fetch,
      signal: controller.signal,
      onListen() {},
      logger: values.quiet ? undefined : logEvent,
    }, handler);
  } catch (error) {
    signals.remove();
    signal?.removeEventListener("abort", stop);
    return listenFailure(hostname, port, error);
  }
  const scheme = cert === undefined ? "ws" : "wss";
  const shown = hostname === "0.0.0.0" || hostname === "::"
    ? "localhost"
    : hostname.includes(":")
    ? `[${hostname}]`
    : hostname;
  const authority = `${shown}:${server.addr.port}`;
  const files = `${scheme === "wss" ? "https" : "http"}://${authority}/`;
  printLine(
    `Listening on ${scheme}://${authority} (${mode}${
      fetch ? `, static files from ${values.static} at ${files}` : ""
    })`,
  );
  if (signal?.aborted) stop();
  await server.finished;
  signals.remove();
  signal?.removeEventListener("abort", stop);
  if (!values.quiet) printError("Server stopped.");
  return EXIT_CODE.Ok;
}

function listenFailure(
  hostname: string,
  port: number,
  error: unknown,
): ExitCode {
  const where = `${hostname}:${port}`;
  if (error instanceof Deno.errors.AddrInUse) {
    printError(
      `duplex serve: cannot listen on ${where}: the address is in use. Pick another --port (0 picks a free one).`,
    );
  } else if (error instanceof Deno.errors.PermissionDenied) {
    printError(
      `duplex serve: cannot listen on ${where}: permission denied. Ports below 1024 need privileges; try --port 8765.`,
    );
  } else if (error instanceof Deno.errors.NotCapable) {
    printError(
      `duplex serve: cannot listen on ${where}: run with --allow-net (or -A).`,
    );
  } else {
    printError(
      `duplex serve: cannot listen on ${where}: ${(error as Error).message}`,
    );
  }
  return EXIT_CODE.Failure;
}

const serverErrors = printErrors();

/**
 * Prints a server event as one line on stderr, for `duplex serve`.
 *
 * @param event The event.
 */
export function logEvent(event: ServerLogEvent): void {
  switch (event.type) {
    case "open":
      printError(
        `open   ${address(event.remoteAddr)} ${event.url}${
          event.protocol ? ` (${event.protocol})` : ""
        }`,
      );
      break;
    case "close":
      printError(
        `close  ${address(event.remoteAddr)} ${event.code}${
          event.reason ? ` ${event.reason}` : ""
        }${event.wasClean ? "" : " (not clean)"}`,
      );
      break;
    case "protocol-error":
      printError(
        `error  ${
          address(event.remoteAddr)
        } ${event.code} (${event.closeCode}): ${event.message}`,
      );
      break;
    case "handshake-rejected":
      printError(
        `reject ${address(event.remoteAddr)} ${event.status}: ${event.message}`,
      );
      break;
    case "handler-error":
      printError(`error  ${event.url}: ${String(event.error)}`);
      break;
    default:
      // The server's own troubles (accept-error, pubsub-error,
      // shutdown-timeout), as its default logger prints them.
      serverErrors(event);
  }
}

function address(addr: Deno.NetAddr): string {
  return addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}
