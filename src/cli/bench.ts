import { connect } from "../client/connect.ts";
import { DEFAULT_MAX_PAYLOAD } from "../protocol/connection.ts";
import type { Socket } from "../socket.ts";
import {
  parseCommandArgs,
  parseDuration,
  parseHeaders,
  parsePositiveInteger,
  parseSize,
  parseUrl,
  readPemFiles,
  UsageError,
} from "./_args.ts";
import { LatencyHistogram } from "./_latency_histogram.ts";
import {
  describeClose,
  printError,
  printLine,
  writeStderr,
  writeStdout,
} from "./_output.ts";
import { describeConnectError } from "./_connect.ts";
import { onStopSignals, whenStopped } from "./_signals.ts";
import { EXIT_CODE, type ExitCode } from "./exit_code.ts";

/** The help text of `duplex bench`. */
export const BENCH_HELP =
  `Usage: duplex bench URL [--connections N] [--size S] [--in-flight P]
                    [--duration D] [--binary] [--json]
                    [--protocol P]... [--header "K: V"]... [--ca FILE]

An echo load generator: opens N connections to an echo server, keeps P
messages of S bytes in flight on each for D, and reports echoed messages
per second, payload MB/s (10^6 bytes, one direction) and round-trip latency
(p50, p90, p99, max). Ctrl-C or SIGTERM stops early and reports.

A live progress line is shown on a terminal, one line per second otherwise.
Exits with 1 when a connection fails, closes early or echoes wrongly.

Options:
  --connections N   Concurrent connections (default 10)
  --size S          Message size: 32, 1K, 64KiB, 1M (K = KiB = 1024; default 32)
  --in-flight P     Messages in flight per connection (default 1)
  --duration D      How long to send: 10 (seconds), 10s, 500ms, 1m (default 10s)
  --binary          Send binary messages (default: text)
  --json            Print the summary as one JSON object on stdout
  --protocol P      Offer subprotocol P (repeatable)
  --header "K: V"   Add a handshake request header (repeatable)
  --ca FILE         Trust this PEM certificate for wss:// (repeatable)
  -h, --help        Show this help

Example:
  duplex bench ws://localhost:8765 --connections 50 --size 1K --in-flight 8 --duration 30s`;

const OPTIONS = {
  connections: { type: "string" },
  size: { type: "string" },
  "in-flight": { type: "string" },
  duration: { type: "string" },
  binary: { type: "boolean" },
  json: { type: "boolean" },
  protocol: { type: "string", multiple: true },
  header: { type: "string", multiple: true },
  ca: { type: "string", multiple: true },
  help: { type: "boolean", short: "h" },
} as const;

/** What `duplex bench --json` prints. */
export interface BenchSummary {
  /** The server URL. */
  url: string;
  /** Connections used. */
  connections: number;
  /** Message size in bytes. */
  size: number;
  /** Whether messages were binary. */
  binary: boolean;
  /** Messages in flight per connection. */
  inFlight: number;
  /** Seconds from the first message sent to the last echo received. */
  seconds: number;
  /** Echoed messages (round trips completed). */
  messages: number;
  /** Echoed messages per second. */
  messagesPerSecond: number;
  /** Echoed payload bytes (one direction). */
  bytes: number;
  /** Echoed payload megabytes (10^6 bytes) per second. */
  megabytesPerSecond: number;
  /** Round-trip latency in milliseconds (percentiles within 1%). */
  latencyMs: {
    p50: number;
    p90: number;
    p99: number;
    max: number;
    mean: number;
  };
  /** What went wrong (at most 10 entries); empty on success. */
  errors: string[];
}

const DRAIN_TIMEOUT = 5_000;
const PROGRESS_INTERVAL = 1_000;
const PATTERN = "abcdefghijklmnopqrstuvwxyz0123456789";

/**
 * `duplex bench`: an echo load generator.
 *
 * @param args The arguments after `bench`.
 * @param signal Stops the run early, like Ctrl-C.
 * @returns The exit code.
 * @throws {UsageError} When the arguments are not valid (exit code 2).
 *
 * @example A short run against an echo server
 * ```ts
 * import { main } from "@duplex/ws/cli";
 * import { serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
 *   for await (const message of socket) await socket.send(message);
 * });
 * const url = `ws://127.0.0.1:${server.addr.port}`;
 * assert.equal(await main(["bench", url, "--connections", "2", "--duration", "200ms", "--json"]), 0);
 * ```
 */
export async function benchCommand(
  args: string[],
  signal?: AbortSignal,
): Promise<ExitCode> {
  const { values, positionals } = parseCommandArgs("bench", args, OPTIONS);
  if (values.help) {
    printLine(BENCH_HELP);
    return EXIT_CODE.Ok;
  }
  const url = parseUrl("bench", positionals);
  if (positionals.length > 1) {
    throw new UsageError(
      "bench",
      `unexpected argument ${JSON.stringify(positionals[1])}`,
    );
  }
  const connections = parsePositiveInteger(
    "bench",
    "connections",
    values.connections ?? "10",
  );
  const size = parseSize("bench", "size", values.size ?? "32");
  if (size > MAX_SIZE) {
    throw new UsageError(
      "bench",
      `--size must be at most 256M (each connection holds its messages in memory), got ${values.size}`,
    );
  }
  const inFlight = parsePositiveInteger(
    "bench",
    "in-flight",
    values["in-flight"] ?? "1",
  );
  const duration = parseDuration("bench", "duration", values.duration ?? "10s");
  const binary = values.binary ?? false;
  const json = values.json ?? false;
  const headers = parseHeaders("bench", values.header ?? []);
  const caCerts = await readPemFiles("bench", "ca", values.ca ?? []);

  // A stop signal during the handshakes ends them; later, the run.
  const signals = onStopSignals();
  const attempts = await Promise.allSettled(
    Array.from({ length: connections }, () =>
      connect(url, {
        protocols: values.protocol,
        headers,
        caCerts,
        maxPayload: Math.max(DEFAULT_MAX_PAYLOAD, size),
        signal: signals.signal,
      })),
  );
  const sockets = attempts.flatMap((a) =>
    a.status === "fulfilled" ? [a.value] : []
  );
  const failed = attempts.find((a) => a.status === "rejected");
  if (failed !== undefined) {
    signals.remove();
    await Promise.all(sockets.map((socket) => socket.close()));
    const error = (failed as PromiseRejectedResult).reason;
    if (error instanceof TypeError) {
      throw new UsageError("bench", error.message);
    }
    printError(
      signals.signal.aborted
        ? "duplex bench: stopped before the connections opened"
        : `duplex bench: ${describeConnectError(url, error)} (${
          connections - sockets.length
        } of ${connections} connections failed)`,
    );
    return EXIT_CODE.Failure;
  }

  const payload: string | Uint8Array = binary
    ? randomBytes(size)
    : PATTERN.repeat(Math.ceil(size / PATTERN.length)).slice(0, size);
  const run = new Run(payload, size, inFlight);
  const progress = new Progress(json, run);
  const stop = () => run.stop();
  const timer = setTimeout(stop, duration);
  whenStopped(signals.signal, stop);
  signal?.addEventListener("abort", stop, { once: true });
  // Connections that still owe echoes after the drain timeout are closed.
  let drainTimer: ReturnType<typeof setTimeout> | undefined;
  let finished = false;
  run.stopped.then(() => {
    if (finished) return;
    drainTimer = setTimeout(() => {
      for (const socket of sockets) socket.close(1000).catch(() => {});
    }, DRAIN_TIMEOUT);
  });
  try {
    await Promise.all(sockets.map((socket) => run.drive(socket)));
  } finally {
    finished = true;
    clearTimeout(timer);
    clearTimeout(drainTimer);
    progress.end();
    signals.remove();
    signal?.removeEventListener("abort", stop);
    run.stop();
  }
  await Promise.all(sockets.map((socket) => socket.close(1000)));

  const summary = run.summary(url, connections, binary);
  if (json) printLine(JSON.stringify(summary));
  else printReport(summary);
  for (const error of summary.errors) printError(`duplex bench: ${error}`);
  return summary.errors.length === 0 ? EXIT_CODE.Ok : EXIT_CODE.Failure;
}

/** The shared state of one benchmark run. */
class Run {
  readonly histogram = new LatencyHistogram();
  readonly start = performance.now();
  readonly stopped: Promise<void>;
  messages = 0;
  errors: string[] = [];
  #end = 0;
  #sending = true;
  #resolveStopped!: () => void;
  readonly #payload: string | Uint8Array;
  readonly #size: number;
  readonly #inFlight: number;

  constructor(payload: string | Uint8Array, size: number, inFlight: number) {
    this.#payload = payload;
    this.#size = size;
    this.#inFlight = inFlight;
    this.stopped = new Promise((resolve) => this.#resolveStopped = resolve);
  }

  stop(): void {
    if (!this.#sending) return;
    this.#sending = false;
    this.#resolveStopped();
  }

  /** Keeps `inFlight` messages going on one connection until stopped. */
  async drive(socket: Socket): Promise<void> {
    const sentAt = new Float64Array(this.#inFlight);
    let head = 0;
    let tail = 0;
    const send = () => {
      sentAt[tail++ % this.#inFlight] = performance.now();
      return socket.send(this.#payload);
    };
    try {
      for (let i = 0; i < this.#inFlight; i++) send().catch(() => {});
      for await (const message of socket) {
        const now = performance.now();
        if (head === tail) {
          this.#error("the server sent a message that was not an echo");
          return;
        }
        this.histogram.record(now - sentAt[head++ % this.#inFlight]);
        if (
          (typeof message === "string") ===
            (typeof this.#payload !== "string") ||
          message.length !== this.#payload.length
        ) {
          this.#error(
            `the server answered a ${this.#size}-byte ${
              typeof this.#payload === "string" ? "text" : "binary"
            } message with a ${
              typeof message === "string" ? "text" : "binary"
            } message of length ${message.length}: is it an echo server?`,
          );
          return;
        }
        this.messages++;
        this.#end = now;
        if (this.#sending) await send();
        else if (head === tail) return;
      }
    } catch {
      // send() after the connection closed: reported below.
    }
    const info = await socket.closed;
    this.#error(`a connection closed early with ${describeClose(info)}`);
  }

  summary(url: URL, connections: number, binary: boolean): BenchSummary {
    const seconds = Math.max(0, (this.#end || this.start) - this.start) / 1000;
    const bytes = this.messages * this.#size;
    const rate = (n: number) => (seconds > 0 ? n / seconds : 0);
    const h = this.histogram;
    return {
      url: url.href,
      connections,
      size: this.#size,
      binary,
      inFlight: this.#inFlight,
      seconds: round(seconds, 3),
      messages: this.messages,
      messagesPerSecond: round(rate(this.messages), 1),
      bytes,
      megabytesPerSecond: round(rate(bytes) / 1e6, 3),
      latencyMs: {
        p50: round(h.percentile(50), 3),
        p90: round(h.percentile(90), 3),
        p99: round(h.percentile(99), 3),
        max: round(h.max, 3),
        mean: round(h.mean, 3),
      },
      errors: this.errors,
    };
  }

  #error(message: string): void {
    if (this.errors.length < 10) this.errors.push(message);
    this.stop();
  }
}

/** The progress line: rewritten in place on a terminal, else one per second. */
class Progress {
  readonly #timer: ReturnType<typeof setInterval> | undefined;
  readonly #write: ((text: string) => void) | undefined;
  readonly #terminal: boolean;
  #lastMessages = 0;
  #lastTime: number;

  constructor(json: boolean, run: Run) {
    // With --json, stdout is for the summary: progress goes to a terminal
    // stderr or nowhere.
    this.#terminal = json ? Deno.stderr.isTerminal() : Deno.stdout.isTerminal();
    this.#write = json
      ? (this.#terminal ? writeStderr : undefined)
      : writeStdout;
    this.#lastTime = run.start;
    if (this.#write === undefined) return;
    this.#timer = setInterval(() => {
      const now = performance.now();
      const rate = (run.messages - this.#lastMessages) /
        ((now - this.#lastTime) / 1000);
      this.#lastMessages = run.messages;
      this.#lastTime = now;
      const line = `${((now - run.start) / 1000).toFixed(0).padStart(4)}s  ${
        formatCount(rate)
      } msg/s  ${formatCount(run.messages)} echoed  p50 ${
        formatMs(run.histogram.percentile(50))
      }  p99 ${formatMs(run.histogram.percentile(99))}`;
      this.#write!(this.#terminal ? `\r${line}\x1b[K` : `${line}\n`);
    }, PROGRESS_INTERVAL);
  }

  end(): void {
    clearInterval(this.#timer);
    if (this.#terminal && this.#timer !== undefined) this.#write!("\r\x1b[K");
  }
}

function printReport(s: BenchSummary): void {
  const kind = s.binary ? "binary" : "text";
  printLine(
    `Target     ${s.url} (${s.connections} connection${
      s.connections === 1 ? "" : "s"
    }, ${formatBytes(s.size)} ${kind}, ${s.inFlight} in flight each)`,
  );
  printLine(`Duration   ${s.seconds.toFixed(2)} s`);
  printLine(
    `Messages   ${formatCount(s.messages)} echoed, ${
      formatCount(s.messagesPerSecond)
    } msg/s`,
  );
  printLine(`Throughput ${s.megabytesPerSecond.toFixed(2)} MB/s each way`);
  const l = s.latencyMs;
  printLine(
    `Latency    p50 ${formatMs(l.p50)}  p90 ${formatMs(l.p90)}  p99 ${
      formatMs(l.p99)
    }  max ${formatMs(l.max)}`,
  );
}

// The largest message bench sends (a string of more than 512 MiB cannot
// even be made).
const MAX_SIZE = 256 * 1024 * 1024;

function randomBytes(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  // getRandomValues fills at most 65536 bytes per call.
  for (let i = 0; i < size; i += 65536) {
    crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65536)));
  }
  return bytes;
}

function round(value: number, digits: number): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

function formatCount(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

function formatMs(value: number): string {
  return `${value < 10 ? value.toFixed(3) : value.toFixed(1)} ms`;
}

function formatBytes(size: number): string {
  if (size >= 1024 * 1024 && size % (1024 * 1024) === 0) {
    return `${size / (1024 * 1024)} MiB`;
  }
  if (size >= 1024 && size % 1024 === 0) return `${size / 1024} KiB`;
  return `${size} B`;
}
