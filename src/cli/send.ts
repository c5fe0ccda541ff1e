import {
  parseCommandArgs,
  parseHeaders,
  parseUrl,
  readPemFiles,
  UsageError,
} from "./_args.ts";
import {
  describeClose,
  exitCodeFor,
  printError,
  printLine,
} from "./_output.ts";
import { connectOrExplain } from "./_connect.ts";
import { Interruptible } from "../_interruptible.ts";
import { onStopSignals, whenStopped } from "./_signals.ts";
import { NotUtf8Error, readAll, readLines } from "./_stdin.ts";
import { EXIT_CODE, type ExitCode } from "./exit_code.ts";

/** The help text of `duplex send`. */
export const SEND_HELP =
  `Usage: duplex send URL [MESSAGE...] [--file F] [--binary]
                   [--protocol P]... [--header "K: V"]... [--ca FILE]

Connects to URL, sends messages, closes with 1000 and waits for the closing
handshake. Prints nothing on success and exits with 0; exits with 1 when the
connection fails or does not close cleanly. Ctrl-C or SIGTERM stops sending
and closes the same way.

What is sent:
  MESSAGE...        each argument is one message
  --file F          the whole file is one message
  (neither)         stdin: each line is one UTF-8 text message; with
                    --binary, all of stdin is one binary message

Options:
  --binary          Send binary messages instead of text (arguments as their
                    UTF-8 bytes)
  --protocol P      Offer subprotocol P (repeatable; in order of preference)
  --header "K: V"   Add a handshake request header (repeatable)
  --ca FILE         Trust this PEM certificate for wss:// (repeatable)
  -h, --help        Show this help

Examples:
  duplex send ws://localhost:8765 hello world
  duplex send ws://localhost:8765 --file image.png --binary
  journalctl -f | duplex send ws://localhost:8765/logs`;

const OPTIONS = {
  file: { type: "string" },
  binary: { type: "boolean" },
  protocol: { type: "string", multiple: true },
  header: { type: "string", multiple: true },
  ca: { type: "string", multiple: true },
  help: { type: "boolean", short: "h" },
} as const;

const encoder = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * `duplex send`: sends messages and closes cleanly.
 *
 * @param args The arguments after `send`.
 * @param stdin Where messages come from when none are given.
 * @returns The exit code.
 * @throws {UsageError} When the arguments are not valid (exit code 2).
 *
 * @example Sending two messages
 * ```ts
 * import { main } from "@duplex/ws/cli";
 * import { serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const received: unknown[] = [];
 * await using server = serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
 *   for await (const message of socket) received.push(message);
 * });
 * const code = await main(["send", `ws://127.0.0.1:${server.addr.port}`, "hello", "world"]);
 * assert.equal(code, 0);
 * assert.deepEqual(received, ["hello", "world"]);
 * ```
 */
export async function sendCommand(
  args: string[],
  stdin: ReadableStream<Uint8Array> = Deno.stdin.readable,
): Promise<ExitCode> {
  const { values, positionals } = parseSendArgs(args);
  if (values.help) {
    printLine(SEND_HELP);
    return EXIT_CODE.Ok;
  }
  const url = parseUrl("send", positionals);
  const texts = positionals.slice(1);
  const binary = values.binary ?? false;
  if (values.file !== undefined && texts.length > 0) {
    throw new UsageError(
      "send",
      "give messages as arguments or with --file, not both",
    );
  }
  const headers = parseHeaders("send", values.header ?? []);
  const caCerts = await readPemFiles("send", "ca", values.ca ?? []);

  // A stop signal ends the reading of a whole input, the handshake, or once
  // connected, the wait for the next message: the socket then closes as if
  // the input had ended.
  const signals = onStopSignals();
  const stopped = Promise.withResolvers<typeof STOPPED>();
  whenStopped(signals.signal, () => stopped.resolve(STOPPED));
  // Messages are read before connecting, except lines from stdin, which are
  // sent as they arrive.
  let messages:
    | AsyncIterable<string | Uint8Array>
    | Iterable<
      string | Uint8Array
    >;
  try {
    if (values.file !== undefined) {
      messages = [await readFile(values.file, binary)];
    } else if (texts.length > 0) {
      messages = binary ? texts.map((text) => encoder.encode(text)) : texts;
    } else if (binary) {
      const input = await Promise.race([
        readAll(stdin).catch((error) => {
          throw stdinError(error);
        }),
        stopped.promise,
      ]);
      if (input === STOPPED) {
        signals.remove();
        printError("duplex send: stopped before the connection opened");
        return EXIT_CODE.Failure;
      }
      messages = [input];
    } else {
      messages = readLines(stdin, { fatal: true });
    }
  } catch (error) {
    signals.remove();
    throw error;
  }

  const socket = await connectOrExplain("send", url, {
    protocols: values.protocol,
    headers,
    caCerts,
    // Replies are discarded as they arrive, unheld: the echo of a large
    // message sent (in many frames) must not fail the connection.
    maxPayload: Number.MAX_SAFE_INTEGER,
    maxFragments: Number.MAX_SAFE_INTEGER,
    streamMessages: true,
  }, signals);
  if (typeof socket === "string") {
    printError(`duplex send: ${socket}`);
    return EXIT_CODE.Failure;
  }
  // Replies are not printed (use "duplex listen"), but reading them keeps
  // the socket flowing until the close handshake.
  const draining = (async () => {
    for await (const { readable } of socket.streams()) await readable.cancel();
  })();
  let sent = 0;
  let interrupted = false;
  let notUtf8: NotUtf8Error | undefined;
  let unreadable: UsageError | undefined;
  let reading = false;
  // Waiting for the next line (`tail -f | duplex send`), a close from the
  // server ends the wait: nothing more can be sent, and the input did not
  // end, so the rest of it is not sent. A stop signal ends it too.
  const interruption = new Interruptible<typeof CLOSED | typeof STOPPED>();
  socket.closed.then(() => interruption.interrupt(CLOSED));
  stopped.promise.then(() => interruption.interrupt(STOPPED));
  const pending:
    | AsyncIterator<string | Uint8Array>
    | Iterator<
      string | Uint8Array
    > = Symbol.asyncIterator in messages
      ? messages[Symbol.asyncIterator]()
      : messages[Symbol.iterator]();
  try {
    while (true) {
      reading = true;
      const next = await interruption.wait(pending.next());
      reading = false;
      if (next === CLOSED) {
        interrupted = true;
        break;
      }
      if (next === STOPPED || next.done) break;
      await socket.send(next.value);
      sent++;
    }
  } catch (error) {
    if (error instanceof NotUtf8Error) notUtf8 = error;
    else if (reading) unreadable = stdinError(error);
    // Else the server closed first.
    else interrupted = true;
  }
  const info = await socket.close(1000);
  await draining;
  // Not before: a signal during the closing handshake must not cut it.
  signals.remove();
  if (notUtf8 !== undefined) {
    printError(
      `duplex send: ${notUtf8.message} on stdin (${sent} line${
        sent === 1 ? "" : "s"
      } sent before it); add --binary to send all of stdin as one binary message`,
    );
    return EXIT_CODE.Usage;
  }
  if (unreadable !== undefined) {
    printError(
      `duplex send: ${unreadable.message} (${sent} line${
        sent === 1 ? "" : "s"
      } sent before it)`,
    );
    return EXIT_CODE.Usage;
  }
  if (interrupted) {
    printError(
      `duplex send: ${
        // An error of the server's that we found (1002, 1007) is ours to
        // close for.
        info.error === undefined
          ? "the server closed the connection"
          : "the connection failed"} with ${
        describeClose(info)
      }, after ${sent} message${
        sent === 1 ? "" : "s"
      }; the rest were not sent.`,
    );
    return EXIT_CODE.Failure;
  }
  const code = exitCodeFor(info);
  if (code !== EXIT_CODE.Ok) {
    printError(
      `duplex send: the connection closed with ${describeClose(info)}${
        info.wasClean ? "" : " without a clean closing handshake"
      } (${sent} message${sent === 1 ? "" : "s"} sent).`,
    );
  }
  return code;
}

// "duplex send URL -1": a message that looks like an option.
function parseSendArgs(args: string[]) {
  try {
    return parseCommandArgs("send", args, OPTIONS);
  } catch (error) {
    const option = /^Unknown option '(-[^-][^']*)'/
      .exec((error as Error).message)?.[1];
    if (option === undefined) throw error;
    const arg = args.find((arg) => arg.startsWith(option)) ?? option;
    throw new UsageError(
      "send",
      `unknown option ${
        JSON.stringify(arg)
      }; to send a message that starts with "-", put -- before it: duplex send URL -- ${
        JSON.stringify(arg)
      }`,
    );
  }
}

const STOPPED: unique symbol = Symbol("stopped");
const CLOSED: unique symbol = Symbol("closed");

/** Standard input could not be read (a directory, say). */
function stdinError(error: unknown): UsageError {
  return new UsageError(
    "send",
    `cannot read stdin: ${(error as Error).message}`,
  );
}

async function readFile(
  path: string,
  binary: boolean,
): Promise<string | Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    throw new UsageError(
      "send",
      `cannot read --file ${path}: ${(error as Error).message}`,
    );
  }
  if (binary) return bytes;
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new UsageError(
      "send",
      `--file ${path} is not UTF-8 text; add --binary to send it as a binary message`,
    );
  }
}
