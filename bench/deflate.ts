// permessage-deflate echo benchmark: Duplex (without and with context takeover) against
// npm:ws with permessage-deflate on, all in one run. N npm:ws clients with deflate echo
// 1 KiB JSON-like text messages (P in flight each) for a fixed time; reported per server:
// msg/s, the ratio to npm:ws, server CPU, server RSS per idle connection (/proc/PID/status
// VmRSS after a first warm-up connection and after the other N - 1 connect) and how much
// the RSS grew by the end of the load.
//
//   deno task bench:deflate                          # 100 clients, 3 s per server, 1 round
//   deno task bench:deflate -- --clients 64 --duration 5 --rounds 3 --inflight 4
//   deno task bench:deflate -- --servers duplex,ws   # a subset
//
// npm:ws runs under Node when `node` and ../shared/bench's `ws` (installed by
// `deno task bench` into bench/.work/peers/node_modules) are there, else under Deno; the
// load generator (bench/peers/deflate_load.mjs) runs the same way, for every server.
// Internal: `deno run -A bench/deflate.ts serve duplex|duplex-ctx` is the Duplex server.
import { serve } from "../mod.ts";

const BENCH = new URL(".", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;
const WORK_PEERS = `${BENCH}.work/peers`;
const MiB = 1024 * 1024;

interface Options {
  clients: number;
  inflight: number;
  warmup: number;
  duration: number;
  rounds: number;
  servers: string[];
}

function parseOptions(args: string[]): Options {
  const options: Options = {
    clients: 100,
    inflight: 1,
    warmup: 0.5,
    duration: 3,
    rounds: 1,
    servers: ["duplex", "duplex-ctx", "ws", "ws-nctx"],
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") continue;
    const value = args[++i];
    switch (arg) {
      case "--clients":
      case "--inflight":
      case "--warmup":
      case "--duration":
      case "--rounds": {
        const n = Number(value);
        if (!(n > 0)) {
          throw new RangeError(
            `bench: ${arg} must be a positive number, got ${value}`,
          );
        }
        options[arg.slice(2) as "clients"] = n;
        break;
      }
      case "--servers":
        options.servers = value.split(",");
        break;
      default:
        throw new TypeError(`bench: unknown argument ${arg}`);
    }
  }
  return options;
}

/** How each peer program runs: under Node from bench/.work/peers, or under Deno. */
async function runners(): Promise<
  { js: (file: string) => string[]; runtime: string }
> {
  let node = false;
  try {
    const out = await new Deno.Command("node", {
      args: ["--version"],
      stdout: "null",
    })
      .output();
    node = out.success;
  } catch {
    node = false;
  }
  const installed = await exists(`${WORK_PEERS}/node_modules/ws/package.json`);
  if (node && installed) {
    for (const file of ["node_ws_deflate.mjs", "deflate_load.mjs"]) {
      await Deno.copyFile(`${BENCH}peers/${file}`, `${WORK_PEERS}/${file}`);
    }
    const version = JSON.parse(
      await Deno.readTextFile(`${WORK_PEERS}/node_modules/ws/package.json`),
    ).version;
    return {
      js: (file) => ["node", `${WORK_PEERS}/${file}`],
      runtime: `Node ${await nodeVersion()} + ws ${version}`,
    };
  }
  return {
    js: (
      file,
    ) => [Deno.execPath(), "run", "-A", "--quiet", `${BENCH}peers/${file}`],
    runtime: `Deno ${Deno.version.deno} + npm:ws`,
  };
}

async function nodeVersion(): Promise<string> {
  const out = await new Deno.Command("node", { args: ["--version"] }).output();
  return new TextDecoder().decode(out.stdout).trim();
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** A child process with its stdout read line by line. */
class Child {
  readonly process: Deno.ChildProcess;
  readonly #lines: AsyncIterator<string>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array> | null;

  constructor(command: string[], stdin = false) {
    this.process = new Deno.Command(command[0], {
      args: command.slice(1),
      cwd: ROOT,
      stdin: stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#writer = stdin ? this.process.stdin.getWriter() : null;
    this.#lines = lines(this.process.stdout)[Symbol.asyncIterator]();
  }

  get pid(): number {
    return this.process.pid;
  }

  async line(what: string, ms = 30_000): Promise<string> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const result = await Promise.race([
        this.#lines.next(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`bench: timed out waiting for ${what}`)),
            ms,
          );
        }),
      ]);
      if (result.done) throw new Error(`bench: ${what}: the process ended`);
      return result.value;
    } finally {
      clearTimeout(timer);
    }
  }

  async write(text: string): Promise<void> {
    await this.#writer!.write(new TextEncoder().encode(text));
  }

  async stop(): Promise<void> {
    try {
      this.process.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await this.#writer?.close().catch(() => {});
    await this.process.status;
    await this.#lines.return?.();
  }
}

async function* lines(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<string> {
  let rest = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    rest += text;
    let newline;
    while ((newline = rest.indexOf("\n")) !== -1) {
      yield rest.slice(0, newline);
      rest = rest.slice(newline + 1);
    }
  }
  if (rest !== "") yield rest;
}

/** VmRSS (or another field) of a process, in bytes. */
async function status(pid: number, field = "VmRSS"): Promise<number> {
  const text = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(text)?.[1]) *
    1024;
}

/** utime + stime of a process, in seconds. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14 and 15 of /proc/PID/stat (utime, stime), counted from "state" as 3.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function expect(child: Child, line: string): Promise<void> {
  const got = await child.line(`the load generator to say "${line}"`);
  if (got !== line) throw new Error(`bench: expected "${line}", got "${got}"`);
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Result {
  server: string;
  msgPerSec: number;
  cpu: number;
  rssIdle: number;
  rssLoaded: number;
  errors: number;
  extensions: string;
}

async function measure(
  server: string,
  options: Options,
  js: (file: string) => string[],
): Promise<Result> {
  const command = server.startsWith("duplex")
    ? [
      Deno.execPath(),
      "run",
      "-A",
      "--quiet",
      `${BENCH}deflate.ts`,
      "serve",
      server,
    ]
    : js("node_ws_deflate.mjs").concat(
      server === "ws-nctx" ? ["nctx"] : ["ctx"],
    );
  const child = new Child(command);
  let load: Child | null = null;
  try {
    const port = Number(
      (await child.line(`${server} to listen`)).split(" ")[1],
    );
    load = new Child(
      js("deflate_load.mjs").concat([
        `ws://127.0.0.1:${port}/`,
        String(options.clients),
        String(options.inflight),
        String(options.warmup),
        String(options.duration),
      ]),
      true,
    );
    // One connection first, so that loading the server's code is not
    // counted as the connections' memory.
    await expect(load, "warm");
    await delay(300);
    const before = await status(child.pid);
    await load.write("more\n");
    await expect(load, "connected");
    await delay(300);
    const idle = await status(child.pid);
    const cpuBefore = await cpuSeconds(child.pid);
    const start = performance.now();
    await load.write("go\n");
    const report = JSON.parse(await load.line("the load report", 60_000));
    const cpu = (await cpuSeconds(child.pid) - cpuBefore) /
      ((performance.now() - start) / 1000);
    const loaded = await status(child.pid);
    return {
      server,
      msgPerSec: report.messages / report.seconds,
      cpu,
      rssIdle: (idle - before) / (options.clients - 1),
      rssLoaded: loaded - before,
      errors: report.errors,
      extensions: report.extensions,
    };
  } finally {
    await load?.stop();
    await child.stop();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

const LABELS: Record<string, string> = {
  "duplex": "Duplex, `perMessageDeflate: true` (no context takeover)",
  "duplex-ctx": "Duplex, `serverNoContextTakeover: false`",
  "ws": "npm:ws, `perMessageDeflate: true` (context takeover)",
  "ws-nctx": "npm:ws, no context takeover either way",
  "duplex-plain": "Duplex without permessage-deflate (reference)",
};

async function main(): Promise<void> {
  const options = parseOptions(Deno.args);
  const { js, runtime } = await runners();
  const results = new Map<string, Result[]>();
  // Interleaved: A B C D, A B C D, ...
  for (let round = 0; round < options.rounds; round++) {
    for (const server of options.servers) {
      const result = await measure(server, options, js);
      console.error(
        `# round ${round + 1} ${server}: ${
          result.msgPerSec.toFixed(0)
        } msg/s, ` +
          `${result.errors} bad echoes, extensions "${result.extensions}"`,
      );
      results.set(server, [...(results.get(server) ?? []), result]);
    }
  }
  const summary = options.servers.map((server) => {
    const runs = results.get(server)!;
    return {
      server,
      msgPerSec: median(runs.map((r) => r.msgPerSec)),
      cpu: median(runs.map((r) => r.cpu)),
      rssIdle: median(runs.map((r) => r.rssIdle)),
      rssLoaded: median(runs.map((r) => r.rssLoaded)),
      errors: runs.reduce((sum, r) => sum + r.errors, 0),
    };
  });
  const baseline = summary.find((s) => s.server === "ws")?.msgPerSec;
  const kib = (bytes: number) => (bytes / 1024).toFixed(1);
  const out = [
    `permessage-deflate echo: ${options.clients} npm:ws clients with deflate, ` +
    `${options.inflight} in flight each, 1 KiB JSON-like text, ` +
    `${options.duration} s per server (after ${options.warmup} s warm-up), ` +
    `median of ${options.rounds} round(s); peers and load under ${runtime}; ` +
    `${Deno.build.os}/${Deno.build.arch}, ${navigator.hardwareConcurrency} CPUs, ` +
    `Deno ${Deno.version.deno}, ${new Date().toISOString().slice(0, 10)}`,
    "",
    "| server | msg/s | vs npm:ws | server CPU | server CPU µs/msg | RSS/conn idle (KiB) | RSS growth under load (MiB) | bad echoes |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...summary.map((s) =>
      `| ${LABELS[s.server] ?? s.server} | ${s.msgPerSec.toFixed(0)} | ${
        baseline ? (s.msgPerSec / baseline).toFixed(2) : "-"
      } | ${(s.cpu * 100).toFixed(0)}% | ${
        (s.cpu / s.msgPerSec * 1e6).toFixed(0)
      } | ${kib(s.rssIdle)} | ${(s.rssLoaded / MiB).toFixed(1)} | ${s.errors} |`
    ),
  ];
  console.log(out.join("\n"));
}

/** The Duplex server under test, in its own process. */
function serveDuplex(mode: string): void {
  serve({
    hostname: "127.0.0.1",
    port: 0,
    maxPayload: 64 * MiB,
    perMessageDeflate: mode === "duplex-ctx"
      ? { serverNoContextTakeover: false }
      : mode !== "duplex-plain",
    onListen: (addr) => console.log(`listening ${addr.port}`),
  }, async (socket) => {
    for await (const message of socket) await socket.send(message);
  });
}

if (Deno.args[0] === "serve") serveDuplex(Deno.args[1]);
else await main();
