import assert from "node:assert/strict";
import {
  PreparedMessage,
  prepareMessage,
  serve,
  type ServerLogEvent,
  type SocketHandler,
} from "../../mod.ts";
import { Topics } from "../../src/pubsub/topics.ts";
import type { SendStatus } from "../../src/socket_options.ts";
import {
  assertBytes,
  DenoClient,
  idle,
  LOCAL,
  NpmClient,
  rawHandshake,
  RecordingAdapter,
  SocketTracker,
  until,
  withTimeout,
  wsUrl,
} from "./_helpers.ts";

/** Subscribes each socket to the topics in `?topics=a,b`, then says "ready". */
const subscribing: SocketHandler = async (socket) => {
  const topics = socket.url.searchParams.get("topics") ?? "";
  for (const topic of topics.split(",").filter(Boolean)) {
    socket.subscribe(topic);
  }
  await socket.send("ready");
  for await (const _ of socket) { /* keep open */ }
};

async function npmSubscriber(
  addr: Deno.NetAddr,
  topics: string,
): Promise<NpmClient> {
  const client = await NpmClient.connect(wsUrl(addr, `/?topics=${topics}`));
  assert.equal(await client.next("the ready message"), "ready");
  return client;
}

async function denoSubscriber(
  addr: Deno.NetAddr,
  topics: string,
): Promise<DenoClient> {
  const client = await DenoClient.connect(wsUrl(addr, `/?topics=${topics}`));
  assert.equal(await client.next("the ready message"), "ready");
  return client;
}

Deno.test("server.publish() reaches the subscribers of a topic, with the message type, on npm:ws and Deno WebSocket", async () => {
  await using server = serve(LOCAL, subscribing);
  await using npm = await npmSubscriber(server.addr, "news");
  await using deno = await denoSubscriber(server.addr, "news");
  await using other = await npmSubscriber(server.addr, "sports");

  assert.equal(server.subscriberCount("news"), 2);
  assert.equal(server.publish("news", "hello"), 2);
  assert.equal(server.publish("news", new Uint8Array([0, 1, 255])), 2);
  // Bytes that are valid UTF-8 stay binary.
  assert.equal(server.publish("news", new TextEncoder().encode("bytes")), 2);
  for (const client of [npm, deno]) {
    assert.equal(await client.next(), "hello");
    assertBytes(await client.next(), new Uint8Array([0, 1, 255]));
    assertBytes(await client.next(), new TextEncoder().encode("bytes"));
  }
  // The subscriber of another topic got none of it: its next message is
  // the one published to its own topic.
  assert.equal(server.publish("sports", "goal"), 1);
  assert.equal(await other.next(), "goal");
  assert.equal(server.publish("nobody-listens", "void"), 0);
});

Deno.test("socket.subscribe() and unsubscribe() report changes and keep socket.subscriptions", async () => {
  const tracker = new SocketTracker();
  await using server = serve(LOCAL, tracker.wrap(idle));
  await using client = await NpmClient.connect(wsUrl(server.addr));
  const socket = await tracker.socket(client.port);

  assert.equal(socket.subscribe("a"), true);
  assert.equal(socket.subscribe("a"), false, "already subscribed");
  assert.equal(socket.subscribe("b"), true);
  assert.deepEqual([...socket.subscriptions], ["a", "b"]);
  assert.equal(server.subscriberCount("a"), 1);

  assert.equal(socket.unsubscribe("a"), true);
  assert.equal(socket.unsubscribe("a"), false, "not subscribed any more");
  assert.equal(socket.unsubscribe("never"), false);
  assert.deepEqual([...socket.subscriptions], ["b"]);
  assert.equal(server.subscriberCount("a"), 0);

  // After unsubscribing, "a" no longer arrives; "b" still does.
  assert.equal(server.publish("a", "lost"), 0);
  assert.equal(server.publish("b", "kept"), 1);
  assert.equal(await client.next(), "kept");
});

Deno.test("socket.unsubscribe() after the socket closed says it was not subscribed, though others still are", async () => {
  const tracker = new SocketTracker();
  await using server = serve(LOCAL, tracker.wrap(idle));
  await using first = await NpmClient.connect(wsUrl(server.addr));
  await using second = await NpmClient.connect(wsUrl(server.addr));
  const leaving = await tracker.socket(first.port);
  const staying = await tracker.socket(second.port);
  leaving.subscribe("room");
  staying.subscribe("room");
  await leaving.close(1000);
  // Out of the topic, though still listed for the handler's cleanup.
  assert.equal(server.subscriberCount("room"), 1);
  assert.deepEqual([...leaving.subscriptions], ["room"]);
  assert.equal(leaving.unsubscribe("room"), false);
  assert.equal(server.subscriberCount("room"), 1);
});

Deno.test("socket.publish() includes the sender unless exceptSelf is set", async () => {
  const tracker = new SocketTracker();
  await using server = serve(LOCAL, tracker.wrap(idle));
  await using alice = await NpmClient.connect(wsUrl(server.addr));
  await using bob = await NpmClient.connect(wsUrl(server.addr));
  const aliceSocket = await tracker.socket(alice.port);
  const bobSocket = await tracker.socket(bob.port);
  aliceSocket.subscribe("room");
  bobSocket.subscribe("room");

  assert.equal(aliceSocket.publish("room", "to all"), 2);
  assert.equal(await alice.next(), "to all");
  assert.equal(await bob.next(), "to all");

  assert.equal(
    aliceSocket.publish("room", "to others", { exceptSelf: true }),
    1,
  );
  assert.equal(await bob.next(), "to others");
  // Alice's next message is the one after: she did not get her own.
  assert.equal(bobSocket.publish("room", "marker"), 2);
  assert.equal(await alice.next(), "marker");
  assert.equal(await bob.next(), "marker");
});

Deno.test("server.publish() leaves out the socket given as except", async () => {
  const tracker = new SocketTracker();
  await using server = serve(LOCAL, tracker.wrap(idle));
  await using a = await NpmClient.connect(wsUrl(server.addr));
  await using b = await NpmClient.connect(wsUrl(server.addr));
  const aSocket = await tracker.socket(a.port);
  const bSocket = await tracker.socket(b.port);
  aSocket.subscribe("t");
  bSocket.subscribe("t");

  assert.equal(server.publish("t", "not for a", { except: aSocket }), 1);
  assert.equal(await b.next(), "not for a");
  assert.equal(server.publish("t", "for both"), 2);
  assert.equal(await a.next(), "for both");
  assert.equal(await b.next(), "for both");
});

Deno.test("subscriberCount() drops as sockets close, and the adapter hears of the first and last subscriber only", async () => {
  const adapter = new RecordingAdapter();
  const tracker = new SocketTracker();
  await using server = serve({ ...LOCAL, pubsub: adapter }, tracker.wrap(idle));
  const clients = await Promise.all(
    [0, 1, 2].map(() => NpmClient.connect(wsUrl(server.addr))),
  );
  const sockets = await Promise.all(
    clients.map((client) => tracker.socket(client.port)),
  );
  for (const socket of sockets) socket.subscribe("room");
  sockets[0].subscribe("solo");
  assert.equal(server.subscriberCount("room"), 3);
  assert.deepEqual(adapter.callsOf("subscribe"), [
    ["subscribe", "room"],
    ["subscribe", "solo"],
  ]);

  // Closing sockets unsubscribes them; the last one out tells the adapter.
  await clients[0].close();
  await withTimeout(sockets[0].closed, 5_000, "socket 0 to close");
  assert.equal(server.subscriberCount("room"), 2);
  assert.equal(server.subscriberCount("solo"), 0);
  assert.deepEqual(adapter.callsOf("unsubscribe"), [["unsubscribe", "solo"]]);
  // A closed socket still tells which topics it was in (for a handler's
  // cleanup: announcing who left), though it is out of them all.
  assert.deepEqual([...sockets[0].subscriptions], ["room", "solo"]);
  assert.equal(sockets[0].subscribe("room"), false, "a closed socket");
  assert.deepEqual([...sockets[0].subscriptions], ["room", "solo"]);

  await Promise.all(clients.slice(1).map((client) => client.close()));
  await Promise.all(sockets.map((socket) => socket.closed));
  assert.equal(server.subscriberCount("room"), 0);
  assert.deepEqual(adapter.callsOf("unsubscribe"), [
    ["unsubscribe", "solo"],
    ["unsubscribe", "room"],
  ]);

  await server.shutdown();
  assert.deepEqual(adapter.calls.at(0), ["start"]);
  assert.deepEqual(adapter.calls.at(-1), ["close"]);
});

Deno.test("Topics delivers to every other subscriber when one throws, and reports the error", () => {
  const errors: unknown[] = [];
  const topics = new Topics(undefined, (error) => errors.push(error));
  const received: string[] = [];
  const subscriber = (name: string) => ({
    trySend(): SendStatus {
      if (name === "broken") throw new TypeError("broken subscriber");
      received.push(name);
      return "sent";
    },
  });
  for (const name of ["a", "broken", "c"]) {
    topics.subscribe("t", subscriber(name));
  }
  assert.equal(topics.publish("t", "hello"), 2);
  assert.deepEqual(received, ["a", "c"]);
  assert.match(String(errors[0]), /broken subscriber/);
});

Deno.test("Topics tells the adapter of a first subscriber once it is in: an adapter that delivers from inside subscribe() (a retained message) reaches it, and one subscribing again there asks nothing more", async () => {
  let deliver: (topic: string, message: string) => void = () => {};
  const subscribed: string[] = [];
  const topics: Topics = new Topics({
    start(onMessage) {
      deliver = onMessage;
    },
    subscribe(topic) {
      subscribed.push(topic);
      deliver(topic, "retained");
      topics.subscribe(topic, second);
    },
    unsubscribe() {},
    publish() {},
    close() {},
  }, (error) => {
    throw error;
  });
  await topics.ready;
  const received: string[] = [];
  const subscriber = (name: string) => ({
    trySend(prepared: { message: string | Uint8Array }): SendStatus {
      received.push(`${name}:${prepared.message}`);
      return "sent";
    },
  });
  const second = subscriber("second");
  topics.subscribe("news", subscriber("first"));
  assert.deepEqual(received, ["first:retained"]);
  assert.deepEqual(subscribed, ["news"]);
  assert.equal(topics.subscriberCount("news"), 2);
});

Deno.test("Topics frames a published message once: every subscriber gets the same PreparedMessage", () => {
  const adapter = new RecordingAdapter();
  const topics = new Topics(adapter, (error) => {
    throw error;
  });
  const received: [string, unknown][] = [];
  const subscriber = (name: string, status: SendStatus = "sent") => ({
    trySend(message: unknown): SendStatus {
      received.push([name, message]);
      return status;
    },
  });
  const a = subscriber("a");
  const b = subscriber("b", "backpressure");
  const c = subscriber("c", "dropped");
  for (const s of [a, b, c]) topics.subscribe("t", s);

  // Two counted as queued: "dropped" is not.
  assert.equal(topics.publish("t", "hello"), 2);
  assert.equal(received.length, 3);
  const first = received[0][1];
  assert.ok(first instanceof PreparedMessage);
  for (const [, message] of received) assert.equal(message, first);
  assert.equal(first.message, "hello");
  // The adapter gets the plain message to carry to other instances.
  assert.deepEqual(adapter.callsOf("publish"), [["publish", "t", "hello"]]);

  // A message prepared by the caller is passed through as it is.
  received.length = 0;
  const prepared = prepareMessage(new Uint8Array([1, 2, 3]));
  topics.publish("t", prepared, { except: b });
  assert.deepEqual(received.map(([name]) => name), ["a", "c"]);
  for (const [, message] of received) assert.equal(message, prepared);

  // A message from another instance is framed once too.
  received.length = 0;
  adapter.receive("t", "remote");
  assert.equal(received.length, 3);
  for (const [, message] of received) assert.equal(message, received[0][1]);
  assert.equal((received[0][1] as PreparedMessage).message, "remote");
  // ...and dropped when nobody here subscribes to its topic.
  received.length = 0;
  adapter.receive("elsewhere", "remote");
  assert.equal(received.length, 0);
});

Deno.test("a message from another instance reaches local subscribers of its topic only", async () => {
  const adapter = new RecordingAdapter();
  await using server = serve({ ...LOCAL, pubsub: adapter }, subscribing);
  await using news = await npmSubscriber(server.addr, "news");
  await using sports = await denoSubscriber(server.addr, "sports");
  adapter.receive("news", "remote text");
  adapter.receive("news", new Uint8Array([9, 8, 7]));
  adapter.receive("sports", "remote goal");
  assert.equal(await news.next(), "remote text");
  assertBytes(await news.next(), new Uint8Array([9, 8, 7]));
  assert.equal(await sports.next(), "remote goal");
  // Remote messages are not forwarded back to the adapter.
  assert.deepEqual(adapter.callsOf("publish"), []);
});

Deno.test("server.shutdown() closes an adapter that is still starting instead of waiting for it", async () => {
  const started = Promise.withResolvers<void>();
  const calls: string[] = [];
  const server = serve({
    ...LOCAL,
    pubsub: {
      start: () => started.promise,
      publish: () => {},
      close: () => {
        calls.push("close");
        started.resolve();
      },
    },
  }, idle);
  await withTimeout(server.shutdown(), 5_000, "the shutdown");
  assert.deepEqual(calls, ["close"]);
});

Deno.test("server.shutdown() does not wait past its timeout for an adapter whose close() never ends (a Redis that stopped answering)", async () => {
  const server = serve({
    ...LOCAL,
    pubsub: {
      start: () => {},
      publish: () => {},
      close: () => new Promise<void>(() => {}),
    },
  }, idle);
  await withTimeout(server.shutdown({ timeout: 200 }), 5_000, "the shutdown");
});

Deno.test("topics must be well-formed Unicode: lone surrogates would be one channel over a broker", async () => {
  await using server = serve(LOCAL, idle);
  for (const topic of ["\uD800", "room-\uDC00"]) {
    assert.throws(() => server.publish(topic, "x"), {
      name: "TypeError",
      message:
        /Cannot publish: the topic must be well-formed Unicode, got .* with a lone surrogate/,
    });
  }
  assert.equal(server.publish("\uD83D\uDE00 room", "x"), 0);
});

Deno.test("an adapter that fails to publish is reported as pubsub-error; local delivery goes on", async () => {
  const adapter = new RecordingAdapter();
  adapter.failPublish = new Error("broker down");
  const events: ServerLogEvent[] = [];
  await using server = serve(
    { ...LOCAL, pubsub: adapter, logger: (event) => events.push(event) },
    subscribing,
  );
  await using client = await npmSubscriber(server.addr, "t");
  assert.equal(server.publish("t", "still here"), 1);
  assert.equal(await client.next(), "still here");
  const errors = await until(
    () => {
      const found = events.filter((event) => event.type === "pubsub-error");
      return found.length > 0 && found;
    },
    "the pubsub-error event",
  );
  assert.equal(errors.length, 1);
  assert.equal(
    (errors[0] as { error: Error }).error.message,
    "broker down",
  );
});

const MESSAGE_SIZE = 64 * 1024;
const BATCH = 8; // 512 KiB per batch, below maxBackpressure.
const MAX_BACKPRESSURE = 1024 * 1024;
// Kernel buffers absorb some megabytes for the peer that never reads; give up
// well beyond that rather than loop forever.
const MAX_BATCHES = 512;

for (const policy of ["drop", "close"] as const) {
  Deno.test(`a subscriber that never reads does not stall the others (backpressurePolicy "${policy}")`, async () => {
    const tracker = new SocketTracker();
    await using server = serve({
      ...LOCAL,
      maxBackpressure: MAX_BACKPRESSURE,
      backpressurePolicy: policy,
      pingInterval: 0,
    }, tracker.wrap(subscribing));
    const fast = [
      await npmSubscriber(server.addr, "firehose"),
      await npmSubscriber(server.addr, "firehose"),
      await denoSubscriber(server.addr, "firehose"),
    ];
    // Completes the handshake, reads "ready", then never reads again.
    using slow = await rawHandshake(server.addr, new Uint8Array(0));
    const slowSocket = await tracker.socket(slow.port);
    // rawHandshake requests "/" with no topics; subscribe it here.
    slowSocket.subscribe("firehose");
    assert.equal((await slow.readFrame()).opcode, 0x1, "the ready message");
    assert.equal(server.subscriberCount("firehose"), 4);

    const payload = new Uint8Array(MESSAGE_SIZE);
    let sequence = 0;
    const publishBatch = async () => {
      for (let i = 0; i < BATCH; i++) {
        new DataView(payload.buffer).setUint32(0, sequence++);
        server.publish("firehose", payload);
      }
      // Every fast subscriber gets every message, in order, before the
      // next batch: they read, so their queues drain.
      for (const client of fast) {
        for (let i = sequence - BATCH; i < sequence; i++) {
          const message = await client.next(`message ${i}`);
          assert.ok(message instanceof Uint8Array);
          assert.equal(message.length, MESSAGE_SIZE);
          assert.equal(new DataView(message.buffer).getUint32(0), i);
        }
      }
    };
    const slowGaveWay = () =>
      policy === "drop"
        ? server.stats().backpressureDrops > 0
        : slowSocket.state === "closed";
    let batches = 0;
    while (!slowGaveWay()) {
      assert.ok(
        batches++ < MAX_BATCHES,
        `the slow subscriber met no backpressure after ${batches} batches`,
      );
      await publishBatch();
    }
    // The others keep getting everything after the slow one gave way.
    for (let i = 0; i < 4; i++) await publishBatch();

    if (policy === "drop") {
      assert.equal(slowSocket.state, "open");
      assert.ok(slowSocket.bufferedAmount <= MAX_BACKPRESSURE + MESSAGE_SIZE);
    } else {
      const info = await withTimeout(slowSocket.closed, 5_000, "slow close");
      assert.equal(info.code, 1008);
      assert.equal(server.subscriberCount("firehose"), 3);
    }
    slow.close();
    for (const client of fast) await client[Symbol.asyncDispose]();
  });
}
