import type { CloseInfo } from "../close_info.ts";
import {
  parseBytes,
  parseCommandArgs,
  parseCount,
  parseHeaders,
  parseUrl,
  readPemFiles,
  UsageError,
} from "./_args.ts";
import {
  describeBinary,
  describeClose,
  exitCodeFor,
  printError,
  printLine,
} from "./_output.ts";
import { connectOrExplain } from "./_connect.ts";
import { onStopSignals, whenStopped } from "./_signals.ts";
import { readLines } from "./_stdin.ts";
import { EXIT_CODE, type ExitCode } from "./exit_code.ts";

/** The help text of `duplex listen`. */
export const LISTEN_HELP =
  `Usage: duplex listen URL [--json] [--protocol P]... [--header "K: V"]...
                     [--ca FILE] [--max-payload SIZE] [--max-fragments N]

Connects to URL and stays connected: every line typed on stdin is sent as a
text message, every message received is printed on stdout (text as it is,
binary as its length and first bytes in hex). Status goes to stderr.

It closes with 1000 when stdin ends (Ctrl-D), on Ctrl-C or on SIGTERM, and
exits when the connection has closed: with 0 after a clean close with 1000,
1001 or 1005, with 1 otherwise.

Options:
  --json            Print one JSON object per line on stdout for each event:
                      {"type":"open","url":...,"protocol":...}
                      {"type":"message","kind":"text","data":...}
                      {"type":"message","kind":"binary","size":N,"base64":...}
                      {"type":"close","code":N,"reason":...,"wasClean":B}
                      {"type":"error","message":...}
  --protocol P      Offer subprotocol P (repeatable; in order of preference)
  --header "K: V"   Add a handshake request header (repeatable)
  --ca FILE         Trust this PEM certificate for wss:// (repeatable)
  --max-payload SIZE
                    Largest message accepted, such as 64KiB or 1GiB (default
                    16MiB); a larger one closes the connection with 1009
  --max-fragments N Most frames one message may arrive in (default 4096); more
                    close the connection with 1009
  -h, --help        Show this help

Examples:
  duplex listen ws://localhost:8765
  duplex listen wss://example.com/feed --protocol v2.feed --json | jq .`;

const OPTIONS = {
  json: { type: "boolean" },
  protocol: { type: "string", multiple: true },
  header: { type: "string", multiple: true },
  ca: { type: "string", multiple: true },
  "max-payload": { type: "string" },
  "max-fragments": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/**
 * `duplex listen`: an interactive client, like `wscat`.
 *
 * @param args The arguments after `listen`.
 * @param stdin Where lines to send come from.
 * @returns The exit code.
 * @throws {UsageError} When the arguments are not valid (exit code 2).
 *
 * @example Talking to an echo server
 * ```ts
 * import { main } from "@duplex/ws/cli";
 * import { serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
 *   await socket.send("welcome");
 * });
 * const code = await main(["listen", `ws://127.0.0.1:${server.addr.port}`], {
 *   stdin: ReadableStream.from([]),
 * });
 * assert.equal(code, 0);
 * ```
 */
export async function listenCommand(
  args: string[],
  stdin: ReadableStream<Uint8Array> = Deno.stdin.readable,
): Promise<ExitCode> {
  const { values, positionals } = parseCommandArgs("listen", args, OPTIONS);
  if (values.help) {
    printLine(LISTEN_HELP);
    return EXIT_CODE.Ok;
  }
  const url = parseUrl("listen", positionals);
  if (positionals.length > 1) {
    throw new UsageError(
      "listen",
      `unexpected argument ${
        JSON.stringify(positionals[1])
      }; type messages on stdin instead (or use "duplex send")`,
    );
  }
  const headers = parseHeaders("listen", values.header ?? []);
  const caCerts = await readPemFiles("listen", "ca", values.ca ?? []);
  const maxPayload = values["max-payload"] === undefined
    ? undefined
    : parseBytes("listen", "max-payload", values["max-payload"]);
  const maxFragments = values["max-fragments"] === undefined
    ? undefined
    : parseCount("listen", "max-fragments", values["max-fragments"]);
  const json = values.json ?? false;
  const emit = (event: Record<string, unknown>) =>
    printLine(JSON.stringify(event));

  // From here on a Ctrl-C (or SIGTERM) stops the command: during the
  // handshake it ends it, once connected it closes with 1000.
  const signals = onStopSignals();
  const socket = await connectOrExplain("listen", url, {
    protocols: values.protocol,
    headers,
    caCerts,
    maxPayload,
    maxFragments,
  }, signals);
  if (typeof socket === "string") {
    if (json) emit({ type: "error", message: socket });
    else printError(`duplex listen: ${socket}`);
    return EXIT_CODE.Failure;
  }
  const closeNormally = () => socket.close(1000).catch(() => {});
  whenStopped(signals.signal, closeNormally);

  if (!json) {
    printError(
      `Connected to ${url.href}${
        socket.protocol ? ` (subprotocol ${socket.protocol})` : ""
      }. Lines you type are sent; Ctrl-D or Ctrl-C closes.`,
    );
  }

  const printAll = async () => {
    for await (const message of socket) {
      if (typeof message === "string") {
        if (json) emit({ type: "message", kind: "text", data: message });
        else printLine(message);
      } else if (json) {
        emit({
          type: "message",
          kind: "binary",
          size: message.length,
          base64: message.toBase64(),
        });
      } else printLine(describeBinary(message));
    }
  };
  // A reader that goes away (`duplex listen ... | head -1`) ends the
  // session cleanly instead of crashing on the broken pipe.
  let outputGone = false;
  const printing = (async () => {
    try {
      if (json) {
        emit({ type: "open", url: url.href, protocol: socket.protocol });
      }
      await printAll();
    } catch (error) {
      if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
      outputGone = true;
      closeNormally();
    }
  })();
  // Sending stops when the socket closes; the stdin read left pending then
  // does not hold the process, since main() exits.
  let unreadable: string | undefined;
  const sending = (async () => {
    try {
      for await (const line of readLines(stdin)) {
        if (socket.state !== "open") return;
        await socket.send(line);
      }
    } catch (error) {
      if (socket.state !== "open") return; // the send, once closed
      // Standard input could not be read (a directory, say).
      unreadable = `cannot read stdin: ${(error as Error).message}`;
      try {
        if (json) emit({ type: "error", message: unreadable });
        else printError(`duplex listen: ${unreadable}; closing`);
      } catch (error) {
        if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
        outputGone = true; // the reader left too
      }
    }
    closeNormally();
  })();

  const info: CloseInfo = await socket.closed;
  await printing;
  signals.remove();
  if (outputGone) return EXIT_CODE.Ok;
  void sending;
  if (json) {
    emit({
      type: "close",
      code: info.code,
      reason: info.reason,
      wasClean: info.wasClean,
      ...(info.error ? { error: info.error.code } : {}),
    });
  } else printError(`Closed: ${describeClose(info)}.`);
  return unreadable === undefined ? exitCodeFor(info) : EXIT_CODE.Usage;
}
