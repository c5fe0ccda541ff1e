/**
 * Starts a throwaway `redis-server` on a free loopback port for a test,
 * without persistence, and kills it by PID when disposed.
 *
 * @module
 */
import { DEADLINE, withTimeout } from "../server/_helpers.ts";

/** The `redis-server` binary on PATH, or `null` when it is not installed. */
export const REDIS_SERVER: string | null = findBinary("redis-server");

/** Why the Redis tests are skipped, for their names. */
export const REDIS_SKIP_NOTE = REDIS_SERVER === null
  ? " (SKIPPED: redis-server is not installed; .ci/run installs it)"
  : "";

/** A running `redis-server`. */
export interface RedisProcess extends AsyncDisposable {
  /** Its port on 127.0.0.1. */
  port: number;
  /** `redis://127.0.0.1:PORT`. */
  url: string;
  /** Sends one command in the inline protocol and returns the raw reply. */
  command(line: string): Promise<string>;
}

function findBinary(name: string): string | null {
  const path = Deno.env.get("PATH") ?? "";
  for (const dir of [...path.split(":"), "/usr/bin", "/usr/local/bin"]) {
    if (dir === "") continue;
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch {
      // Not there.
    }
  }
  return null;
}

/** A port that was free a moment ago (listen on 0, close, reuse it). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function inlineCommand(port: number, line: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(`${line}\r\n`));
    const buffer = new Uint8Array(4096);
    const n = await conn.read(buffer);
    return new TextDecoder().decode(buffer.subarray(0, n ?? 0));
  } finally {
    conn.close();
  }
}

/**
 * Starts `redis-server --port N --save "" --appendonly no` on `port` (a
 * free one by default) and waits until it answers PING.
 */
export async function startRedis(port = freePort()): Promise<RedisProcess> {
  if (REDIS_SERVER === null) throw new Error("redis-server is not installed");
  const child = new Deno.Command(REDIS_SERVER, {
    args: [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--loglevel",
      "warning",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const errors: string[] = [];
  const drained = (async () => {
    for (;;) {
      const { value, done } = await stderr.read();
      if (done) return;
      errors.push(value);
    }
  })();
  const stop = async () => {
    try {
      Deno.kill(child.pid, "SIGKILL");
    } catch {
      // Exited already.
    }
    await child.status;
    await drained;
  };
  try {
    const end = performance.now() + DEADLINE;
    for (;;) {
      const reply = await inlineCommand(port, "PING").catch(() => "");
      if (reply.startsWith("+PONG")) break;
      if (performance.now() > end) {
        throw new Error(
          `redis-server on port ${port} did not answer PING: ${
            errors.join("")
          }`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    command: (line) =>
      withTimeout(inlineCommand(port, line), DEADLINE, `redis ${line}`),
    [Symbol.asyncDispose]: stop,
  };
}
