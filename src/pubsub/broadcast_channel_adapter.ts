import type { PubSubAdapter } from "./adapter.ts";

/**
 * Shares topics between servers in the workers of one process (for example
 * one server per worker, all listening with `reusePort`) over a
 * `BroadcastChannel`.
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

  /**
   * Creates the adapter; every server using the same name shares topics.
   *
   * @param name The channel name.
   */
  constructor(name = "duplex-pubsub") {
    this.#name = name;
  }

  /**
   * Opens the channel.
   *
   * @param deliver Delivers messages from other workers.
   */
  start(deliver: (topic: string, message: string | Uint8Array) => void): void {
    const channel = new BroadcastChannel(this.#name);
    channel.onmessage = (event: MessageEvent<[string, string | Uint8Array]>) =>
      deliver(event.data[0], event.data[1]);
    this.#channel = channel;
  }

  /**
   * Posts a message to the other workers.
   *
   * @param topic The topic.
   * @param message The message.
   */
  publish(topic: string, message: string | Uint8Array): void {
    this.#channel?.postMessage([topic, message]);
  }

  /** Closes the channel. */
  close(): void {
    this.#channel?.close();
    this.#channel = null;
  }
}
