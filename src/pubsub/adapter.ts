/**
 * Carries published messages between server instances (workers, processes,
 * machines), so that `publish()` on one reaches subscribers on all.
 *
 * The server delivers to its own subscribers itself; an adapter only
 * forwards to the *other* instances and hands their messages back through
 * the `deliver` callback given to {@linkcode PubSubAdapter.start}. An
 * adapter must not hand an instance its own messages back.
 *
 * @example An adapter that hands every publish to a queue of your own
 * ```ts
 * import { type PubSubAdapter, serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const outbox: string[] = [];
 * const adapter: PubSubAdapter = {
 *   start(_deliver) {}, // call deliver(topic, message) for what other instances publish
 *   publish(topic, message) {
 *     outbox.push(`${topic}: ${message}`);
 *   },
 *   close() {},
 * };
 * await using server = serve({ port: 0, hostname: "127.0.0.1", pubsub: adapter }, () => {});
 * server.publish("news", "hello");
 * assert.deepEqual(outbox, ["news: hello"]);
 * ```
 */
export interface PubSubAdapter {
  /**
   * Starts receiving messages published by other instances.
   *
   * @param deliver Delivers a remote message to local subscribers.
   * @param onError Reports failures that happen outside any call (a lost
   * connection to a broker); the server logs them as `pubsub-error`.
   */
  start(
    deliver: (topic: string, message: string | Uint8Array) => void,
    onError?: (error: unknown) => void,
  ): void | Promise<void>;
  /**
   * Forwards a message published here to the other instances.
   *
   * @param topic The topic.
   * @param message The message.
   */
  publish(topic: string, message: string | Uint8Array): void | Promise<void>;
  /**
   * Called when the first local subscriber joins a topic; adapters that
   * filter by topic (Redis channels) subscribe here.
   */
  subscribe?(topic: string): void | Promise<void>;
  /** Called when the last local subscriber leaves a topic. */
  unsubscribe?(topic: string): void | Promise<void>;
  /**
   * Stops the adapter; called by `server.shutdown()`, possibly while
   * `start()` is still pending (a broker that is down): it must then make
   * `start()` settle.
   */
  close(): void | Promise<void>;
}
