/**
 * The `duplex` command line: a WebSocket server, interactive client, sender
 * and echo load generator.
 *
 *     deno run -A jsr:@duplex/ws/cli serve --port 8765
 *     deno task compile && ./duplex --help
 *
 * Exit codes: 0 success, 1 connection or protocol failure, 2 usage error.
 *
 * @example Checking the version
 * ```ts
 * import { main, VERSION } from "@duplex/ws/cli";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await main(["--version"]), 0);
 * assert.ok(VERSION);
 * ```
 *
 * @module
 */
import { checkOptionNames } from "../_unknown_options.ts";
import { UsageError } from "./_args.ts";
import { printError, printLine } from "./_output.ts";
import { benchCommand } from "./bench.ts";
import { EXIT_CODE, type ExitCode } from "./exit_code.ts";
import { listenCommand } from "./listen.ts";
import { sendCommand } from "./send.ts";
import { serveCommand } from "./serve.ts";
import { VERSION } from "./version.ts";

export { EXIT_CODE, type ExitCode } from "./exit_code.ts";
export { VERSION } from "./version.ts";

/**
 * The overall help text of `duplex`.
 *
 * @example What `duplex --help` prints
 * ```ts
 * import { HELP, VERSION } from "@duplex/ws/cli";
 * import assert from "node:assert/strict";
 *
 * assert.ok(HELP.startsWith(`duplex ${VERSION}:`));
 * // A wrapper can list the commands in its own help.
 * const commands = HELP.match(/^  duplex \w+/gm)?.map((line) => line.trim());
 * assert.deepEqual(commands, ["duplex serve", "duplex listen", "duplex send", "duplex bench"]);
 * ```
 */
export const HELP =
  `duplex ${VERSION}: a WebSocket server, client and load generator

Usage:
  duplex serve  [--port N] [--hostname H] [--echo | --broadcast] [--static DIR]
                [--metrics PATH] [--cert FILE --key FILE] [--origin O]...
                [--protocol P]... [--deflate] [--quiet]
                [--max-payload SIZE] [--max-connections N] [...limits]
  duplex listen URL [--json] [--protocol P] [--header "K: V"] [--ca FILE]
  duplex send   URL [MESSAGE...] [--file F] [--binary]
                [--protocol P] [--header "K: V"] [--ca FILE]
  duplex bench  URL [--connections N] [--size S] [--in-flight P] [--duration D]
                [--binary] [--json] [--protocol P] [--header "K: V"] [--ca FILE]

Run "duplex COMMAND --help" for a command's options.

Options:
  -h, --help      Show this help
  -V, --version   Show the version

Exit codes:
  0  success
  1  connection or protocol failure (refused, rejected, not closed cleanly)
  2  usage error (unknown option, missing or invalid argument)`;

/**
 * Options of {@linkcode main}, for running the CLI inside a program.
 *
 * @example Feeding `duplex send` from the program instead of stdin
 * ```ts
 * import { EXIT_CODE, main, type MainOptions } from "@duplex/ws/cli";
 * import { serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const received: unknown[] = [];
 * await using server = serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
 *   for await (const message of socket) received.push(message);
 * });
 * const options: MainOptions = { stdin: ReadableStream.from([new TextEncoder().encode("one\ntwo\n")]) };
 * assert.equal(await main(["send", `ws://127.0.0.1:${server.addr.port}`], options), EXIT_CODE.Ok);
 * assert.deepEqual(received, ["one", "two"]);
 * ```
 */
export interface MainOptions {
  /**
   * Stops a running `serve` or `bench` like Ctrl-C does.
   */
  signal?: AbortSignal;
  /**
   * Standard input for `listen` and `send`.
   * @default {Deno.stdin.readable}
   */
  stdin?: ReadableStream<Uint8Array>;
}

const COMMANDS = ["serve", "listen", "send", "bench"] as const;
const MAIN_OPTIONS: ReadonlySet<string> = new Set(["signal", "stdin"]);

/**
 * Runs the `duplex` command line with `args` and resolves with its exit
 * code; it does not call `Deno.exit()` itself, but for one case: while a
 * command stops after a Ctrl-C or SIGTERM (a close the peer does not
 * answer, a shutdown that waits), a second one ends the process at once
 * with 130 or 143, as a shell user expects. Usage errors are printed on
 * stderr with a hint and give 2.
 *
 * @param args The arguments, without the program name.
 * @param options A signal and stdin, for running inside a program.
 * @returns The exit code.
 *
 * @example A usage error
 * ```ts
 * import { EXIT_CODE, main } from "@duplex/ws/cli";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await main(["send"]), EXIT_CODE.Usage);
 * ```
 */
export async function main(
  args: string[],
  options: MainOptions = {},
): Promise<ExitCode> {
  checkOptionNames("run duplex", MAIN_OPTIONS, options);
  const [command, ...rest] = args;
  try {
    switch (command) {
      case "serve":
        return await serveCommand(rest, options.signal);
      case "listen":
        return await listenCommand(rest, options.stdin);
      case "send":
        return await sendCommand(rest, options.stdin);
      case "bench":
        return await benchCommand(rest, options.signal);
      case "help":
        // "duplex help send" is "duplex send --help".
        if ((COMMANDS as readonly string[]).includes(rest[0])) {
          return await main([rest[0], "--help"], options);
        }
        if (rest[0] !== undefined) throw unknownCommand(rest[0]);
        printLine(HELP);
        return EXIT_CODE.Ok;
      case "-h":
      case "--help":
        printLine(HELP);
        return EXIT_CODE.Ok;
      case "-V":
      case "--version":
        printLine(`duplex ${VERSION}`);
        return EXIT_CODE.Ok;
      case undefined:
        printError(HELP);
        return EXIT_CODE.Usage;
      default:
        throw unknownCommand(command);
    }
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    const name = error.command ? `duplex ${error.command}` : "duplex";
    printError(`${name}: ${error.message}`);
    printError(`Run "${name} --help" for usage.`);
    return EXIT_CODE.Usage;
  }
}

function unknownCommand(command: string): UsageError {
  return new UsageError(
    "",
    `unknown command ${JSON.stringify(command)}; the commands are ${
      COMMANDS.join(", ")
    }`,
  );
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (error) {
    // The reader of the output went away (`duplex --help | head -1`): as
    // in "duplex listen | head -1", that ends the command quietly.
    if (error instanceof Deno.errors.BrokenPipe) Deno.exit(EXIT_CODE.Ok);
    printError(`duplex: unexpected error: ${(error as Error)?.stack ?? error}`);
    code = EXIT_CODE.Failure;
  }
  // Exit at once: a pending read of stdin must not keep the process alive.
  Deno.exit(code);
}
