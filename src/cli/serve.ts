import { serve, type Server } from "../server/server.ts";
import {
  NUMERIC_DEFAULTS,
  type ServeOptions,
  type ServerLogEvent,
} from "../server/serve_options.ts";
import { serveStatic } from "../server/static_files.ts";
import type { Socket } from "../socket.ts";
import {
  parseCommandArgs,
  parsePort,
  readPemFiles,
  UsageError,
} from "./_args.ts";
import { metricsEndpoint, parseMetricsPath } from "./_metrics_endpoint.ts";
import { printable, printError, printLine } from "./_output.ts";
import {
  SERVE_OPTION_FLAGS,
  serveOptionsFromFlags,
  usageErrorFromServe,
} from "./_serve_flags.ts";
import { printErrors } from "../server/_print_errors.ts";
import { onStopSignals } from "./_signals.ts";
import { EXIT_CODE, type ExitCode } from "./exit_code.ts";

const D = NUMERIC_DEFAULTS;
const MIB = D.maxPayload / 1024 ** 2;
const PONG_S = D.pongTimeout / 1000;

/** The help text of `duplex serve`. */
export const SERVE_HELP =
  `Usage: duplex serve [--port N] [--hostname H] [--echo | --broadcast]
                    [--static DIR] [--metrics PATH] [--cert FILE --key FILE]
                    [--origin O]... [--protocol P]... [--deflate]
                    [--quiet] [LIMITS]

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
  --metrics PATH    Serve the server's counters at PATH (such as /metrics) in
                    the Prometheus text format over plain HTTP, before
                    --static; anyone who reaches the port can read them
  --cert FILE       PEM certificate chain: serve wss:// (needs --key)
  --key FILE        PEM private key for --cert
  --origin O        Accept WebSockets only from web pages of origin O, such
                    as https://example.com (repeatable); pages of other
                    origins get 403, clients sending no Origin are accepted
  --protocol P      A subprotocol the server speaks (repeatable, preferred
                    first); a client offering none of them gets none
  --deflate         Compress messages (permessage-deflate) for clients that
                    offer it
  --quiet           Do not log connections on stderr
  -h, --help        Show this help

Limits (MS: milliseconds, or with a unit: 500ms, 30s, 5m):
  --max-payload SIZE      Largest message, in bytes or with a unit (64KiB,
                          1MiB); larger ones close with 1009 (default ${MIB}MiB)
  --max-connections N     Most connections at once, WebSocket or HTTP; more
                          get 503 (default ${D.maxConnections})
  --max-connections-per-address N
                          Most connections at once from one address; more
                          get 429 (default: no limit). Behind a reverse proxy
                          all clients share its address: limit them there
  --max-buffered-bytes SIZE
                          Most bytes all connections together may hold
                          (messages arriving or not yet taken, output not
                          yet written); over it, the one holding the most is
                          closed with 1013 (default: no limit)
  --idle-timeout MS       Close with 1001 after MS without a message either
                          way (default ${D.idleTimeout}: never)
  --message-timeout MS    Fail with 1008 a message that takes longer than MS
                          to arrive whole (default ${D.messageTimeout}: no limit)
  --ping-interval MS      Ping after MS without traffic from the client; no
                          pong in ${PONG_S} s closes (default ${D.pingInterval}; 0: no pings)

Examples:
  duplex serve --port 9000
  duplex serve --broadcast --static ./public --metrics /metrics
  duplex serve --cert cert.pem --key key.pem --origin https://example.com
  duplex serve --max-payload 64KiB --max-connections-per-address 20 \\
               --idle-timeout 5m`;

const OPTIONS = {
  port: { type: "string" },
  hostname: { type: "string" },
  echo: { type: "boolean" },
  broadcast: { type: "boolean" },
  static: { type: "string" },
  metrics: { type: "string" },
  cert: { type: "string" },
  key: { type: "string" },
  quiet: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  ...SERVE_OPTION_FLAGS,
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
  const metricsPath = values.metrics === undefined
    ? undefined
    : parseMetricsPath(values.metrics);
  // Checked by serve() below, as a usage error naming the flag.
  const flagged = serveOptionsFromFlags(values);
  let files: ServeOptions["fetch"];
  if (values.static !== undefined) {
    try {
      files = serveStatic(values.static);
    } catch {
      throw new UsageError(
        "serve",
        `--static must name a directory, got ${JSON.stringify(values.static)}`,
      );
    }
  }
  // Not called before a request comes, when the server exists.
  const fetch = metricsPath === undefined
    ? files
    : metricsEndpoint(metricsPath, () => server.metrics(), files);

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
  let server: Server;
  try {
    server = serve({
      ...flagged.options,
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
    const usage = usageErrorFromServe(error, flagged.flags);
    if (usage !== undefined) throw usage;
    const cause = (error as Error).message.replace(
      `Cannot serve on ${hostname}:${port}: `,
      "",
    );
    // Not a name a socket can listen on (Deno.listen's URIError).
    if (error instanceof URIError) {
      throw new UsageError(
        "serve",
        `--hostname must be an address or host name, such as 127.0.0.1 or ::, got ${
          JSON.stringify(hostname)
        } (${cause})`,
      );
    }
    return listenFailure(hostname, port, error, cause);
  }
  const scheme = cert === undefined ? "ws" : "wss";
  const shown = hostname === "0.0.0.0" || hostname === "::"
    ? "localhost"
    : hostname.includes(":")
    ? `[${hostname}]`
    : hostname;
  const authority = `${shown}:${server.addr.port}`;
  const http = `${scheme === "wss" ? "https" : "http"}://${authority}`;
  const served = [mode];
  if (files) served.push(`static files from ${values.static} at ${http}/`);
  if (metricsPath) served.push(`metrics at ${http}${metricsPath}`);
  printLine(`Listening on ${scheme}://${authority} (${served.join(", ")})`);
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
  cause: string,
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
    printError(`duplex serve: cannot listen on ${where}: ${cause}`);
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
          event.reason ? ` ${printable(event.reason)}` : ""
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
      // The server's own troubles (accept-error, pubsub-error, over-budget,
      // shutdown-timeout), as its default logger prints them.
      serverErrors(event);
  }
}

function address(addr: Deno.NetAddr): string {
  return addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}
