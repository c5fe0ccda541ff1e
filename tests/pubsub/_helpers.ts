/**
 * Shared pieces of the pub/sub tests: the server test helpers, polling with
 * a deadline, a handler that keeps sockets open, and an adapter that records
 * what the server asks of it.
 *
 * @module
 */
import type { PubSubAdapter, Socket, SocketHandler } from "../../mod.ts";
import { DEADLINE } from "../server/_helpers.ts";

export * from "../server/_helpers.ts";

/**
 * Resolves once `check()` returns a truthy value (polled every 5 ms), or
 * rejects after `ms` with a message naming `what`.
 */
export async function until<T>(
  check: () => T | Promise<T>,
  what: string,
  ms = DEADLINE,
): Promise<Exclude<T, false | null | undefined | 0 | "">> {
  const end = performance.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value as Exclude<T, false | null | undefined | 0 | "">;
    if (performance.now() > end) {
      throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Keeps each socket open, reading and dropping what it sends, until it closes. */
export const idle: SocketHandler = async (socket: Socket) => {
  for await (const _ of socket) { /* read and drop */ }
};

/** A call the server made on a {@linkcode RecordingAdapter}. */
export type AdapterCall =
  | ["start"]
  | ["publish", string, string | Uint8Array]
  | ["subscribe", string]
  | ["unsubscribe", string]
  | ["close"];

/**
 * An adapter that records every call and lets the test play another
 * instance with `receive()`.
 */
export class RecordingAdapter implements PubSubAdapter {
  readonly calls: AdapterCall[] = [];
  #deliver: ((topic: string, message: string | Uint8Array) => void) | null =
    null;
  /** When set, `publish()` throws it. */
  failPublish: Error | null = null;

  start(deliver: (topic: string, message: string | Uint8Array) => void): void {
    this.calls.push(["start"]);
    this.#deliver = deliver;
  }

  publish(topic: string, message: string | Uint8Array): void {
    this.calls.push(["publish", topic, message]);
    if (this.failPublish) throw this.failPublish;
  }

  subscribe(topic: string): void {
    this.calls.push(["subscribe", topic]);
  }

  unsubscribe(topic: string): void {
    this.calls.push(["unsubscribe", topic]);
  }

  close(): void {
    this.calls.push(["close"]);
  }

  /** Delivers a message as if another instance had published it. */
  receive(topic: string, message: string | Uint8Array): void {
    if (this.#deliver === null) throw new Error("the adapter was not started");
    this.#deliver(topic, message);
  }

  /** The calls of one kind. */
  callsOf<K extends AdapterCall[0]>(
    kind: K,
  ): Extract<AdapterCall, [K, ...unknown[]]>[] {
    return this.calls.filter((call) => call[0] === kind) as Extract<
      AdapterCall,
      [K, ...unknown[]]
    >[];
  }
}

/** A unique name, for channels and prefixes that tests must not share. */
export function uniqueName(what: string): string {
  return `${what}-${crypto.randomUUID()}`;
}
