/**
 * Runs the CLI as `deno run -A src/cli/main.ts ...` in a child process, with
 * a deadline on every wait.
 *
 * @module
 */

import { withTimeout as deadline } from "../server/_helpers.ts";

export { deadline };

const ROOT = new URL("../../", import.meta.url);
const MAIN = new URL("../../src/cli/main.ts", import.meta.url);
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** How long any one wait may take. */
export const DEADLINE = 10_000;

/** A finished CLI run. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion, feeding `stdin` (or nothing) to it. */
export async function runCli(
  args: string[],
  options: { stdin?: string | Uint8Array } = {},
): Promise<CliResult> {
  const child = spawnCli(args);
  try {
    if (options.stdin !== undefined) await child.write(options.stdin);
    await child.closeStdin();
    return await child.finished(DEADLINE);
  } finally {
    child.kill();
  }
}

/**
 * Runs `duplex ARGS | READER` in bash, for what the CLI does when its
 * reader goes away; `args` is shell text. `code` is the CLI's exit code.
 */
export async function runPipeline(pipeline: string): Promise<CliResult> {
  const child = new Deno.Command("bash", {
    args: [
      "-c",
      `"${Deno.execPath()}" run -A "${MAIN.pathname}" ${pipeline}
       echo "exit \${PIPESTATUS[0]}" >&2`,
    ],
    cwd: ROOT.pathname,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const output = await deadline(child.output(), DEADLINE, "the pipeline");
  const stderr = decoder.decode(output.stderr);
  const [, code] = stderr.match(/exit (\d+)\n$/) ?? [];
  return {
    code: Number(code),
    stdout: decoder.decode(output.stdout),
    stderr: stderr.replace(/exit \d+\n$/, ""),
  };
}

/** Starts the CLI; its output is collected as it arrives. */
export function spawnCli(args: string[]): CliProcess {
  return new CliProcess(args);
}

/** A running CLI child process. */
export class CliProcess {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #collected: Promise<void>;
  readonly #waiters = new Set<() => void>();
  #stdinClosed = false;

  constructor(args: string[]) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN.pathname, ...args],
      cwd: ROOT.pathname,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.#writer = this.child.stdin.getWriter();
    this.#collected = Promise.all([
      this.#collect(this.child.stdout, (text) => this.stdout += text),
      this.#collect(this.child.stderr, (text) => this.stderr += text),
    ]).then(() => {});
  }

  async #collect(
    stream: ReadableStream<Uint8Array>,
    append: (text: string) => void,
  ): Promise<void> {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      append(chunk);
      for (const wake of this.#waiters) wake();
    }
  }

  /** Writes to the child's stdin. */
  async write(data: string | Uint8Array): Promise<void> {
    await this.#writer.write(
      typeof data === "string" ? encoder.encode(data) : data,
    );
  }

  /** Ends the child's stdin. */
  async closeStdin(): Promise<void> {
    if (this.#stdinClosed) return;
    this.#stdinClosed = true;
    await this.#writer.close().catch(() => {});
  }

  /** Resolves with the first match of `pattern` in stdout (or stderr). */
  waitFor(
    pattern: RegExp,
    stream: "stdout" | "stderr" = "stdout",
    ms = DEADLINE,
  ): Promise<RegExpMatchArray> {
    return deadline(
      new Promise<RegExpMatchArray>((resolve) => {
        const check = () => {
          const match = this[stream].match(pattern);
          if (match === null) return;
          this.#waiters.delete(check);
          resolve(match);
        };
        this.#waiters.add(check);
        check();
      }),
      ms,
      `${pattern} on ${stream} (got ${JSON.stringify(this[stream])})`,
    ).finally(() => this.#waiters.clear());
  }

  /** Sends a signal to the child by its PID. */
  signal(name: Deno.Signal): void {
    Deno.kill(this.child.pid, name);
  }

  /** Waits for the child to exit and its output to end. */
  async finished(ms = DEADLINE): Promise<CliResult> {
    await this.closeStdin();
    const status = await deadline(this.child.status, ms, "the CLI to exit");
    await deadline(this.#collected, ms, "the CLI's output to end");
    return { code: status.code, stdout: this.stdout, stderr: this.stderr };
  }

  /** Kills the child if it still runs (cleanup after a failed assertion). */
  kill(): void {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.kill();
    await this.child.status;
    await this.#collected.catch(() => {});
    await this.closeStdin();
  }
}

/** Decodes bytes for assertions. */
export function text(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}
