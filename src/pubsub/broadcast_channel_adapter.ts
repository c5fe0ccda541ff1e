import type { PubSubAdapter } from "./adapter.ts";

/**
 * Shares topics between servers in the workers of one process (for example
 * one server per worker, all listening with `reusePort`) over a
 * `BroadcastChannel`.
 *
 * The channel opens on the turn of the event loop after `start()`: in Deno
 * 2.9 a channel opened in the turn its thread's last one closed (a server
 * restarted at once, a hot reload) fails every post ("expected i32").
 * What is published meanwhile is posted once it is open; what the other
 * workers post meanwhile is not received.
 *
 * @example Two servers share a topic
 * ```ts
 * import { BroadcastChannelAdapter, serve } from "@duplex/ws";
 *
 * await using a = serve({ port: 0, pubsub: new BroadcastChannelAdapter("chat") }, () => {});
 * await using b = serve({ port: 0, pubsub: new BroadcastChannelAdapter("chat") }, () => {});
 * a.publish("news", "reaches b's subscribers too");
 * ```
 */
export class BroadcastChannelAdapter implements PubSubAdapter {
  readonly #name: string;
  #channel: BroadcastChannel | null = null;
  // Messages published during this turn of the event loop, posted together
  // at its end: Deno's BroadcastChannel drops messages for a worker that
  // falls behind a burst (600 of 2000 arrived), not batches of them.
  #batch: Batch = [];
  #onError: (error: unknown) => void = () => {};
  #deliver: (topic: string, message: string | Uint8Array) => void = () => {};
  // Set from start() until the channel opens.
  #opening: ReturnType<typeof setTimeout> | undefined;

  /**
   * Creates the adapter; every server using the same name shares topics.
   *
   * @param name The channel name.
   */
  constructor(name = "duplex-pubsub") {
    this.#name = name;
  }

  /**
   * Opens the channel, on the next turn of the event loop.
   *
   * @param deliver Delivers messages from other workers.
   * @param onError Reports a post that failed (its messages are lost).
   */
  start(
    deliver: (topic: string, message: string | Uint8Array) => void,
    onError?: (error: unknown) => void,
  ): void {
    if (onError !== undefined) this.#onError = onError;
    this.#deliver = deliver;
    this.#opening = setTimeout(() => {
      this.#opening = undefined;
      this.#open();
      this.#post();
    }, 0);
  }

  #open(): void {
    const channel = new BroadcastChannel(this.#name);
    channel.onmessage = (event: MessageEvent<Batch>) => {
      for (const [topic, message] of event.data) this.#deliver(topic, message);
    };
    this.#channel = channel;
  }

  /**
   * Posts a message to the other workers.
   *
   * @param topic The topic.
   * @param message The message.
   */
  publish(topic: string, message: string | Uint8Array): void {
    // Not started, or closed.
    if (this.#channel === null && this.#opening === undefined) return;
    // (While opening, the opening posts the batch.)
    if (this.#batch.length === 0 && this.#channel !== null) {
      setImmediate(() => this.#post());
    }
    this.#batch.push([topic, message]);
  }

  /** Closes the channel, after posting what was published this turn. */
  close(): void {
    if (this.#opening !== undefined) {
      clearTimeout(this.#opening);
      this.#opening = undefined;
      if (this.#batch.length > 0) this.#open();
    }
    this.#post();
    this.#channel?.close();
    this.#channel = null;
  }

  #post(): void {
    if (this.#batch.length === 0 || this.#channel === null) return;
    const batch = this.#batch;
    this.#batch = [];
    try {
      this.#channel.postMessage(batch);
    } catch (error) {
      // At the end of a turn, outside any call: reported, not thrown.
      this.#onError(error);
    }
  }
}

/** Messages as posted: topic and message, in the order published. */
type Batch = [string, string | Uint8Array][];
