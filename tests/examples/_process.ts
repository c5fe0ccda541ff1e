/**
 * Runs an example as a child process: its stdout read line by line, its
 * stderr kept for failure messages, stopped by PID when disposed.
 *
 * @module
 */
import { withTimeout } from "../server/_helpers.ts";

/** How long an example may take to start (Deno compiles it first). */
export const STARTUP_DEADLINE = 20_000;

/** A running example. */
export class ExampleProcess implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #lines: string[] = [];
  readonly #stderr: string[] = [];
  #waiters: (() => void)[] = [];
  readonly #done: Promise<unknown>;
  #status: Promise<Deno.CommandStatus> | null = null;
  #ended = false;

  /** Starts `deno run <denoArgs> <script> <args>`. */
  constructor(denoArgs: string[], script: string, args: string[]) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...denoArgs, script, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.#done = Promise.all([
      this.#collect(this.#child.stdout, (line) => this.#lines.push(line))
        .finally(() => {
          this.#ended = true;
          for (const waiter of this.#waiters.splice(0)) waiter();
        }),
      this.#collect(this.#child.stderr, (line) => this.#stderr.push(line)),
    ]);
  }

  async #collect(
    stream: ReadableStream<Uint8Array>,
    onLine: (line: string) => void,
  ): Promise<void> {
    let pending = "";
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      pending += text;
      let end;
      while ((end = pending.indexOf("\n")) !== -1) {
        onLine(pending.slice(0, end));
        pending = pending.slice(end + 1);
        for (const waiter of this.#waiters.splice(0)) waiter();
      }
    }
    if (pending !== "") onLine(pending);
    for (const waiter of this.#waiters.splice(0)) waiter();
  }

  /** The stdout lines so far. */
  get lines(): readonly string[] {
    return this.#lines;
  }

  /** Waits for a stdout line matching `pattern`; fails with the output so far. */
  async waitForLine(
    pattern: RegExp,
    ms = STARTUP_DEADLINE,
  ): Promise<RegExpMatchArray> {
    const find = () => {
      for (const line of this.#lines) {
        const match = line.match(pattern);
        if (match) return match;
      }
      return null;
    };
    const found = (async () => {
      for (;;) {
        const match = find();
        if (match) return match;
        if (this.#ended) {
          throw new Error(`the example exited before printing ${pattern}`);
        }
        await new Promise<void>((resolve) => this.#waiters.push(resolve));
      }
    })();
    try {
      return await withTimeout(found, ms, `a line matching ${pattern}`);
    } catch (error) {
      throw new Error(
        `${(error as Error).message}\nstdout:\n${
          this.#lines.join("\n")
        }\nstderr:\n${this.#stderr.join("\n")}`,
      );
    }
  }

  /** Sends `signal` to the process and waits for it to exit. */
  stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    if (this.#status === null) {
      try {
        Deno.kill(this.#child.pid, signal);
      } catch {
        // Exited already.
      }
      this.#status = this.#child.status;
    }
    return this.#status;
  }

  /** Waits for the process to exit by itself (within `ms`). */
  async exited(ms = STARTUP_DEADLINE): Promise<Deno.CommandStatus> {
    const status = await withTimeout(
      this.#child.status,
      ms,
      "the example to exit",
    );
    await this.#done;
    return status;
  }

  /** What the process printed to stderr. */
  get stderr(): string {
    return this.#stderr.join("\n");
  }

  /** Kills the process (SIGKILL) if still running and waits for its output. */
  async [Symbol.asyncDispose](): Promise<void> {
    const status = this.stop("SIGKILL");
    await withTimeout(status, 10_000, "the example to exit");
    await this.#done;
  }
}
