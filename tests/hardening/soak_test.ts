/**
 * Soak: many concurrent connections on loopback, messages on every one of
 * them for a bounded time, then a clean close of all, and a check that
 * nothing leaked. Skipped unless `DUPLEX_SOAK=1`:
 *
 * ```sh
 * deno task soak                                        # 10000 connections
 * DUPLEX_SOAK=1 DUPLEX_SOAK_CONNECTIONS=2000 deno test -A tests/hardening/soak_test.ts
 * ```
 *
 * The server runs in a child process (`_soak_server.ts`): client and server
 * then each need one descriptor per connection, not two in one process. The
 * client side is cheap on purpose: raw `Deno.connect` sockets, a hand-made
 * handshake and hand-made masked frames. Connections answer the server's
 * keepalive pings. Memory is measured on the server after a full GC; the
 * RSS per idle connection is printed.
 *
 * Environment: `DUPLEX_SOAK_CONNECTIONS` (default 10000),
 * `DUPLEX_SOAK_SECONDS` (time for the message phase, default 20).
 *
 * @module
 */
import assert from "node:assert/strict";
import type { ServerStats } from "../../mod.ts";
import { findHeadEnd } from "../../src/protocol/_bytes.ts";

const ENABLED = Deno.env.get("DUPLEX_SOAK") === "1";
const REQUESTED = Number(Deno.env.get("DUPLEX_SOAK_CONNECTIONS") ?? 10_000);
const MESSAGE_SECONDS = Number(Deno.env.get("DUPLEX_SOAK_SECONDS") ?? 20);
/** Descriptors each process keeps for itself besides the connections. */
const FD_HEADROOM = 200;
/** Handshakes in flight at once (the listen backlog is finite). */
const CONNECT_CONCURRENCY = 500;
/** Longest any phase may take before the test fails. */
const PHASE_DEADLINE = 90_000;

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();
const MASK = Uint8Array.of(0x11, 0x22, 0x33, 0x44);

/** A masked client frame (payload under 64 KiB). */
function clientFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const extended = payload.length < 126 ? 0 : 2;
  const frame = new Uint8Array(6 + extended + payload.length);
  frame[0] = 0x80 | opcode;
  if (extended === 0) frame[1] = 0x80 | payload.length;
  else {
    frame[1] = 0x80 | 126;
    frame[2] = payload.length >> 8;
    frame[3] = payload.length & 0xff;
  }
  frame.set(MASK, 2 + extended);
  const start = 6 + extended;
  for (let i = 0; i < payload.length; i++) {
    frame[start + i] = payload[i] ^ MASK[i & 3];
  }
  return frame;
}

interface Frame {
  opcode: number;
  payload: Uint8Array;
}

/**
 * One raw client connection. After the handshake a read loop parses the
 * server's frames, answers keepalive pings at once, and queues the rest.
 */
class SoakClient {
  readonly conn: Deno.Conn;
  #buffer = new Uint8Array(0);
  readonly #frames: Frame[] = [];
  #waiter: ((frame: Frame | null) => void) | null = null;
  #eof = false;
  #reading: Promise<void> = Promise.resolve();
  sent = 0;
  received = 0;
  pongs = 0;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  async #fill(): Promise<boolean> {
    const chunk = new Uint8Array(4096);
    const n = await this.conn.read(chunk).catch(() => null);
    if (n === null) return false;
    const joined = new Uint8Array(this.#buffer.length + n);
    joined.set(this.#buffer);
    joined.set(chunk.subarray(0, n), this.#buffer.length);
    this.#buffer = joined;
    return true;
  }

  async handshake(port: number): Promise<void> {
    await this.write(utf8.encode(
      `GET /soak HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
        "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
        "Sec-WebSocket-Version: 13\r\n\r\n",
    ));
    let end = -1;
    while ((end = findHeadEnd(this.#buffer, 0, this.#buffer.length)) === -1) {
      if (!await this.#fill()) throw new Error("EOF during the handshake");
    }
    const head = utf8Decoder.decode(this.#buffer.subarray(0, end));
    assert.match(head, /^HTTP\/1\.1 101 /, head.split("\r\n")[0]);
    this.#buffer = this.#buffer.slice(end);
    this.#reading = this.#readLoop();
  }

  async write(bytes: Uint8Array): Promise<void> {
    while (bytes.length > 0) {
      bytes = bytes.subarray(await this.conn.write(bytes));
    }
  }

  async #readLoop(): Promise<void> {
    do {
      for (let frame; (frame = this.#parse()) !== null;) {
        if (frame.opcode === 0x9) {
          this.pongs++;
          await this.write(clientFrame(0xa, frame.payload)).catch(() => {});
        } else if (frame.opcode !== 0xa) this.#push(frame);
      }
    } while (await this.#fill());
    this.#eof = true;
    this.#waiter?.(null);
  }

  /** One complete frame from the buffer, or `null`. */
  #parse(): Frame | null {
    const b = this.#buffer;
    if (b.length < 2) return null;
    let length = b[1] & 0x7f;
    let offset = 2;
    if (length === 126) {
      if (b.length < 4) return null;
      length = (b[2] << 8) | b[3];
      offset = 4;
    } else if (length === 127) {
      throw new Error("no soak message needs a 64-bit length");
    }
    if (b.length < offset + length) return null;
    this.#buffer = b.slice(offset + length);
    return { opcode: b[0] & 0x0f, payload: b.slice(offset, offset + length) };
  }

  #push(frame: Frame): void {
    const waiter = this.#waiter;
    this.#waiter = null;
    if (waiter) waiter(frame);
    else this.#frames.push(frame);
  }

  /** The next data or close frame. */
  async next(): Promise<Frame> {
    const queued = this.#frames.shift();
    if (queued) return queued;
    if (this.#eof) throw new Error("the server closed the connection");
    const frame = await new Promise<Frame | null>((resolve) =>
      this.#waiter = resolve
    );
    if (frame === null) throw new Error("the server closed the connection");
    return frame;
  }

  /** One round: a text and a binary message, and both echoes checked. */
  async round(id: number, round: number): Promise<void> {
    const text = `c${id} r${round} ${"x".repeat(id % 50)}`;
    const binary = new Uint8Array(16 + (id % 200)).fill(round & 0xff);
    new DataView(binary.buffer).setUint32(0, id);
    await this.write(
      concat(clientFrame(0x1, utf8.encode(text)), clientFrame(0x2, binary)),
    );
    this.sent += 2;
    const first = await this.next();
    assert.equal(first.opcode, 0x1);
    assert.equal(utf8Decoder.decode(first.payload), text);
    this.received++;
    const second = await this.next();
    assert.equal(second.opcode, 0x2);
    assert.deepEqual(second.payload, binary);
    this.received++;
  }

  /** The closing handshake: close, the server's close, then its EOF. */
  async close(): Promise<number> {
    await this.write(clientFrame(0x8, Uint8Array.of(0x03, 0xe8)));
    const frame = await this.next();
    assert.equal(frame.opcode, 0x8);
    const code = (frame.payload[0] << 8) | frame.payload[1];
    // The server closes the TCP connection first (RFC 6455 §7.1.1).
    await this.#reading;
    assert.ok(this.#eof, "EOF after the close frame");
    this.conn.close();
    return code;
  }

  /** Closes the socket at once and waits for the read loop (cleanup). */
  async abort(): Promise<void> {
    try {
      this.conn.close();
    } catch {
      // Closed already.
    }
    await this.#reading;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

async function withDeadline<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${what}: over ${PHASE_DEADLINE} ms`)),
          PHASE_DEADLINE,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `task` over `items` with at most `limit` in flight. */
async function pool<T>(
  items: T[],
  limit: number,
  task: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const index = next++;
        await task(items[index], index);
      }
    }),
  );
}

interface Sample {
  connections: number;
  stats: ServerStats;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  fds: number;
}

/** The server child process and its line protocol. */
class SoakServer implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: AsyncIterator<string>;
  port = 0;

  constructor(connections: number) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--v8-flags=--expose-gc",
        new URL("./_soak_server.ts", import.meta.url).pathname,
      ],
      env: { SOAK_MAX_CONNECTIONS: String(connections) },
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#writer = this.#child.stdin.getWriter();
    this.#lines = lines(this.#child.stdout);
  }

  async start(): Promise<void> {
    const hello = JSON.parse(await this.#line());
    assert.equal(hello.type, "listening");
    this.port = hello.port;
  }

  async #line(): Promise<string> {
    const { value, done } = await withDeadline(
      this.#lines.next(),
      "a line from the soak server",
    );
    if (done) throw new Error("the soak server exited");
    return value;
  }

  async command(command: "sample" | "gc" | "shutdown"): Promise<Sample> {
    await this.#writer.write(utf8.encode(command + "\n"));
    return JSON.parse(await this.#line());
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#writer.close().catch(() => {});
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Exited already.
    }
    await this.#child.status;
    await this.#lines.return?.();
  }
}

async function* lines(stream: ReadableStream<Uint8Array>) {
  let pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    pending += chunk;
    let newline;
    while ((newline = pending.indexOf("\n")) !== -1) {
      yield pending.slice(0, newline);
      pending = pending.slice(newline + 1);
    }
  }
}

async function openFileLimit(): Promise<number> {
  const { stdout } = await new Deno.Command("sh", {
    args: ["-c", "ulimit -n"],
    stdout: "piped",
  }).output();
  const text = utf8Decoder.decode(stdout).trim();
  return text === "unlimited" ? Infinity : Number(text);
}

const MiB = 1024 * 1024;
const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;

/** Opens `count` connections, at most CONNECT_CONCURRENCY at a time. */
async function openAll(port: number, count: number): Promise<SoakClient[]> {
  const clients: SoakClient[] = [];
  try {
    await withDeadline(
      pool(Array.from({ length: count }), CONNECT_CONCURRENCY, async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        const client = new SoakClient(conn);
        clients.push(client);
        await client.handshake(port);
      }),
      "opening the connections",
    );
  } catch (error) {
    await Promise.all(clients.map((client) => client.abort()));
    throw error;
  }
  return clients;
}

/** One round trip of two messages on every connection. */
async function roundAll(clients: SoakClient[], round: number): Promise<void> {
  await withDeadline(
    Promise.all(clients.map((client, id) => client.round(id, round))),
    `message round ${round}`,
  );
}

/** The closing handshake on every connection; returns the close codes. */
async function closeAll(clients: SoakClient[]): Promise<[number, number][]> {
  const codes = new Map<number, number>();
  await withDeadline(
    pool(clients, CONNECT_CONCURRENCY, async (client) => {
      const code = await client.close();
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }),
    "closing the connections",
  );
  return [...codes];
}

/** Samples (after GC) until the server has no connection left. */
async function drained(server: SoakServer): Promise<Sample> {
  const deadline = performance.now() + PHASE_DEADLINE;
  let sample = await server.command("gc");
  while (sample.connections > 0 && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    sample = await server.command("gc");
  }
  return sample;
}

const seconds = (since: number) =>
  `${((performance.now() - since) / 1000).toFixed(1)} s`;

Deno.test({
  name:
    "soak: thousands of concurrent connections exchange messages, close cleanly, and leave nothing behind",
  ignore: !ENABLED,
}, async () => {
  const limit = await openFileLimit();
  const n = Math.min(REQUESTED, limit - FD_HEADROOM);
  if (n < REQUESTED) {
    console.log(
      `note: open-file limit ${limit}; scaled down from ${REQUESTED} to ${n} connections`,
    );
  }
  assert.ok(n > 0, `open-file limit ${limit} is too low`);
  await using server = new SoakServer(n);
  await server.start();
  const baseline = await server.command("gc");
  const clientBaseline = Deno.memoryUsage().rss;
  const timings: [string, string][] = [];
  let clients: SoakClient[] = [];
  try {
    // Cycle 1. Open every connection.
    let started = performance.now();
    clients = await openAll(server.port, n);
    timings.push(["open (handshakes)", seconds(started)]);
    // Stay idle past pingInterval (5 s): every socket gets a keepalive ping,
    // which its read loop answers.
    started = performance.now();
    let idle = await server.command("gc");
    while (
      idle.stats.pingRtt.count < n && performance.now() - started < 30_000
    ) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      idle = await server.command("gc");
    }
    timings.push(["idle until every socket was pinged", seconds(started)]);
    assert.equal(idle.connections, n);
    assert.ok(idle.stats.pingRtt.count >= n, "every socket was pinged");
    const clientRss = Deno.memoryUsage().rss - clientBaseline;

    // Messages on every connection, in rounds, for a bounded time.
    started = performance.now();
    const until = started + MESSAGE_SECONDS * 1000;
    let rounds = 0;
    while (rounds === 0 || performance.now() < until) {
      await roundAll(clients, rounds++);
    }
    const messageTime = (performance.now() - started) / 1000;
    const busy = await server.command("gc");
    const sent = clients.reduce((sum, c) => sum + c.sent, 0);
    const received = clients.reduce((sum, c) => sum + c.received, 0);
    assert.equal(received, sent, "every message came back");
    assert.equal(sent, n * rounds * 2);
    assert.equal(busy.stats.messagesReceived, sent);
    assert.equal(busy.stats.messagesSent, sent);
    assert.equal(busy.stats.backpressureDrops, 0);
    timings.push([
      "messages",
      `${sent} echoed in ${rounds} rounds, ${messageTime.toFixed(1)} s (${
        Math.round(2 * sent / messageTime)
      } msg/s both ways)`,
    ]);

    // Close every connection with a closing handshake.
    started = performance.now();
    assert.deepEqual(await closeAll(clients), [[1000, n]]);
    clients = [];
    const after1 = await drained(server);
    timings.push(["close (closing handshakes)", seconds(started)]);

    // Cycle 2: the same again, briefly. A leak per connection would show as
    // growth over the first cycle's high-water mark.
    started = performance.now();
    clients = await openAll(server.port, n);
    await roundAll(clients, 0);
    assert.deepEqual(await closeAll(clients), [[1000, n]]);
    clients = [];
    const after2 = await drained(server);
    timings.push(["second cycle (open, 1 round, close)", seconds(started)]);

    const grown = idle.rss - baseline.rss;
    const row = (label: string, value: string) =>
      console.log(`  ${label.padEnd(38)} ${value}`);
    console.log(`soak: ${n} connections`);
    for (const [label, value] of timings) row(label, value);
    row(
      "keepalive",
      `${idle.stats.pingRtt.count} pongs received, mean RTT ${
        idle.stats.pingRtt.mean.toFixed(1)
      } ms`,
    );
    row(
      "server RSS per idle connection",
      `${(grown / n / 1024).toFixed(1)} KiB (JS heap ${
        ((idle.heapUsed - baseline.heapUsed) / n / 1024).toFixed(1)
      } KiB)`,
    );
    row(
      "server RSS base/idle/busy/closed/2nd",
      [baseline, idle, busy, after1, after2].map((x) => mib(x.rss)).join(
        " / ",
      ),
    );
    row(
      "server heap base/idle/busy/closed/2nd",
      [baseline, idle, busy, after1, after2].map((x) => mib(x.heapUsed))
        .join(" / "),
    );
    row(
      "server heap committed b/i/b/c/2nd",
      [baseline, idle, busy, after1, after2].map((x) => mib(x.heapTotal))
        .join(" / "),
    );
    row(
      "server external base/idle/busy/closed/2nd",
      [baseline, idle, busy, after1, after2].map((x) => mib(x.external))
        .join(" / "),
    );
    row(
      "server descriptors base/idle/closed/2nd",
      [baseline, idle, after1, after2].map((x) => x.fds).join(" / "),
    );
    row("client RSS for the connections", mib(clientRss));

    // Nothing leaked.
    for (const [cycle, after] of [[1, after1], [2, after2]] as const) {
      assert.equal(after.connections, 0);
      assert.equal(after.stats.openConnections, 0);
      assert.equal(after.stats.totalConnections, n * cycle);
      assert.deepEqual(after.stats.closeCodes, { 1000: n * cycle });
      assert.deepEqual(after.stats.handshakeRejections, {});
      assert.ok(
        after.fds <= baseline.fds + 5,
        `descriptors: ${baseline.fds} before, ${after.fds} after cycle ${cycle}`,
      );
    }
    assert.equal(after2.stats.messagesReceived, sent + 2 * n);
    // The JS heap returns to its baseline; generous: 1 KiB per connection
    // left behind would be 10 MiB at 10000.
    assert.ok(
      after2.heapUsed - baseline.heapUsed <= Math.max(4 * MiB, n * 256),
      `heap ${mib(after2.heapUsed - baseline.heapUsed)} above baseline`,
    );
    // RSS stays near the high-water mark (allocators keep freed pages), but
    // a second cycle must not raise it much.
    assert.ok(
      after2.rss - after1.rss <= Math.max(32 * MiB, grown / 4),
      `RSS grew ${mib(after2.rss - after1.rss)} over a second cycle`,
    );
    const final = await server.command("shutdown");
    assert.equal(final.connections, 0);
  } finally {
    await Promise.all(clients.map((client) => client.abort()));
  }
});
