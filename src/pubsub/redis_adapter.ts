/**
 * A pub/sub adapter over Redis, so that topics span processes and machines.
 * It lives in its own entry point, `@duplex/ws/redis`, so that only its users
 * download the `redis` client.
 *
 * @example Share topics between server processes
 * ```ts ignore
 * import { serve } from "@duplex/ws";
 * import { RedisAdapter } from "@duplex/ws/redis";
 *
 * // Run this in as many processes, on as many machines, as you like: a
 * // message any of them sends to "news" reaches every subscriber.
 * serve({ pubsub: new RedisAdapter({ url: "redis://127.0.0.1:6379" }) }, async (socket) => {
 *   socket.subscribe("news");
 *   for await (const message of socket) socket.publish("news", message);
 *   // (Returning closes the socket: the loop keeps it open until the peer leaves.)
 * });
 * ```
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createClient } from "redis";
import type { PubSubAdapter } from "./adapter.ts";
import { checkOptionNames } from "../_unknown_options.ts";
import { describe } from "../protocol/_describe.ts";
import { checkTopic } from "./topics.ts";
import {
  decodeEnvelope,
  encodeEnvelope,
  ORIGIN_LENGTH,
  sameOrigin,
} from "./_envelope.ts";

export type { PubSubAdapter } from "./adapter.ts";

/**
 * What {@linkcode RedisAdapter} needs of a Redis client: the parts of a
 * node-redis (`npm:redis` 5) client it calls. Clients from `createClient()`
 * fit.
 *
 * @example Handing the adapter a client of your own
 * ```ts
 * import { createClient } from "npm:redis@^5";
 * import { RedisAdapter, type RedisPubSubClient } from "@duplex/ws/redis";
 * import assert from "node:assert/strict";
 *
 * // Your own client (credentials, TLS, a name); the subscriber is its duplicate().
 * const publisher: RedisPubSubClient = createClient({ url: "redis://127.0.0.1:6379", name: "duplex" });
 * const pubsub = new RedisAdapter({ publisher });
 * assert.equal(pubsub.channel("news"), "duplex:news");
 * await pubsub.close(); // nothing connected yet: this is quick
 * ```
 */
export interface RedisPubSubClient {
  /** Whether `connect()` was called and the client was not closed since. */
  readonly isOpen: boolean;
  /** Whether the client is connected and ready for commands. */
  readonly isReady: boolean;
  /** Connects. */
  connect(): Promise<unknown>;
  /** `PUBLISH channel message`. */
  publish(channel: string, message: Buffer): Promise<unknown>;
  /** `SUBSCRIBE channel`, in buffer mode. */
  subscribe(
    channel: string,
    listener: (message: Buffer, channel: Buffer) => unknown,
    bufferMode: true,
  ): Promise<void>;
  /** `UNSUBSCRIBE channel`. */
  unsubscribe(channel: string): Promise<void>;
  /** A new client with the same options. */
  duplicate(): RedisPubSubClient;
  /** Closes after the pending commands. */
  close(): Promise<void>;
  /** Closes at once, rejecting pending commands. */
  destroy(): void;
  /** Listens for connection errors. */
  on(event: "error", listener: (error: unknown) => void): unknown;
  /** Listens for each (re)connection, once the client is ready. */
  on(event: "ready", listener: () => void): unknown;
  /**
   * Lets the process exit while the client's connection is open: for a
   * connection that completes after `close()` (a connection attempt cannot
   * be canceled).
   */
  unref?(): void;
}

/**
 * Options of {@linkcode RedisAdapter}; give either `url` or `publisher`.
 *
 * @example Options for a staging cluster, errors to your own log
 * ```ts
 * import { RedisAdapter, type RedisAdapterOptions } from "@duplex/ws/redis";
 * import assert from "node:assert/strict";
 *
 * const errors: unknown[] = [];
 * const options: RedisAdapterOptions = {
 *   url: "redis://127.0.0.1:6379",
 *   prefix: "staging:", // shares topics only with servers of the same prefix
 *   onError: (error) => void errors.push(error),
 * };
 * const pubsub = new RedisAdapter(options);
 * assert.equal(pubsub.channel("news"), "staging:news");
 * await pubsub.close(); // nothing connected yet: this is quick
 * assert.throws(() => new RedisAdapter({ prefix: "x:" }), TypeError); // url or publisher is needed
 * ```
 */
export interface RedisAdapterOptions {
  /**
   * The Redis server, such as `"redis://127.0.0.1:6379"`; the adapter
   * creates its two clients (publisher and subscriber) from it.
   */
  url?: string;
  /**
   * A client created already, to publish with. The adapter owns it from
   * now on: `close()` closes it. Its `error` events go to `onError`.
   */
  publisher?: RedisPubSubClient;
  /**
   * A client created already, to subscribe with; it must not be the
   * publisher (a subscribed Redis connection takes no other commands).
   * @default {publisher.duplicate()}
   */
  subscriber?: RedisPubSubClient;
  /**
   * Prepended to each topic to name its Redis channel; servers share
   * topics only when they use the same prefix. A prefix that begins with
   * another one shares channels with it (`"app:"` with topic `"eu:news"`
   * and `"app:eu:"` with topic `"news"`): give separate deployments
   * prefixes where neither begins the other (`"app-eu:"`, `"app-us:"`).
   * @default {"duplex:"}
   */
  prefix?: string;
  /**
   * Receives connection errors (the client reconnects by itself) and
   * messages on a channel that are not in the adapter's format.
   * @default {the server's logger, as `pubsub-error` events, once the server
   * has started the adapter}
   */
  onError?: (error: unknown) => void;
}

/**
 * Shares topics between server instances in any number of processes or
 * machines through Redis pub/sub, with the npm `redis` client.
 *
 * - One Redis channel per topic, named `prefix + topic`. An instance
 *   subscribes to a channel when its first local socket subscribes to the
 *   topic, and unsubscribes when the last one leaves.
 * - Messages keep their type: each is sent as a 3-byte marker, one tag byte
 *   (text or binary), the publishing instance's id, then the payload; what
 *   something else publishes on a channel goes to `onError`, not to sockets.
 * - An instance ignores its own messages coming back from Redis: the server
 *   delivered them locally already.
 * - Delivery is Redis pub/sub's: at most once, in order per publisher; an
 *   instance that is disconnected misses what is published meanwhile, and
 *   drops what it publishes itself while reconnecting (nothing piles up);
 *   so does one whose Redis stopped answering (a frozen server, a network
 *   partition) once 16 MiB of its publishes wait and it has answered none
 *   for a second, telling `onError` once (a burst Redis is answering is
 *   dropped only past 128 MiB waiting).
 * - A subscription Redis refused (an ACL, a lost connection) is retried,
 *   after 1 s and then up to every 30 s, while local sockets still want it.
 * - Nothing connects until the server starts the adapter (or the first
 *   `publish()` when it is used alone, to publish from a process without a
 *   server); `close()` (called by `server.shutdown()`) closes both clients,
 *   giving pending commands a second before dropping the connections. A
 *   connection attempt under way is given up (what waits for it settles),
 *   but node-redis cannot cancel a TCP connection still being made: if it
 *   completes, it stays open, unref'd, until Redis or the process ends it.
 *
 * @example Create one
 * ```ts
 * import { RedisAdapter } from "@duplex/ws/redis";
 * import assert from "node:assert/strict";
 *
 * const pubsub = new RedisAdapter({ url: "redis://127.0.0.1:6379", prefix: "chat:" });
 * assert.equal(pubsub.channel("lobby"), "chat:lobby");
 * // Pass it to serve({ pubsub }); here nothing was connected, so this is quick.
 * await pubsub.close();
 * ```
 */
export class RedisAdapter implements PubSubAdapter {
  /** What is prepended to a topic to name its channel. */
  readonly prefix: string;

  readonly #id = crypto.getRandomValues(new Uint8Array(ORIGIN_LENGTH));
  readonly #publisher: RedisPubSubClient;
  readonly #subscriber: RedisPubSubClient;
  #onError: ((error: unknown) => void) | undefined;
  // How often the publisher's connection failed: once it has, publishing
  // does not wait for it.
  #publisherFailures = 0;
  // Publishes waiting for a first connection, told when it fails (a
  // connection that cannot be made does not settle connect()).
  readonly #connectWaiters = new Set<() => void>();
  // Bytes of publishes not answered by Redis yet, and whether they are
  // being dropped for it.
  #pendingBytes = 0;
  // When Redis last answered a publish (or publishes began to wait).
  #answeredAt = 0;
  #dropping = false;
  // Topics local sockets want (a refused subscription is retried), and the
  // retry waiting for each, one at most.
  readonly #wanted = new Set<string>();
  readonly #retries = new Map<string, ReturnType<typeof setTimeout>>();
  #deliver: ((topic: string, message: string | Uint8Array) => void) | null =
    null;
  #publisherReady: Promise<void> | null = null;
  #subscriberReady: Promise<void> | null = null;
  #closed = false;
  // Resolved by close(): what waits for Redis stops waiting.
  readonly #closing = Promise.withResolvers<void>();
  // Topics wanted while the subscriber was disconnected: subscribed once it
  // is ready again (a Redis outage leaves nothing queued per topic).
  readonly #deferred = new Set<string>();
  // The last subscribe or unsubscribe asked for, per topic, until it ends.
  readonly #topicSteps = new Map<string, Promise<void>>();

  /**
   * Creates the adapter; it connects when started.
   *
   * @param options `url` or ready-made clients, and the channel prefix.
   * @throws {TypeError} When neither or both of `url` and `publisher` are
   * given, or `subscriber` is the publisher.
   */
  constructor(options: RedisAdapterOptions) {
    checkAdapterOptions(options);
    const { url, publisher, subscriber } = options;
    if ((url === undefined) === (publisher === undefined)) {
      throw new TypeError(
        `Cannot create a RedisAdapter: give either "url" or "publisher", got ${
          url === undefined ? "neither" : "both"
        }`,
      );
    }
    if (subscriber !== undefined && subscriber === publisher) {
      throw new TypeError(
        'Cannot create a RedisAdapter: "subscriber" must be another client than "publisher"; use publisher.duplicate()',
      );
    }
    this.prefix = options.prefix ?? "duplex:";
    this.#onError = options.onError;
    this.#publisher = publisher ??
      createClient({ url });
    this.#subscriber = subscriber ?? this.#publisher.duplicate();
    const report = (error: unknown) => this.#report(error);
    this.#publisher.on("error", (error: unknown) => {
      this.#publisherFailures++;
      for (const stopWaiting of this.#connectWaiters) stopWaiting();
      report(error);
    });
    this.#subscriber.on("error", report);
    this.#subscriber.on("ready", () => {
      const topics = [...this.#deferred];
      this.#deferred.clear();
      for (const topic of topics) {
        this.#subscribe(topic, RETRY_FIRST).catch(report);
      }
    });
  }

  /**
   * The Redis channel of `topic`.
   *
   * @param topic The topic.
   * @returns `prefix + topic`.
   */
  channel(topic: string): string {
    return this.prefix + topic;
  }

  /**
   * Connects both clients; messages from other instances go to `deliver`.
   *
   * @param deliver Delivers a remote message to local subscribers.
   * @param onError Where errors go when the adapter was given no `onError`.
   * @returns A promise that resolves once both clients are connected.
   */
  async start(
    deliver: (topic: string, message: string | Uint8Array) => void,
    onError?: (error: unknown) => void,
  ): Promise<void> {
    this.#deliver = deliver;
    this.#onError ??= onError;
    await this.#unlessClosed(Promise.all([
      this.#ready("publisher"),
      this.#ready("subscriber"),
    ]));
  }

  /**
   * Publishes `message` on the topic's channel for the other instances.
   *
   * @param topic The topic.
   * @param message Text or binary data.
   * @returns A promise that resolves once Redis has taken the message, or
   * at once when the connection is down and the message was dropped. It
   * rejects with a `TypeError` for a topic that is not a well-formed string
   * or a message that is neither text nor bytes.
   */
  async publish(
    topic: string,
    message: string | Uint8Array | ArrayBuffer,
  ): Promise<void> {
    checkTopic("publish", topic);
    if (message instanceof ArrayBuffer) message = new Uint8Array(message);
    else if (typeof message !== "string" && !(message instanceof Uint8Array)) {
      throw new TypeError(
        `Cannot publish: the message must be a string, Uint8Array or ArrayBuffer, got ${
          describe(message)
        }`,
      );
    }
    if (this.#closed) return;
    const envelope = encodeEnvelope(this.#id, message);
    const size = envelope.byteLength;
    const silence = performance.now() - this.#answeredAt;
    if (
      this.#pendingBytes >= MAX_PENDING_BYTES &&
      (silence >= STALL || this.#pendingBytes >= MAX_BURST_BYTES)
    ) {
      // Redis takes nothing (frozen, or a partition that keeps the
      // connection up): drop rather than hold publishes without bound. A
      // burst that Redis is answering is not dropped, up to a bound. (A
      // message larger than that alone goes out: the bound is on what
      // waits, not on one message.)
      if (!this.#dropping) {
        this.#dropping = true;
        this.#report(
          new Error(
            `Redis has not answered ${this.#pendingBytes} bytes of publishes (none for ${
              Math.round(silence)
            } ms); dropping messages until it does`,
          ),
        );
      }
      return;
    }
    const bytes = Buffer.from(
      envelope.buffer,
      envelope.byteOffset,
      envelope.byteLength,
    );
    if (this.#pendingBytes === 0) this.#answeredAt = performance.now();
    this.#pendingBytes += size;
    try {
      await this.#whileOpen(async () => {
        const ready = this.#ready("publisher");
        ready.catch(() => {});
        // Not connected after a failure (Redis down at start, or
        // reconnecting): the message is dropped, not held without bound
        // until Redis answers (delivery is at most once; the failures go to
        // onError). A first connection under way is waited for, until it
        // fails.
        const failures = this.#publisherFailures;
        if (!this.#publisher.isReady) {
          if (failures > 0) return;
          await this.#untilConnectedOrFailed(ready);
        }
        // A failure while it waited: the outage's message is dropped too.
        if (!this.#publisher.isReady || this.#publisherFailures !== failures) {
          return;
        }
        try {
          await this.#unlessClosed(
            this.#publisher.publish(this.channel(topic), bytes),
          );
        } catch (error) {
          // The connection dropped with the message in flight: dropped, as
          // during an outage (the client reported the failure).
          if (
            !this.#publisher.isReady || this.#publisherFailures !== failures
          ) {
            return;
          }
          throw error;
        }
      });
    } finally {
      this.#pendingBytes -= size;
      this.#answeredAt = performance.now();
      if (this.#pendingBytes < MAX_PENDING_BYTES / 2) this.#dropping = false;
    }
  }

  /**
   * Subscribes to the topic's channel; the server calls it when the first
   * local socket subscribes to `topic`.
   *
   * @param topic The topic.
   * @returns A promise that resolves once Redis confirmed the subscription,
   * or while the subscriber is not connected once the subscription is
   * recorded (at once, unless an unsubscribe of the topic asked for before
   * still waits for Redis): it subscribes when connected again (a topic
   * wanted and left meanwhile never reaches Redis).
   */
  subscribe(topic: string): Promise<void> {
    this.#wanted.add(topic);
    return this.#subscribe(topic, RETRY_FIRST);
  }

  async #untilConnectedOrFailed(ready: Promise<void>): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#connectWaiters.add(resolve);
    ready.then(resolve, resolve);
    try {
      await promise;
    } finally {
      this.#connectWaiters.delete(resolve);
    }
  }

  #subscribe(topic: string, retryDelay: number): Promise<void> {
    const step = this.#inTurn(topic, async () => {
      if (!this.#wanted.has(topic)) return;
      if (!this.#subscriber.isReady) {
        // Not connected (yet, or again): subscribed once it is ready.
        this.#deferred.add(topic);
        this.#ready("subscriber").catch(() => {});
        return;
      }
      await this.#unlessClosed(this.#subscriber.subscribe(
        this.channel(topic),
        (message) => this.#receive(topic, message),
        true,
      ));
    });
    step.then(() => this.#cancelRetry(topic), () => {
      if (
        this.#closed || !this.#wanted.has(topic) || this.#retries.has(topic)
      ) return;
      // Refused: ask again later, after clearing what the client may have
      // kept of the failed attempt (a listener would deliver twice).
      this.#retries.set(
        topic,
        setTimeout(() => {
          this.#retries.delete(topic);
          if (this.#closed || !this.#wanted.has(topic)) return;
          this.#inTurn(
            topic,
            () => this.#subscriber.unsubscribe(this.channel(topic)),
          ).catch(() => {});
          this.#subscribe(topic, Math.min(retryDelay * 2, RETRY_MAX))
            .catch((error) => this.#report(error));
        }, retryDelay),
      );
    });
    return step;
  }

  #cancelRetry(topic: string): void {
    clearTimeout(this.#retries.get(topic));
    this.#retries.delete(topic);
  }

  /**
   * Unsubscribes from the topic's channel; the server calls it when the
   * last local socket leaves `topic`.
   *
   * @param topic The topic.
   * @returns A promise that resolves once Redis confirmed it.
   */
  unsubscribe(topic: string): Promise<void> {
    this.#wanted.delete(topic);
    this.#cancelRetry(topic);
    // Wanted only while disconnected: Redis never heard of it.
    if (this.#deferred.delete(topic)) return Promise.resolve();
    return this.#inTurn(topic, async () => {
      await this.#unlessClosed(this.#ready("subscriber"));
      if (this.#closed) return;
      await this.#unlessClosed(
        this.#subscriber.unsubscribe(this.channel(topic)),
      );
    });
  }

  /**
   * Closes both clients, waiting up to a second for pending commands on
   * connected ones, then dropping the connections. Publishing afterwards
   * does nothing.
   *
   * @returns A promise that resolves once both are closed.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.resolve();
    for (const stopWaiting of this.#connectWaiters) stopWaiting();
    this.#deliver = null;
    this.#deferred.clear();
    for (const timer of this.#retries.values()) clearTimeout(timer);
    this.#retries.clear();
    await Promise.all([
      closeClient(this.#publisher),
      closeClient(this.#subscriber),
    ]);
  }

  #ready(which: "publisher" | "subscriber"): Promise<void> {
    if (which === "publisher") {
      return this.#publisherReady ??= connect(this.#publisher);
    }
    return this.#subscriberReady ??= connect(this.#subscriber);
  }

  /**
   * Runs `action` (a subscribe or an unsubscribe of `topic`) once the ones
   * asked for before it have finished. The client must not see a subscribe
   * while the unsubscribe before it waits for Redis: it would count the
   * channel as subscribed already, send nothing, then drop the new listener
   * when the unsubscribe is confirmed, and the topic would go deaf.
   */
  #inTurn(topic: string, action: () => Promise<void>): Promise<void> {
    const previous = this.#topicSteps.get(topic);
    const step = previous === undefined
      ? this.#whileOpen(action)
      // Its failure went to whoever asked for it.
      : previous.catch(() => {}).then(() => this.#whileOpen(action));
    this.#topicSteps.set(topic, step);
    const forget = () => {
      if (this.#topicSteps.get(topic) === step) this.#topicSteps.delete(topic);
    };
    step.then(forget, forget);
    return step;
  }

  /** To `onError`, until close(): what a closing client reports is no one's concern. */
  #report(error: unknown): void {
    if (!this.#closed) this.#onError?.(error);
  }

  /**
   * `promise`, or nothing once `close()` is called: a closed client may
   * never settle the commands it had queued.
   */
  async #unlessClosed(promise: Promise<unknown>): Promise<void> {
    promise.catch(() => {});
    await Promise.race([promise, this.#closing.promise]);
  }

  /** Runs `action`; once closed, its failures no longer matter. */
  async #whileOpen(action: () => Promise<void>): Promise<void> {
    if (this.#closed) return;
    try {
      await action();
    } catch (error) {
      if (!this.#closed) throw error;
    }
  }

  #receive(topic: string, bytes: Buffer): void {
    let envelope;
    try {
      envelope = decodeEnvelope(bytes);
    } catch (error) {
      this.#report(error);
      return;
    }
    if (sameOrigin(envelope.origin, this.#id)) return;
    this.#deliver?.(topic, envelope.message);
  }
}

async function connect(client: RedisPubSubClient): Promise<void> {
  if (!client.isOpen) await client.connect();
  else if (!client.isReady) {
    // Connecting already (a client of the caller's): until it is ready.
    await new Promise<void>((resolve) => client.on("ready", resolve));
  }
}

async function closeClient(client: RedisPubSubClient): Promise<void> {
  try {
    if (client.isReady) {
      // A Redis that stopped answering would hold close() for ever.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<"late">((resolve) =>
        timer = setTimeout(() => resolve("late"), CLOSE_GRACE)
      );
      const closing = client.close();
      closing.catch(() => {});
      const outcome = await Promise.race([closing, late]);
      clearTimeout(timer);
      if (outcome === "late") client.destroy();
    } else if (client.isOpen) {
      // Connecting: destroy() stops its retries and a connection waiting
      // for its first answers, but not one whose TCP connection is still
      // being made, which node-redis cannot cancel: if that one completes,
      // it must not keep the process alive.
      client.on("ready", () => client.unref?.());
      client.destroy();
    }
  } catch {
    // Closed already.
  }
}

// Publishes waiting for Redis's answer beyond which new ones are dropped.
const MAX_PENDING_BYTES = 16 * 1024 * 1024;
// Publishes are dropped once MAX_PENDING_BYTES wait and Redis has answered
// none for STALL ms, or once MAX_BURST_BYTES wait at all.
const STALL = 1000;
const MAX_BURST_BYTES = 128 * 1024 * 1024;
// How long close() waits for pending commands (ms).
const CLOSE_GRACE = 1_000;
// When a refused subscription is asked for again (ms), doubling.
const RETRY_FIRST = 1_000;
const RETRY_MAX = 30_000;

const ADAPTER_OPTIONS: ReadonlySet<string> = new Set([
  "url",
  "publisher",
  "subscriber",
  "prefix",
  "onError",
]);

const CLIENT_METHODS = [
  "connect",
  "publish",
  "subscribe",
  "unsubscribe",
  "duplicate",
  "close",
  "destroy",
  "on",
] as const;

/** Checks the options' names and types, with errors that say which is wrong. */
function checkAdapterOptions(options: unknown): void {
  const fail = (message: string) => {
    throw new TypeError(`Cannot create a RedisAdapter: ${message}`);
  };
  if (typeof options !== "object" || options === null) {
    fail(
      `the options must be an object such as { url: "redis://127.0.0.1:6379" }, got ${
        describe(options)
      }`,
    );
  }
  checkOptionNames(
    "create a RedisAdapter",
    ADAPTER_OPTIONS,
    options as object,
  );
  const { url, publisher, subscriber, prefix, onError } = options as Record<
    string,
    unknown
  >;
  if (url !== undefined) {
    if (typeof url !== "string") {
      fail(`"url" must be a string, got ${describe(url)}`);
    }
    let protocol = "";
    try {
      protocol = new URL(url as string).protocol;
    } catch {
      fail(`"url" is not a URL: ${JSON.stringify(url)}`);
    }
    if (protocol !== "redis:" && protocol !== "rediss:") {
      fail(
        `"url" must be a redis:// or rediss:// URL, got ${JSON.stringify(url)}`,
      );
    }
  }
  for (
    const [name, client] of [["publisher", publisher], [
      "subscriber",
      subscriber,
    ]] as const
  ) {
    if (client === undefined) continue;
    const missing = CLIENT_METHODS.find((method) =>
      typeof (client as Record<string, unknown> | null)?.[method] !==
        "function"
    );
    if (missing !== undefined) {
      fail(
        `"${name}" must be a node-redis client (from createClient()), got ${
          describe(client)
        } without ${missing}()`,
      );
    }
  }
  if (prefix !== undefined && typeof prefix !== "string") {
    fail(`"prefix" must be a string, got ${describe(prefix)}`);
  }
  if (onError !== undefined && typeof onError !== "function") {
    fail(`"onError" must be a function, got ${describe(onError)}`);
  }
}
