import { describe } from "../protocol/_describe.ts";
import { PreparedMessage } from "../protocol/prepared_message.ts";
import type { SendStatus } from "../socket_options.ts";
import type { PubSubAdapter } from "./adapter.ts";
import { type Slot, SlotList } from "../_slot_list.ts";

/**
 * A socket as the topic registry sees it.
 *
 * @example A subscriber that cannot keep up is not counted
 * ```ts
 * import type { Subscriber } from "@duplex/ws";
 * import { Topics } from "./topics.ts";
 * import assert from "node:assert/strict";
 *
 * // Each one is offered the same prepared message and says what it did with it.
 * const keeping: Subscriber = { trySend: () => "sent" };
 * const behind: Subscriber = { trySend: () => "dropped" };
 * const topics = new Topics(undefined, console.error);
 * topics.subscribe("prices", keeping);
 * topics.subscribe("prices", behind);
 * assert.equal(topics.publish("prices", "101.25"), 1);
 * ```
 */
export interface Subscriber {
  /** Queues a message without waiting. */
  trySend(message: PreparedMessage): SendStatus;
}

/**
 * Options of {@linkcode Topics.prototype.publish}.
 *
 * @example Everyone in the room but the sender
 * ```ts
 * import type { PublishOptions, Subscriber } from "@duplex/ws";
 * import { Topics } from "./topics.ts";
 * import assert from "node:assert/strict";
 *
 * const got: string[] = [];
 * const member = (name: string): Subscriber => ({
 *   trySend() {
 *     got.push(name);
 *     return "sent";
 *   },
 * });
 * const [alice, bob] = [member("alice"), member("bob")];
 * const topics = new Topics(undefined, console.error);
 * topics.subscribe("room", alice);
 * topics.subscribe("room", bob);
 * // server.publish() takes the same options; a socket is a Subscriber.
 * const options: PublishOptions = { except: alice };
 * topics.publish("room", "hi from alice", options);
 * assert.deepEqual(got, ["bob"]);
 * ```
 */
export interface PublishOptions {
  /** A subscriber that must not receive the message (usually the sender). */
  except?: Subscriber;
}

/**
 * The topic registry of one server: who is subscribed to what, and local
 * delivery. A published message is framed once and the same bytes are
 * queued on every subscriber with `trySend()`, so a slow subscriber meets
 * its backpressure policy and never stalls the others.
 *
 * @example Subscribing, publishing, unsubscribing
 * ```ts
 * import { Topics } from "./topics.ts";
 * import assert from "node:assert/strict";
 *
 * // A server has one (with its pubsub adapter, if any), used by
 * // socket.subscribe() and server.publish(); any object with trySend() fits.
 * const received: string[] = [];
 * const topics = new Topics(undefined, console.error);
 * const subscription = topics.subscribe("news", {
 *   trySend(prepared) {
 *     received.push(String(prepared.message));
 *     return "sent";
 *   },
 * });
 * assert.equal(topics.publish("news", "hello"), 1);
 * topics.unsubscribe("news", subscription);
 * assert.equal(topics.subscriberCount("news"), 0);
 * assert.deepEqual(received, ["hello"]);
 * await topics.close();
 * ```
 */
export class Topics {
  // Subscribers in SlotLists, not Sets: see SlotList.
  readonly #topics = new Map<string, SlotList<Subscriber>>();
  readonly #adapter: PubSubAdapter | undefined;
  readonly #onError: (error: unknown) => void;
  readonly #started: Promise<void>;

  /**
   * Creates a registry.
   *
   * @param adapter Carries messages to and from other instances.
   * @param onError Receives adapter failures.
   */
  constructor(
    adapter: PubSubAdapter | undefined,
    onError: (error: unknown) => void,
  ) {
    this.#adapter = adapter;
    this.#onError = onError;
    this.#started = Promise.resolve(
      adapter?.start(
        (topic, message) => this.#deliver(topic, message),
        onError,
      ),
    ).catch(onError);
  }

  /** Resolves once the adapter has started. */
  get ready(): Promise<void> {
    return this.#started;
  }

  /**
   * Subscribes `subscriber` to `topic`; the caller knows it is not
   * subscribed yet.
   *
   * @param topic The topic.
   * @param subscriber The socket.
   * @returns Its subscription, to unsubscribe with.
   * @throws {TypeError} For a topic that is not a well-formed string.
   */
  subscribe(topic: string, subscriber: Subscriber): Slot<Subscriber> {
    checkTopic("subscribe", topic);
    let subscribers = this.#topics.get(topic);
    const first = subscribers === undefined;
    if (subscribers === undefined) {
      subscribers = new SlotList();
      this.#topics.set(topic, subscribers);
    }
    const subscription = subscribers.add(subscriber);
    // After the subscriber is in: an adapter may deliver (a retained
    // message) or come back here from inside its subscribe().
    if (first) this.#call(() => this.#adapter?.subscribe?.(topic));
    return subscription;
  }

  /**
   * Ends a subscription to `topic`.
   *
   * @param topic The topic.
   * @param subscription What `subscribe()` returned; `undefined` for none.
   * @returns `false` when there was no subscription.
   * @throws {TypeError} For a topic that is not a well-formed string.
   */
  unsubscribe(
    topic: string,
    subscription: Slot<Subscriber> | undefined,
  ): boolean {
    checkTopic("unsubscribe", topic);
    const subscribers = this.#topics.get(topic);
    if (
      subscribers === undefined || subscription === undefined ||
      !subscribers.remove(subscription)
    ) {
      return false;
    }
    if (subscribers.size === 0) {
      this.#topics.delete(topic);
      this.#call(() => this.#adapter?.unsubscribe?.(topic));
    }
    return true;
  }

  /**
   * The number of local subscribers of `topic`.
   *
   * @param topic The topic.
   * @returns The count.
   */
  subscriberCount(topic: string): number {
    checkTopic("count subscribers", topic);
    return this.#topics.get(topic)?.size ?? 0;
  }

  /**
   * Delivers `message` to the local subscribers of `topic` and forwards it
   * to the other instances through the adapter.
   *
   * @param topic The topic.
   * @param message The message, or one prepared already.
   * @param options Whom to leave out.
   * @returns How many local subscribers got it queued.
   */
  publish(
    topic: string,
    message: string | Uint8Array | ArrayBuffer | PreparedMessage,
    options: PublishOptions = {},
  ): number {
    checkTopic("publish", topic);
    const prepared = message instanceof PreparedMessage
      ? message
      : new PreparedMessage(message);
    const adapter = this.#adapter;
    if (adapter !== undefined) {
      this.#call(() => adapter.publish(topic, prepared.message));
    }
    return this.#send(topic, prepared, options.except);
  }

  /**
   * Stops the adapter. It is closed before its start is awaited, so that an
   * adapter still connecting (to a broker that is down) gives up rather than
   * holding up the shutdown.
   */
  async close(): Promise<void> {
    this.#topics.clear();
    try {
      await this.#adapter?.close();
    } catch (error) {
      this.#onError(error);
    }
    await this.#started;
  }

  #deliver(topic: string, message: string | Uint8Array): void {
    if (this.#topics.has(topic)) {
      this.#send(topic, new PreparedMessage(message), undefined);
    }
  }

  #send(
    topic: string,
    prepared: PreparedMessage,
    except: Subscriber | undefined,
  ): number {
    const subscribers = this.#topics.get(topic);
    if (subscribers === undefined) return 0;
    let queued = 0;
    subscribers.forEach((subscriber) => {
      if (subscriber === except) return;
      let status;
      try {
        status = subscriber.trySend(prepared);
      } catch (error) {
        // One broken subscriber must not keep the message from the rest.
        this.#onError(error);
        return;
      }
      if (status === "sent" || status === "backpressure") queued++;
    });
    return queued;
  }

  #call(action: () => void | Promise<void> | undefined): void {
    try {
      Promise.resolve(action()).catch(this.#onError);
    } catch (error) {
      this.#onError(error);
    }
  }
}

/**
 * Throws a `TypeError` for a topic that is not a string, or not well-formed
 * Unicode.
 */
export function checkTopic(action: string, topic: unknown): void {
  if (typeof topic !== "string") {
    throw new TypeError(
      `Cannot ${action}: the topic must be a string, got ${describe(topic)}`,
    );
  }
  // A lone surrogate becomes U+FFFD in UTF-8: over a broker, "\uD800" and
  // "\uDC00" would be one channel.
  if (!topic.isWellFormed()) {
    throw new TypeError(
      `Cannot ${action}: the topic must be well-formed Unicode, got ${
        JSON.stringify(topic.slice(0, 100))
      } with a lone surrogate`,
    );
  }
}
