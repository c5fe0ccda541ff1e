import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createClient } from "redis";
import { serve, type Server, type ServerLogEvent } from "../../mod.ts";
import {
  RedisAdapter,
  type RedisPubSubClient,
} from "../../src/pubsub/redis_adapter.ts";
import { decodeEnvelope } from "../../src/pubsub/_envelope.ts";
import {
  assertBytes,
  DenoClient,
  idle,
  LOCAL,
  NpmClient,
  SocketTracker,
  uniqueName,
  until,
  withTimeout,
  wsUrl,
} from "./_helpers.ts";
import {
  freePort,
  REDIS_SERVER,
  REDIS_SKIP_NOTE,
  type RedisProcess,
  startRedis,
} from "./_redis.ts";

// --- Without a Redis server: the adapter over fake clients.

/** An in-memory Redis pub/sub: enough of a server for the adapter's logic. */
class FakeBroker {
  readonly subscriptions = new Map<
    string,
    Map<FakeClient, (message: Buffer, channel: Buffer) => unknown>
  >();
  readonly clients: FakeClient[] = [];

  publish(channel: string, message: Buffer): number {
    const listeners = this.subscriptions.get(channel) ?? new Map();
    for (const listener of listeners.values()) {
      listener(Buffer.from(message), Buffer.from(channel));
    }
    return listeners.size;
  }
}

class FakeClient implements RedisPubSubClient {
  isOpen = false;
  isReady = false;
  readonly errorListeners: ((error: unknown) => void)[] = [];
  readonly readyListeners: (() => void)[] = [];
  readonly #broker: FakeBroker;

  constructor(broker: FakeBroker) {
    this.#broker = broker;
    broker.clients.push(this);
  }

  #check(): void {
    if (!this.isReady) throw new Error("The client is closed");
  }

  connect(): Promise<this> {
    this.isOpen = this.isReady = true;
    for (const listener of this.readyListeners) listener();
    return Promise.resolve(this);
  }

  publish(channel: string, message: Buffer): Promise<number> {
    this.#check();
    return Promise.resolve(this.#broker.publish(channel, message));
  }

  subscribe(
    channel: string,
    listener: (message: Buffer, channel: Buffer) => unknown,
    bufferMode: true,
  ): Promise<void> {
    this.#check();
    assert.equal(bufferMode, true, "buffer mode");
    let listeners = this.#broker.subscriptions.get(channel);
    if (!listeners) {
      this.#broker.subscriptions.set(channel, listeners = new Map());
    }
    listeners.set(this, listener);
    return Promise.resolve();
  }

  unsubscribe(channel: string): Promise<void> {
    this.#check();
    this.#broker.subscriptions.get(channel)?.delete(this);
    return Promise.resolve();
  }

  duplicate(): FakeClient {
    return new FakeClient(this.#broker);
  }

  close(): Promise<void> {
    this.isOpen = this.isReady = false;
    return Promise.resolve();
  }

  destroy(): void {
    this.isOpen = this.isReady = false;
  }

  on(event: "error", listener: (error: unknown) => void): this;
  on(event: "ready", listener: () => void): this;
  on(event: "error" | "ready", listener: (error?: unknown) => void): this {
    if (event === "ready") this.readyListeners.push(listener);
    else this.errorListeners.push(listener);
    return this;
  }
}

Deno.test("RedisAdapter() needs either a url or a publisher", () => {
  assert.throws(() => new RedisAdapter({}), {
    name: "TypeError",
    message:
      'Cannot create a RedisAdapter: give either "url" or "publisher", got neither',
  });
  const broker = new FakeBroker();
  const client = new FakeClient(broker);
  assert.throws(
    () => new RedisAdapter({ url: "redis://127.0.0.1:1", publisher: client }),
    {
      name: "TypeError",
      message:
        'Cannot create a RedisAdapter: give either "url" or "publisher", got both',
    },
  );
  assert.throws(
    () => new RedisAdapter({ publisher: client, subscriber: client }),
    {
      name: "TypeError",
      message:
        'Cannot create a RedisAdapter: "subscriber" must be another client than "publisher"; use publisher.duplicate()',
    },
  );
  const adapter = new RedisAdapter({ publisher: client });
  assert.equal(adapter.prefix, "duplex:");
  assert.equal(adapter.channel("room"), "duplex:room");
  assert.equal(
    new RedisAdapter({ publisher: client, prefix: "app:" }).channel("r"),
    "app:r",
  );
});

Deno.test("RedisAdapter over fake clients: one channel per topic, types kept, own messages ignored, close closes both", async () => {
  const broker = new FakeBroker();
  const errors: unknown[] = [];
  const publisherA = new FakeClient(broker);
  const a = new RedisAdapter({
    publisher: publisherA,
    onError: (error) => errors.push(error),
  });
  const b = new RedisAdapter({ publisher: new FakeClient(broker) });
  const gotA: [string, string | Uint8Array][] = [];
  const gotB: [string, string | Uint8Array][] = [];
  await a.start((topic, message) => gotA.push([topic, message]));
  await b.start((topic, message) => gotB.push([topic, message]));
  // The subscriber was duplicated from the publisher and connected.
  assert.equal(broker.clients.length, 4);
  assert.ok(broker.clients.every((client) => client.isReady));
  // Both clients' errors go to onError.
  assert.equal(broker.clients[0].errorListeners.length, 1);
  assert.equal(broker.clients[1].errorListeners.length, 1);

  await a.subscribe("room");
  await b.subscribe("room");
  assert.equal(broker.subscriptions.get("duplex:room")?.size, 2);

  await a.publish("room", "hi");
  await a.publish("room", new Uint8Array([1, 2]));
  await b.publish("room", "from b");
  // a never hears its own messages; b hears a's, with their types.
  assert.deepEqual(gotA, [["room", "from b"]]);
  assert.deepEqual(gotB.map(([topic]) => topic), ["room", "room"]);
  assert.equal(gotB[0][1], "hi");
  assertBytes(gotB[1][1], new Uint8Array([1, 2]));

  // Something on the channel that is not an envelope goes to onError.
  broker.publish("duplex:room", Buffer.from("plain text from redis-cli"));
  assert.equal(errors.length, 1);
  assert.match(
    (errors[0] as Error).message,
    /does not start with Duplex's envelope marker/,
  );

  await a.unsubscribe("room");
  assert.equal(broker.subscriptions.get("duplex:room")?.size, 1);

  // An ArrayBuffer goes as bytes; a topic or message of the wrong kind is
  // refused before it reaches Redis.
  await a.publish("room", new Uint8Array([3]).buffer);
  assertBytes(gotB[2][1], new Uint8Array([3]));
  for (
    const [topic, message, error] of [
      [5, "x", /the topic must be a string, got number 5/],
      ["\ud800", "x", /the topic must be well-formed Unicode/],
      [
        "room",
        5,
        /the message must be a string, Uint8Array or ArrayBuffer, got number 5/,
      ],
    ] as const
  ) {
    await assert.rejects(
      a.publish(topic as string, message as string),
      { name: "TypeError", message: error },
    );
  }
  assert.equal(gotB.length, 3);

  await a.close();
  assert.ok(!broker.clients[0].isOpen && !broker.clients[1].isOpen);
  // Publishing after close does nothing (and does not throw).
  await a.publish("room", "too late");
  assert.equal(gotB.length, 3);
  await a.close();
  await b.close();
});

Deno.test("RedisAdapter publishes without a server: the publisher connects on first use", async () => {
  const broker = new FakeBroker();
  const publisher = new FakeClient(broker);
  const subscriber = new FakeClient(broker);
  const adapter = new RedisAdapter({ publisher, subscriber });
  let heard: Buffer | undefined;
  const listener = new FakeClient(broker);
  await listener.connect();
  await listener.subscribe("duplex:news", (message) => heard = message, true);
  await adapter.publish("news", "standalone");
  assert.ok(publisher.isReady);
  assert.ok(!subscriber.isOpen, "the subscriber is not needed to publish");
  assert.equal(decodeEnvelope(heard!).message, "standalone");
  await adapter.close();
});

/** A client whose Redis stopped answering: commands never settle. */
class StalledClient extends FakeClient {
  destroyed = false;
  readonly #pending: ((error: Error) => void)[] = [];

  #never(): Promise<never> {
    return new Promise((_, reject) => this.#pending.push(reject));
  }

  override publish(): Promise<number> {
    return this.#never();
  }

  override close(): Promise<void> {
    return this.#never();
  }

  override destroy(): void {
    super.destroy();
    this.destroyed = true;
    for (const reject of this.#pending) reject(new Error("destroyed"));
  }
}

/** A subscriber client whose SUBSCRIBE Redis refuses while `refuses()` says so. */
class RefusingClient extends FakeClient {
  attempts = 0;
  readonly #refuses: () => boolean;

  constructor(broker: FakeBroker, refuses: () => boolean) {
    super(broker);
    this.#refuses = refuses;
  }

  override subscribe(
    channel: string,
    listener: (message: Buffer, channel: Buffer) => unknown,
    bufferMode: true,
  ): Promise<void> {
    this.attempts++;
    if (this.#refuses()) {
      return Promise.reject(new Error("NOPERM no permissions"));
    }
    return super.subscribe(channel, listener, bufferMode);
  }
}

Deno.test("RedisAdapter drops publishes once 16 MiB wait for a Redis that stopped answering, says so once, and close() drops the connection after a second", async () => {
  const broker = new FakeBroker();
  const publisher = new StalledClient(broker);
  const { adapter, errors } = adapterOver(publisher, broker);
  const megabyte = new Uint8Array(1024 * 1024);
  const waiting = [];
  for (let i = 0; i < 17; i++) waiting.push(adapter.publish("news", megabyte));
  // 17 MiB wait, but Redis may be taking a burst.
  assert.deepEqual(errors, []);
  // Silent for a second: dropped at once, and reported once.
  await new Promise((resolve) => setTimeout(resolve, 1100));
  for (let i = 0; i < 10; i++) await adapter.publish("news", megabyte);
  assert.equal(errors.length, 1);
  assert.match(
    (errors[0] as Error).message,
    /Redis has not answered \d+ bytes of publishes \(none for \d+ ms\); dropping messages until it does/,
  );
  await withTimeout(adapter.close(), 5_000, "close()");
  assert.ok(publisher.destroyed, "the stalled connection was dropped");
  await withTimeout(Promise.all(waiting), 5_000, "the waiting publishes");
});

/**
 * Two adapters over one fake broker: `a` publishes (its errors kept), `b`
 * has subscribed to "files" (what it gets kept).
 */
async function publisherAndSubscriber() {
  const broker = new FakeBroker();
  const errors: unknown[] = [];
  const a = new RedisAdapter({
    publisher: new FakeClient(broker),
    onError: (error) => errors.push(error),
  });
  const b = new RedisAdapter({ publisher: new FakeClient(broker) });
  const got: (string | Uint8Array)[] = [];
  await a.start(() => {});
  await b.start((_topic, message) => got.push(message));
  await b.subscribe("files");
  return {
    a,
    errors,
    got,
    async close() {
      await a.close();
      await b.close();
    },
  };
}

Deno.test("RedisAdapter publishes a burst of 20 MiB in one turn to a Redis that answers, dropping none", async () => {
  const { a, errors, got, close } = await publisherAndSubscriber();
  const megabyte = new Uint8Array(1024 * 1024);
  await Promise.all(
    Array.from({ length: 20 }, () => a.publish("files", megabyte)),
  );
  assert.deepEqual(errors, []);
  assert.equal(got.length, 20);
  await close();
});

Deno.test("RedisAdapter publishes a message larger than 16 MiB when nothing waits: the bound is on what waits for Redis", async () => {
  const { a, errors, got, close } = await publisherAndSubscriber();
  const large = new Uint8Array(16 * 1024 * 1024 + 1).fill(7);
  await a.publish("files", large);
  await a.publish("files", "after");
  assert.deepEqual(errors, []);
  assert.equal(got.length, 2);
  assertBytes(got[0], large);
  assert.equal(got[1], "after");
  await close();
});

Deno.test("RedisAdapter used alone does not wait for a first connection that fails: the publish is dropped at the first error", async () => {
  const broker = new FakeBroker();
  const publisher = new (class extends FakeClient {
    override connect(): Promise<this> {
      // node-redis keeps retrying: connect() does not settle while Redis is down.
      setTimeout(() => {
        for (const listener of this.errorListeners) {
          listener(new Error("connect ECONNREFUSED 127.0.0.1:1"));
        }
      }, 10);
      return new Promise(() => {});
    }
  })(broker);
  const { adapter, errors } = adapterOver(publisher, broker);
  await withTimeout(adapter.publish("news", "hi"), 5_000, "the publish");
  assert.equal(errors.length, 1);
  await adapter.close();
});

/** An adapter over `publisher` and a fake subscriber, and what it reported. */
function adapterOver(publisher: FakeClient, broker: FakeBroker) {
  const errors: unknown[] = [];
  const adapter = new RedisAdapter({
    publisher,
    subscriber: new FakeClient(broker),
    onError: (error) => errors.push(error),
  });
  return { adapter, errors };
}

/** Resolves after `ms` milliseconds. */
const pause = (ms: number) =>
  new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A fake client whose connection attempt never completes until told to. */
class ConnectingClient extends FakeClient {
  readonly connected = Promise.withResolvers<void>();
  unrefs = 0;

  override connect(): Promise<this> {
    this.isOpen = true;
    return this.connected.promise.then(() => {
      // node-redis: a TCP connection that completes after destroy() still
      // becomes ready (isOpen stays false).
      this.isReady = true;
      for (const listener of this.readyListeners) listener();
      return this;
    });
  }

  override destroy(): void {
    // It cannot cancel the attempt under way: isOpen only.
    this.isOpen = false;
  }

  unref(): void {
    this.unrefs++;
  }
}

Deno.test("RedisAdapter.close() during a connection attempt settles start() at once, and a connection that completes afterwards does not keep the process alive", async () => {
  const broker = new FakeBroker();
  const publisher = new ConnectingClient(broker);
  const subscriber = new ConnectingClient(broker);
  const adapter = new RedisAdapter({ publisher, subscriber });
  const started = adapter.start(() => {});
  const publishing = adapter.publish("news", "hi");
  await pause(20);
  await withTimeout(adapter.close(), 5_000, "close()");
  await withTimeout(started, 1_000, "start() to settle at close()");
  await withTimeout(publishing, 1_000, "the publish to settle at close()");
  assert.equal(publisher.isOpen, false);
  // The attempts complete after close(): their connections are unref'd.
  publisher.connected.resolve();
  subscriber.connected.resolve();
  await pause(20);
  assert.deepEqual([publisher.unrefs, subscriber.unrefs], [1, 1]);
  assert.equal(broker.subscriptions.size, 0);
});

Deno.test("RedisAdapter waits for a client of the caller's that is connecting already, rather than dropping what is published meanwhile", async () => {
  const broker = new FakeBroker();
  const publisher = new ConnectingClient(broker);
  const listener = new FakeClient(broker);
  await listener.connect();
  const got: string[] = [];
  await listener.subscribe(
    "duplex:news",
    (message) => got.push(decodeEnvelope(message).message as string),
    true,
  );
  // The caller's own connect() is under way when the adapter gets it.
  publisher.connect().catch(() => {});
  const adapter = new RedisAdapter({
    publisher,
    subscriber: new FakeClient(broker),
  });
  const first = adapter.publish("news", "first");
  await pause(20);
  publisher.connected.resolve();
  await withTimeout(first, 1_000, "the publish");
  await adapter.publish("news", "second");
  assert.deepEqual(got, ["first", "second"]);
  await adapter.close();
});

Deno.test("RedisAdapter.subscribe() and unsubscribe() settle at close() when the client would never answer", async () => {
  const broker = new FakeBroker();
  const subscriber = new (class extends FakeClient {
    override subscribe(): Promise<void> {
      return new Promise(() => {}); // destroyed meanwhile: never settled
    }
    override unsubscribe(): Promise<void> {
      return new Promise(() => {});
    }
  })(broker);
  const adapter = new RedisAdapter({
    publisher: new FakeClient(broker),
    subscriber,
  });
  await adapter.start(() => {});
  const subscribing = adapter.subscribe("a");
  const unsubscribing = adapter.unsubscribe("b");
  await pause(20);
  await adapter.close();
  await withTimeout(subscribing, 1_000, "subscribe() to settle");
  await withTimeout(unsubscribing, 1_000, "unsubscribe() to settle");
});

Deno.test("RedisAdapter drops a publish whose connection dropped with it in flight, as during an outage: the client's error is reported once, the publish resolves", async () => {
  const broker = new FakeBroker();
  const publisher = new (class extends FakeClient {
    override publish(): Promise<number> {
      this.isReady = false;
      const error = new Error("Socket closed unexpectedly");
      for (const listener of this.errorListeners) listener(error);
      return Promise.reject(error);
    }
  })(broker);
  const { adapter, errors } = adapterOver(publisher, broker);
  await adapter.start(() => {});
  await adapter.publish("news", "lost");
  assert.equal(errors.length, 1);
  await adapter.close();
});

Deno.test("RedisAdapter queues nothing per topic while the subscriber is disconnected: topics that come and go during an outage never reach Redis, and those still wanted are subscribed once it is back", async () => {
  const broker = new FakeBroker();
  const commands: string[] = [];
  const subscriber = new (class extends FakeClient {
    override subscribe(
      channel: string,
      listener: (message: Buffer, channel: Buffer) => unknown,
      bufferMode: true,
    ): Promise<void> {
      commands.push(`subscribe ${channel}`);
      return super.subscribe(channel, listener, bufferMode);
    }
    override unsubscribe(channel: string): Promise<void> {
      commands.push(`unsubscribe ${channel}`);
      return super.unsubscribe(channel);
    }
  })(broker);
  const adapter = new RedisAdapter({
    publisher: new FakeClient(broker),
    subscriber,
  });
  await adapter.start(() => {});
  // An outage: node-redis would queue each command until it reconnects.
  subscriber.isReady = false;
  for (let i = 0; i < 1000; i++) {
    await adapter.subscribe(`user:${i}`);
    await adapter.unsubscribe(`user:${i}`);
  }
  await adapter.subscribe("lobby");
  assert.deepEqual(commands, []);
  // Back: the client is ready again.
  await subscriber.connect();
  await pause(20);
  assert.deepEqual(commands, ["subscribe duplex:lobby"]);
  assert.deepEqual([...broker.subscriptions.keys()], ["duplex:lobby"]);
  await adapter.close();
});

Deno.test("RedisAdapter asks again for a subscription Redis refused, and the topic hears other instances once it is granted", async () => {
  const broker = new FakeBroker();
  let refusals = 1;
  const subscriber = new RefusingClient(broker, () => refusals-- > 0);
  const errors: unknown[] = [];
  const a = new RedisAdapter({
    publisher: new FakeClient(broker),
    subscriber,
    onError: (error) => errors.push(error),
  });
  const b = new RedisAdapter({ publisher: new FakeClient(broker) });
  const got: unknown[] = [];
  await a.start((_topic, message) => got.push(message));
  await b.start(() => {});
  await assert.rejects(a.subscribe("room"), /NOPERM/);
  await until(
    () => broker.subscriptions.get("duplex:room")?.size === 1,
    "the retried subscription",
  );
  await b.publish("room", "granted");
  assert.deepEqual(got, ["granted"]);
  await a.close();
  await b.close();
});

Deno.test("RedisAdapter keeps one retry per refused topic however often sockets leave and come back, and stops retrying once granted", async () => {
  const broker = new FakeBroker();
  let refusing = true;
  const subscriber = new RefusingClient(broker, () => refusing);
  const adapter = new RedisAdapter({
    publisher: new FakeClient(broker),
    subscriber,
    onError: () => {},
  });
  await adapter.start(() => {});
  for (let i = 0; i < 6; i++) {
    await assert.rejects(adapter.subscribe("room"), /NOPERM/);
    if (i < 5) await adapter.unsubscribe("room");
  }
  assert.equal(subscriber.attempts, 6);
  refusing = false;
  await until(
    () => broker.subscriptions.get("duplex:room")?.size === 1,
    "the retried subscription",
  );
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  assert.equal(subscriber.attempts, 7, "one retry, not one per refusal");
  await adapter.close();
});

Deno.test("RedisAdapter() says which option is wrong", () => {
  const mistakes: [unknown, RegExp][] = [
    [undefined, /the options must be an object such as \{ url: "redis:/],
    [
      { url: "http://127.0.0.1:6379" },
      /"url" must be a redis:\/\/ or rediss:\/\/ URL, got "http:/,
    ],
    [{ url: "not a url" }, /"url" is not a URL/],
    [
      { publisher: {} },
      /"publisher" must be a node-redis client \(from createClient\(\)\), got Object without connect\(\)/,
    ],
    [
      { url: "redis://127.0.0.1", prefx: "x:" },
      /unknown option "prefx" \(did you mean "prefix"\?\)/,
    ],
    [
      { url: "redis://127.0.0.1", onError: "log" },
      /"onError" must be a function, got string "log"/,
    ],
    [
      { url: "redis://127.0.0.1", prefix: 1 },
      /"prefix" must be a string, got number 1/,
    ],
  ];
  for (const [options, message] of mistakes) {
    assert.throws(
      // deno-lint-ignore no-explicit-any
      () => new RedisAdapter(options as any),
      (error: Error) =>
        error instanceof TypeError &&
        error.message.startsWith("Cannot create a RedisAdapter: ") &&
        message.test(error.message),
      JSON.stringify(options),
    );
  }
});

// --- Against a real redis-server.

/** How many Redis clients subscribe to `channel`. */
async function subscribers(redis: RedisProcess, channel: string) {
  const reply = await redis.command(`PUBSUB NUMSUB ${channel}`);
  const match = reply.match(/:(\d+)\r\n$/);
  assert.ok(match, `unexpected PUBSUB NUMSUB reply ${JSON.stringify(reply)}`);
  return Number(match[1]);
}

/** Waits until Redis reports `count` subscribers of `channel`. */
function subscribersReach(
  redis: RedisProcess,
  channel: string,
  count: number,
): Promise<true> {
  return until(
    async () => await subscribers(redis, channel) === count,
    `${count} Redis subscriber(s) of ${channel}`,
  );
}

function redisServer(
  redis: RedisProcess,
  prefix: string,
  tracker: SocketTracker,
): Server {
  return serve(
    { ...LOCAL, pubsub: new RedisAdapter({ url: redis.url, prefix }) },
    tracker.wrap(idle),
  );
}

const ignore = REDIS_SERVER === null;

Deno.test({
  name:
    `RedisAdapter carries text and binary from one server instance to subscribers on another${REDIS_SKIP_NOTE}`,
  ignore,
  async fn() {
    await using redis = await startRedis();
    const prefix = uniqueName("duplex-test") + ":";
    const tracker = new SocketTracker();
    await using a = redisServer(redis, prefix, tracker);
    await using b = redisServer(redis, prefix, tracker);
    await using onA = await NpmClient.connect(wsUrl(a.addr));
    await using onB = await NpmClient.connect(wsUrl(b.addr));
    const socketA = await tracker.socket(onA.port);
    const socketB = await tracker.socket(onB.port);
    socketA.subscribe("room");
    socketB.subscribe("room");
    await subscribersReach(redis, `${prefix}room`, 2);

    assert.equal(a.publish("room", "héllo from a ✓"), 1);
    const bytes = new TextEncoder().encode("binary that looks like text");
    a.publish("room", bytes);
    a.publish("room", new Uint8Array([0, 0xff, 0x80]));
    for (const client of [onA, onB]) {
      assert.equal(await client.next(), "héllo from a ✓");
      assertBytes(await client.next(), bytes);
      assertBytes(await client.next(), new Uint8Array([0, 0xff, 0x80]));
    }
    // A never re-delivers its own publish: once B has the marker that B
    // published after it got everything from A, A's next message is that
    // marker and not a copy of A's messages coming back from Redis.
    socketB.publish("room", "marker from b");
    assert.equal(await onB.next(), "marker from b");
    assert.equal(await onA.next(), "marker from b");
    // A socket's publish crosses too, and a large one survives the trip.
    const big = crypto.getRandomValues(new Uint8Array(64 * 1024));
    socketA.publish("room", big, { exceptSelf: true });
    assertBytes(await onB.next(), big);
  },
});

Deno.test({
  name:
    `RedisAdapter subscribes on the first local subscriber, unsubscribes on the last, and shutdown closes its clients${REDIS_SKIP_NOTE}`,
  ignore,
  async fn() {
    await using redis = await startRedis();
    const prefix = uniqueName("duplex-test") + ":";
    const tracker = new SocketTracker();
    const server = redisServer(redis, prefix, tracker);
    try {
      const first = await NpmClient.connect(wsUrl(server.addr));
      const second = await DenoClient.connect(wsUrl(server.addr));
      const firstSocket = await tracker.socket(first.port);
      firstSocket.subscribe("room");
      await subscribersReach(redis, `${prefix}room`, 1);
      assert.equal(server.subscriberCount("room"), 1);

      await first.close();
      await withTimeout(firstSocket.closed, 5_000, "the socket to close");
      await subscribersReach(redis, `${prefix}room`, 0);
      await second.close();
    } finally {
      await server.shutdown();
    }
    // Only the probe's own connection is left.
    await until(
      async () =>
        (await redis.command("INFO clients")).includes("connected_clients:1"),
      "the adapter's clients to disconnect",
    );
  },
});

Deno.test({
  name:
    `RedisAdapter keeps a topic subscribed when its last local subscriber leaves and one joins before Redis confirmed the leave${REDIS_SKIP_NOTE}`,
  ignore,
  async fn() {
    await using redis = await startRedis();
    const prefix = uniqueName("duplex-test") + ":";
    const tracker = new SocketTracker();
    await using a = redisServer(redis, prefix, tracker);
    await using b = redisServer(redis, prefix, tracker);
    await using onB = await NpmClient.connect(wsUrl(b.addr));
    const socketB = await tracker.socket(onB.port);
    socketB.subscribe("room");
    await subscribersReach(redis, `${prefix}room`, 1);
    // Out and back in within one turn: an unsubscribe, then a subscribe,
    // both sent to Redis while the first is unanswered.
    socketB.unsubscribe("room");
    socketB.subscribe("room");
    assert.equal(b.subscriberCount("room"), 1);
    // A's messages reach B once Redis has seen both; before the fix B's
    // channel stayed unsubscribed for good and no probe ever arrived.
    const received = onB.next("a probe from A");
    let probes = 0;
    await until(async () => {
      a.publish("room", `probe ${probes++}`);
      return await Promise.race([
        received.then(() => true),
        new Promise<false>((resolve) => setTimeout(() => resolve(false), 20)),
      ]);
    }, "a message from A on the re-subscribed topic");
    assert.match(String(await received), /^probe \d+$/);
    await subscribersReach(redis, `${prefix}room`, 1);
  },
});

Deno.test({
  name:
    "RedisAdapter without onError reports connection errors to the server's logger as pubsub-error",
  async fn() {
    const events: ServerLogEvent[] = [];
    const server = serve({
      ...LOCAL,
      pubsub: new RedisAdapter({ url: `redis://127.0.0.1:${freePort()}` }),
      logger: (event) => events.push(event),
    }, idle);
    try {
      const error = await until(
        () => events.find((event) => event.type === "pubsub-error"),
        "a pubsub-error event",
      );
      assert.match(String((error as { error: unknown }).error), /ECONNREFUSED/);
    } finally {
      await withTimeout(server.shutdown(), 5_000, "the shutdown");
    }
  },
});

Deno.test({
  name:
    `RedisAdapter drops what is published while Redis is away instead of queueing it, and publishes again once back${REDIS_SKIP_NOTE}`,
  ignore,
  async fn() {
    const first = await startRedis();
    const port = first.port;
    const prefix = uniqueName("duplex-test") + ":";
    const errors: unknown[] = [];
    const adapter = new RedisAdapter({
      url: first.url,
      prefix,
      onError: (error) => errors.push(error),
    });
    try {
      await adapter.publish("room", "while up");
      await first[Symbol.asyncDispose]();
      await until(() => errors.length > 0, "the lost connection reported");
      // Settles at once: node-redis would otherwise hold it (and every
      // later message) in memory until Redis came back.
      await withTimeout(
        adapter.publish("room", new Uint8Array(1024 * 1024)),
        1_000,
        "a publish while Redis is away",
      );
      await using second = await startRedis(port);
      const subscriber = createClient({ url: second.url });
      await subscriber.connect();
      const received: string[] = [];
      await subscriber.subscribe(
        `${prefix}room`,
        (message: Buffer) => {
          const { message: decoded } = decodeEnvelope(message);
          received.push(typeof decoded === "string" ? decoded : "(bytes)");
        },
        true,
      );
      let probes = 0;
      await until(async () => {
        await adapter.publish("room", `back ${probes++}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
        return received.length > 0;
      }, "a publish after Redis came back");
      assert.match(received[0], /^back \d+$/, "the outage's message is gone");
      await subscriber.close();
    } finally {
      await adapter.close();
    }
  },
});

Deno.test({
  name:
    `RedisAdapter works with clients created by the caller, and alone to publish from a process without a server${REDIS_SKIP_NOTE}`,
  ignore,
  async fn() {
    await using redis = await startRedis();
    const prefix = uniqueName("duplex-test") + ":";
    const publisher = createClient({ url: redis.url });
    const subscriber = publisher.duplicate();
    await publisher.connect();
    const tracker = new SocketTracker();
    await using server = serve({
      ...LOCAL,
      pubsub: new RedisAdapter({ publisher, subscriber, prefix }),
    }, tracker.wrap(idle));
    await using client = await NpmClient.connect(wsUrl(server.addr));
    (await tracker.socket(client.port)).subscribe("jobs");
    await subscribersReach(redis, `${prefix}jobs`, 1);

    const worker = new RedisAdapter({ url: redis.url, prefix });
    try {
      await worker.publish("jobs", "done: #42");
      await worker.publish("jobs", new Uint8Array([4, 2]));
    } finally {
      await worker.close();
    }
    assert.equal(await client.next(), "done: #42");
    assertBytes(await client.next(), new Uint8Array([4, 2]));
  },
});

Deno.test({
  name:
    `RedisAdapter started while Redis is down drops what it publishes until it connects, instead of holding it all for later${REDIS_SKIP_NOTE}`,
  ignore,
  async fn() {
    const port = freePort();
    const prefix = uniqueName("duplex-test") + ":";
    const errors: unknown[] = [];
    const adapter = new RedisAdapter({
      url: `redis://127.0.0.1:${port}`,
      prefix,
      onError: (error) => errors.push(error),
    });
    await using server = serve({ ...LOCAL, pubsub: adapter }, idle);
    // Published before the first connection failed, and after.
    server.publish("news", "stale, early");
    await until(() => errors.length > 0, "a connection error");
    for (let i = 0; i < 100; i++) server.publish("news", `stale ${i}`);
    await using redis = await startRedis(port);
    const listener = createClient({ url: redis.url });
    await listener.connect();
    const received: string[] = [];
    try {
      await listener.subscribe(`${prefix}news`, (message: Buffer) => {
        received.push(String(decodeEnvelope(message).message));
      }, true);
      // Once the adapter is connected, a publish goes through.
      await until(async () => {
        server.publish("news", "fresh");
        await new Promise((resolve) => setTimeout(resolve, 50));
        return received.length > 0;
      }, "a publish after the connection");
      assert.ok(
        received.every((text) => text === "fresh"),
        `received ${received.slice(0, 3).join(", ")}`,
      );
    } finally {
      await listener.close();
    }
  },
});

Deno.test("server.shutdown() does not wait for a Redis server that is down; errors go to onError", async () => {
  const errors: unknown[] = [];
  const server = serve({
    ...LOCAL,
    pubsub: new RedisAdapter({
      url: `redis://127.0.0.1:${freePort()}`,
      onError: (error) => errors.push(error),
    }),
  }, idle);
  // Queued behind the connection that never comes; dropped at shutdown.
  server.publish("news", "nobody will get this");
  await until(() => errors.length > 0, "a connection error");
  await withTimeout(server.shutdown(), 5_000, "the shutdown");
  assert.match(String(errors[0]), /ECONNREFUSED/);
});
