/**
 * A chat broadcast on one port, served by several workers: every worker runs
 * its own server on the same port (`reusePort`, Linux `SO_REUSEPORT`, so the
 * kernel spreads connections over them), and a `BroadcastChannelAdapter`
 * carries each publish to the other workers' subscribers.
 *
 *     deno run -A --unstable-net examples/cluster.ts [--port N] [--workers N] [--hostname H]
 *
 * `--unstable-net` is required: Deno only allows `reusePort` with it (and it
 * only spreads connections on Linux). `--workers` defaults to
 * `navigator.hardwareConcurrency`, `--port` to the PORT environment variable,
 * else 8765 (`--port 0` picks one free port for all workers), `--hostname` to
 * 0.0.0.0. Ctrl-C (or SIGTERM) shuts every worker down gracefully.
 *
 * Before starting the workers, the main thread binds the port once without
 * `reusePort`: a port in use (a second cluster started by mistake would
 * otherwise share it, and each would chat only with its own clients) is
 * refused with a clear error.
 *
 * The protocol, JSON text messages:
 * - server → client, on connect: `{"type":"welcome","worker":K}`, the worker
 *   that took the connection;
 * - client → server: any text, the chat line;
 * - server → every client on every worker:
 *   `{"type":"message","worker":K,"text":"..."}`.
 *
 * @module
 */
import { BroadcastChannelAdapter, serve } from "../mod.ts";
import { parseArgs } from "node:util";
import { checkHostname, listeningAt, portFrom } from "./_listen.ts";

/** What the main thread tells a worker. */
type ToWorker =
  | { type: "start"; id: number; port: number; hostname: string }
  | {
    type: "shutdown";
  };
/** What a worker tells the main thread. */
type FromWorker = { type: "listening"; id: number; port: number } | {
  type: "closed";
  id: number;
};

const CHANNEL = "duplex-cluster-chat";
const TOPIC = "chat";

if (
  typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !==
    "undefined"
) {
  runWorker();
} else {
  await runMain();
}

/** One worker: one server on the shared port. */
function runWorker(): void {
  const scope = self as unknown as Worker;
  const post = (message: FromWorker) => scope.postMessage(message);
  let shutdown: (() => Promise<void>) | null = null;
  scope.onmessage = async (event: MessageEvent<ToWorker>) => {
    const message = event.data;
    if (message.type === "start") {
      const { id } = message;
      const server = serve({
        port: message.port,
        hostname: message.hostname,
        reusePort: true,
        pubsub: new BroadcastChannelAdapter(CHANNEL),
        onListen: ({ port }) => post({ type: "listening", id, port }),
      }, async (socket) => {
        socket.subscribe(TOPIC);
        await socket.send(JSON.stringify({ type: "welcome", worker: id }));
        for await (const text of socket) {
          if (typeof text !== "string") continue;
          socket.publish(
            TOPIC,
            JSON.stringify({ type: "message", worker: id, text }),
          );
        }
      });
      shutdown = async () => {
        await server.shutdown();
        post({ type: "closed", id });
        self.close();
      };
    } else if (message.type === "shutdown") {
      await shutdown?.();
    }
  };
}

/** The main thread: starts the workers, stops them on a signal. */
async function runMain(): Promise<void> {
  let values: { port?: string; workers?: string; hostname: string };
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        port: { type: "string" },
        workers: { type: "string" },
        hostname: { type: "string", default: "0.0.0.0" },
      },
    }));
  } catch (error) {
    usage((error as Error).message);
  }
  const count = values.workers === undefined
    ? navigator.hardwareConcurrency
    : intValue("--workers", values.workers, 1, 1024);
  const hostname = checkHostname(values.hostname, usage);
  const port = claimPort(hostname, portFrom(values.port, usage));
  const workers: Worker[] = [];
  const listening: Promise<void>[] = [];
  const closed: Promise<void>[] = [];
  for (let id = 0; id < count; id++) {
    const worker = new Worker(import.meta.url, {
      type: "module",
      name: `duplex-worker-${id}`,
    });
    const up = Promise.withResolvers<void>();
    const down = Promise.withResolvers<void>();
    worker.onmessage = (event: MessageEvent<FromWorker>) => {
      const message = event.data;
      if (message.type === "listening") {
        console.log(
          `worker ${message.id} listening on ${
            listeningAt("ws", {
              hostname,
              port: message.port,
              transport: "tcp",
            })
          }`,
        );
        up.resolve();
      } else if (message.type === "closed") down.resolve();
    };
    worker.onerror = (event) => {
      event.preventDefault();
      console.error(`worker ${id} failed: ${event.message}`);
      Deno.exit(1);
    };
    worker.postMessage(
      { type: "start", id, port, hostname } satisfies ToWorker,
    );
    workers.push(worker);
    listening.push(up.promise);
    closed.push(down.promise);
  }
  await Promise.all(listening);

  // Before saying it is ready: a supervisor may send SIGTERM at once.
  const stop = Promise.withResolvers<void>();
  let stopping = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      // A second signal while the workers drain: exit at once.
      if (stopping) Deno.exit(signal === "SIGINT" ? 130 : 143);
      stopping = true;
      stop.resolve();
    });
  }
  console.log(`cluster ready: ${count} workers on port ${port}`);
  await stop.promise;
  console.log("Shutting down...");
  for (const worker of workers) {
    worker.postMessage({ type: "shutdown" } satisfies ToWorker);
  }
  await Promise.all(closed);
  console.log("Closed.");
  Deno.exit(0);
}

/**
 * Checks that no one holds the port (with `reusePort` the workers would share
 * it with any other process that asked for it too), and resolves port 0 to
 * one free port for all workers. The port is released again for them.
 */
function claimPort(hostname: string, port: number): number {
  let listener: Deno.Listener;
  try {
    listener = Deno.listen({ hostname, port });
  } catch (error) {
    console.error(
      error instanceof Deno.errors.AddrInUse
        ? `Port ${port} is in use on ${hostname} (another cluster?): stop it, or pick another --port`
        : `Cannot listen on ${hostname}:${port}: ${(error as Error).message}`,
    );
    Deno.exit(1);
  }
  const { port: claimed } = listener.addr as Deno.NetAddr;
  listener.close();
  return claimed;
}

/** Prints what was wrong with the command line and exits with 2. */
function usage(message: string): never {
  console.error(
    `${message}\nusage: cluster.ts [--port N] [--workers N] [--hostname H]`,
  );
  Deno.exit(2);
}

function intValue(label: string, text: string, min: number, max: number) {
  const value = Number(text);
  if (
    text.trim() === "" || !Number.isInteger(value) || value < min || value > max
  ) {
    usage(
      `${label} must be an integer from ${min} to ${max}, got ${
        JSON.stringify(text)
      }`,
    );
  }
  return value;
}
