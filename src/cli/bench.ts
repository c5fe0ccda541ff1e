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
  exitCodeFor,
  printError,
  printLine,
  writeStderr,
  writeStdout,
} from "./_output.ts";
import { describeConnectError, usageErrorFromConnect } from "./_connect.ts";
import { onStopSignals, whenStopped } from "./_signals.ts";
import { EXIT_CODE, type ExitCode } from "./exit_code.ts";

/** The help text of `duplex bench`. */
export const BENCH_HELP =
  `Usage: duplex bench URL [--connections N] [--size S] [--in-flight P]
                    [--duration D] [--binary] [--verify] [--json]
                    [--protocol P]... [--header "K: V"]... [--ca FILE]

An echo load generator: opens N connections to an echo server, keeps P
messages of S bytes in flight on each for D, checks that each reply is the
echo of the next message outstanding (its kind, length and leading sequence
tag; every byte with --verify), and reports echoed messages per second,
payload MB/s (10^6 bytes, one direction) and round-trip latency (p50, p90,
p99, max). Ctrl-C or SIGTERM stops early and reports.

A live progress line is shown on a terminal, one line per second otherwise.
Exits with 1 when a connection fails, closes early, echoes wrongly, or does
not end with a clean closing handshake (1000, 1001 or 1005).

Options:
  --connections N   Concurrent connections (default 10)
  --size S          Message size: 32, 1K, 64KiB, 1M (K = KiB = 1024; default 32)
  --in-flight P     Messages in flight per connection (default 1)
  --duration D      How long to send: 10 (seconds), 10s, 500ms, 1m (default 10s)
  --binary          Send binary messages (default: text)
  --verify          Compare every byte of each echo with what was sent (costs
                    the client a copy and a comparison per message)
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
  verify: { type: "boolean" },
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
  /** What went wrong (at most 10 different entries); empty on success. */
  errors: string[];
}

// How long echoes may lag: after the run ends, and for the first one.
const DRAIN_TIMEOUT = 5_000;
const FIRST_ECHO_TIMEOUT = 5_000;
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
    const usage = usageErrorFromConnect("bench", error);
    if (usage !== undefined) throw usage;
    printError(
      signals.signal.aborted
        ? "duplex bench: stopped before the connections opened"
        : `duplex bench: ${describeConnectError(url, error)} (${
          connections - sockets.length
        } of ${connections} connections failed)`,
    );
    return EXIT_CODE.Failure;
  }

  const run = new Run(binary, size, connections, inFlight, values.verify);
  const progress = new Progress(json, run);
  const stop = () => run.stop();
  const timer = setTimeout(stop, duration);
  whenStopped(signals.signal, stop);
  signal?.addEventListener("abort", stop, { once: true });
  // A server that echoes nothing, or still owes echoes after the drain
  // timeout, is given up on: its connections are closed.
  const giveUp = (error: string) => {
    run.abandon(error);
    for (const socket of sockets) socket.close(1000).catch(() => {});
  };
  const firstEchoTimer = setTimeout(() => {
    if (run.messages === 0) {
      giveUp(
        `no echo arrived within ${
          FIRST_ECHO_TIMEOUT / 1000
        } s of the start: is it an echo server?`,
      );
    }
  }, FIRST_ECHO_TIMEOUT);
  let drainTimer: ReturnType<typeof setTimeout> | undefined;
  let finished = false;
  run.stopped.then(() => {
    if (finished || run.isDrained) return;
    drainTimer = setTimeout(() => {
      const missing = run.outstanding;
      giveUp(
        `${missing} echo${missing === 1 ? "" : "es"} still missing ${
          DRAIN_TIMEOUT / 1000
        } s after the run ended: is it an echo server?`,
      );
    }, DRAIN_TIMEOUT);
  });
  const drives = sockets.map((socket, i) => run.drive(socket, i));
  try {
    // Once every echo is back, the connections close, and are read until
    // their close frames arrive: an echo server sends nothing more, so any
    // message then is a reply to nothing (see Run.drive).
    await run.drained;
    clearTimeout(firstEchoTimer);
    clearTimeout(drainTimer);
    run.closing = true;
    await Promise.all(sockets.map((socket) => socket.close(1000)));
    await Promise.all(drives);
  } finally {
    finished = true;
    clearTimeout(timer);
    clearTimeout(firstEchoTimer);
    clearTimeout(drainTimer);
    progress.end();
    signals.remove();
    signal?.removeEventListener("abort", stop);
    run.stop();
  }

  const summary = run.summary(url, connections, binary);
  try {
    if (json) printLine(JSON.stringify(summary));
    else printReport(summary);
  } catch (error) {
    // The reader of stdout went away (`duplex bench ... | head -1`).
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
  }
  for (const error of summary.errors) printError(`duplex bench: ${error}`);
  return summary.errors.length === 0 ? EXIT_CODE.Ok : EXIT_CODE.Failure;
}

/**
 * The shared state of one benchmark run.
 *
 * Each message starts with a tag, a per-connection sequence number (from a
 * random start, so that connections differ), which identifies its echo:
 * replies must come back in order, each the echo of the next message
 * outstanding. Only the tag, the kind and the length are checked, so
 * checking costs little, unless `verify` asks for every byte (binary
 * messages are then copies, since those in flight share one buffer). Messages shorter than the tag carry part of it, and
 * empty ones none: what catches a server that is not an echo server at any
 * size is counting. An echo server sends one reply per message, so a
 * connection that receives a reply with nothing in flight (while it keeps
 * sending, each reply is paired with a message outstanding; once the run
 * ends and its echoes are back, it reads on until its close frame arrives)
 * is talking to something else: a broadcast server, or one that replies
 * twice.
 */
class Run {
  readonly histogram = new LatencyHistogram();
  readonly start = performance.now();
  readonly stopped: Promise<void>;
  /** Resolves once every connection has all its echoes back, or is done. */
  readonly drained: Promise<void>;
  /** Set once the connections are being closed on purpose, at the end. */
  closing = false;
  messages = 0;
  /** Messages sent and not echoed yet, on all connections. */
  outstanding = 0;
  errors: string[] = [];
  #end = 0;
  #sending = true;
  #abandoned = false;
  #resolveStopped!: () => void;
  #resolveDrained!: () => void;
  #undrained: number;
  readonly #binary: boolean;
  readonly #verify: boolean;
  readonly #size: number;
  readonly #inFlight: number;
  readonly #tagLength: number;
  readonly #tags: number;
  // Text: the message after its tag. Binary: one buffer for every message
  // in flight (see #binaryMessage).
  readonly #text: string;
  readonly #bytes: Uint8Array;

  constructor(
    binary: boolean,
    size: number,
    connections: number,
    inFlight: number,
    verify = false,
  ) {
    this.#binary = binary;
    this.#verify = verify;
    this.#size = size;
    this.#inFlight = inFlight;
    this.#tagLength = Math.min(size, binary ? 6 : 8);
    this.#tags = (binary ? 256 : 36) ** this.#tagLength;
    this.#text = binary
      ? ""
      : PATTERN.repeat(Math.ceil(size / PATTERN.length)).slice(
        this.#tagLength,
        size,
      );
    this.#bytes = binary
      ? randomBytes(size + (connections * inFlight - 1) * this.#tagLength)
      : new Uint8Array(0);
    this.stopped = new Promise((resolve) => this.#resolveStopped = resolve);
    this.drained = new Promise((resolve) => this.#resolveDrained = resolve);
    this.#undrained = connections;
  }

  /** Whether every connection has all its echoes back, or is done. */
  get isDrained(): boolean {
    return this.#undrained === 0;
  }

  stop(): void {
    if (!this.#sending) return;
    this.#sending = false;
    this.#resolveStopped();
  }

  /** Records why the run was given up on; connections closing are expected. */
  abandon(error: string): void {
    this.#abandoned = true;
    this.#error(error);
  }

  /**
   * Keeps `inFlight` messages going on one connection until stopped, then
   * reads on until the connection closes: a message that arrives once every
   * echo is back is not an echo.
   */
  async drive(socket: Socket, connection: number): Promise<void> {
    const sentAt = new Float64Array(this.#inFlight);
    // With verify, what each message in flight was, to compare its echo.
    const sent: (string | Uint8Array)[] = this.#verify
      ? new Array(this.#inFlight)
      : [];
    const first = Math.floor(Math.random() * this.#tags);
    let head = 0;
    let tail = 0;
    let drained = false;
    let early = false;
    const drain = () => {
      if (drained) return;
      drained = true;
      if (--this.#undrained === 0) this.#resolveDrained();
    };
    const send = () => {
      let message = this.#message(connection, tail, first + tail);
      if (this.#verify) {
        // (Binary messages in flight share one buffer: keep a copy.)
        if (typeof message !== "string") message = message.slice();
        sent[tail % this.#inFlight] = message;
      }
      sentAt[tail++ % this.#inFlight] = performance.now();
      this.outstanding++;
      return socket.send(message);
    };
    try {
      for (let i = 0; i < this.#inFlight; i++) send().catch(() => {});
      for await (const message of socket) {
        const now = performance.now();
        if (
          typeof message === "string" === this.#binary ||
          message.length !== this.#size
        ) {
          this.#error(
            `the server answered a ${this.#size}-byte ${
              this.#binary ? "binary" : "text"
            } message with a ${
              typeof message === "string" ? "text" : "binary"
            } message of length ${message.length}: is it an echo server?`,
          );
          return;
        }
        if (head === tail || !this.#isEcho(message, first + head)) {
          this.#error(
            "the server sent a message that is not an echo of what was sent: is it an echo server?",
          );
          return;
        }
        if (this.#verify) {
          const at = firstDifference(message, sent[head % this.#inFlight]);
          if (at !== -1) {
            this.#error(
              `the server echoed a message that differs from what was sent, first at ${
                typeof message === "string" ? "character" : "byte"
              } ${at}`,
            );
            return;
          }
        }
        this.histogram.record(now - sentAt[head++ % this.#inFlight]);
        this.outstanding--;
        this.messages++;
        this.#end = now;
        if (this.#sending) await send();
        else if (head === tail) drain();
      }
    } catch {
      // send() after the connection closed: reported below.
    } finally {
      // Closed on purpose at the end, or early (told before draining lets
      // the end begin).
      early = !this.closing;
      drain();
    }
    const info = await socket.closed;
    if (this.#abandoned) return;
    if (early) {
      this.#error(`a connection closed early with ${describeClose(info)}`);
    } else if (exitCodeFor(info) !== EXIT_CODE.Ok) {
      this.#error(
        `a connection's closing handshake ended with ${describeClose(info)}${
          info.wasClean ? "" : " (no close frame answered ours)"
        }`,
      );
    }
  }

  /** Message number `sequence` of a connection, tagged with `tag`. */
  #message(
    connection: number,
    sequence: number,
    tag: number,
  ): string | Uint8Array {
    tag %= this.#tags;
    if (!this.#binary) {
      return this.#textTag(tag) + this.#text;
    }
    // The messages in flight are views of one buffer at different offsets,
    // each starting with its own tag. Writing a tag changes the middle of
    // other messages in flight, which is never checked; a message's own tag
    // is written again only once its echo is back (its slot is free).
    const slot = connection * this.#inFlight + sequence % this.#inFlight;
    const offset = slot * this.#tagLength;
    for (let i = this.#tagLength - 1; i >= 0; i--) {
      this.#bytes[offset + i] = tag % 256;
      tag = Math.floor(tag / 256);
    }
    return this.#bytes.subarray(offset, offset + this.#size);
  }

  /** A text message's tag: empty for empty messages. */
  #textTag(tag: number): string {
    return this.#tagLength === 0
      ? ""
      : tag.toString(36).padStart(this.#tagLength, "0");
  }

  /** Whether `message` starts with `tag`, as {@linkcode #message} wrote it. */
  #isEcho(message: string | Uint8Array, tag: number): boolean {
    tag %= this.#tags;
    if (typeof message === "string") {
      return message.startsWith(this.#textTag(tag));
    }
    let value = 0;
    for (let i = 0; i < this.#tagLength; i++) value = value * 256 + message[i];
    return value === tag;
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
    // Each connection may find the same fault: it is reported once.
    if (this.errors.length < 10 && !this.errors.includes(message)) {
      this.errors.push(message);
    }
    this.stop();
  }
}

/** The progress line: rewritten in place on a terminal, else one per second. */
class Progress {
  readonly #timer: ReturnType<typeof setInterval> | undefined;
  readonly #write: ((text: string) => void) | undefined;
  readonly #terminal: boolean;
  #gone = false;
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
      try {
        this.#write!(this.#terminal ? `\r${line}\x1b[K` : `${line}\n`);
      } catch (error) {
        // The reader went away (`duplex bench ... | head -1`): no one sees
        // the rest, so the run ends (and its connections close with 1000).
        if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
        this.#gone = true;
        clearInterval(this.#timer);
        run.stop();
      }
    }, PROGRESS_INTERVAL);
  }

  end(): void {
    clearInterval(this.#timer);
    if (this.#terminal && this.#timer !== undefined && !this.#gone) {
      this.#write!("\r\x1b[K");
    }
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

/** Where `a` and `b` (of the same kind and length) first differ, or -1. */
function firstDifference(
  a: string | Uint8Array,
  b: string | Uint8Array,
): number {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return i;
  }
  return -1;
}

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
