import assert from "node:assert/strict";
import { BroadcastChannelAdapter, serve } from "../../mod.ts";
import {
  assertBytes,
  idle,
  LOCAL,
  NpmClient,
  SocketTracker,
  uniqueName,
  wsUrl,
} from "./_helpers.ts";
import { DEADLINE, withTimeout } from "../server/_helpers.ts";

Deno.test("BroadcastChannelAdapter shares a topic between two servers in one process, text and binary preserved", async () => {
  const name = uniqueName("bc");
  const tracker = new SocketTracker();
  await using a = serve(
    { ...LOCAL, pubsub: new BroadcastChannelAdapter(name) },
    tracker.wrap(idle),
  );
  await using b = serve(
    { ...LOCAL, pubsub: new BroadcastChannelAdapter(name) },
    tracker.wrap(idle),
  );
  await using onA = await NpmClient.connect(wsUrl(a.addr));
  await using onB = await NpmClient.connect(wsUrl(b.addr));
  const socketA = await tracker.socket(onA.port);
  const socketB = await tracker.socket(onB.port);
  socketA.subscribe("room");
  socketB.subscribe("room");

  // server.publish on A: A's subscriber locally, B's through the channel.
  assert.equal(a.publish("room", "from a"), 1);
  a.publish("room", new Uint8Array([0xde, 0xad]));
  for (const client of [onA, onB]) {
    assert.equal(await client.next(), "from a");
    assertBytes(await client.next(), new Uint8Array([0xde, 0xad]));
  }

  // socket.publish on B reaches A, and B's own subscriber exactly once: the
  // next message on each is the marker published after it.
  socketB.publish("room", "from b's socket");
  assert.equal(await onA.next(), "from b's socket");
  assert.equal(await onB.next(), "from b's socket");
  a.publish("room", "marker");
  assert.equal(await onA.next(), "marker");
  assert.equal(await onB.next(), "marker");
});

Deno.test("BroadcastChannelAdapter keeps servers with another channel name apart", async () => {
  const name = uniqueName("bc");
  const tracker = new SocketTracker();
  await using a = serve(
    { ...LOCAL, pubsub: new BroadcastChannelAdapter(name) },
    tracker.wrap(idle),
  );
  await using b = serve(
    { ...LOCAL, pubsub: new BroadcastChannelAdapter(name) },
    tracker.wrap(idle),
  );
  await using c = serve(
    { ...LOCAL, pubsub: new BroadcastChannelAdapter(uniqueName("other")) },
    tracker.wrap(idle),
  );
  await using onB = await NpmClient.connect(wsUrl(b.addr));
  await using onC = await NpmClient.connect(wsUrl(c.addr));
  (await tracker.socket(onB.port)).subscribe("news");
  (await tracker.socket(onC.port)).subscribe("news");

  assert.equal(a.publish("news", "for b"), 0, "no local subscriber on a");
  assert.equal(await onB.next(), "for b");
  // C's subscriber did not get it: its next message is C's own.
  c.publish("news", "c's own");
  assert.equal(await onC.next(), "c's own");
});

Deno.test("BroadcastChannelAdapter delivers a burst of 2000 publishes to another worker whole and in order", async () => {
  const name = uniqueName("bc-burst");
  const worker = new Worker(new URL("./_bc_worker.ts", import.meta.url), {
    type: "module",
  });
  try {
    const next = () =>
      new Promise<unknown>((resolve) =>
        worker.onmessage = (e) => resolve(e.data)
      );
    const sent = Array.from({ length: 2000 }, (_, i) => `t:m${i}`);
    worker.postMessage({ name, expect: sent.length });
    assert.equal(await next(), "ready");
    const received = next();
    const adapter = new BroadcastChannelAdapter(name);
    adapter.start(() => {});
    // One turn's burst: Deno's BroadcastChannel dropped most of it when
    // each message was posted apart.
    for (let i = 0; i < sent.length; i++) adapter.publish("t", `m${i}`);
    assert.deepEqual(
      await withTimeout(received, DEADLINE, "all 2000 in the worker"),
      sent,
    );
    adapter.close();
  } finally {
    worker.terminate();
  }
});

Deno.test("BroadcastChannelAdapter reports a post that fails to start()'s onError, rather than throw it at the end of the turn", async () => {
  const adapter = new BroadcastChannelAdapter("duplex-test-post-failure");
  const errors: unknown[] = [];
  adapter.start(() => {}, (error) => errors.push(error));
  const bytes = new Uint8Array(4);
  adapter.publish("topic", bytes);
  bytes.buffer.transfer(); // detached: it cannot be cloned to post
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof Error, String(errors[0]));
  adapter.close();
});
Deno.test("BroadcastChannelAdapter started in the turn its thread's last channel closed (a server restarted at once) still reaches another worker", async () => {
  const name = uniqueName("bc-restart");
  const worker = new Worker(new URL("./_bc_worker.ts", import.meta.url), {
    type: "module",
  });
  try {
    const ready = Promise.withResolvers<void>();
    const received = new Promise<unknown>((resolve) =>
      worker.onmessage = (e) =>
        e.data === "ready" ? ready.resolve() : resolve(e.data)
    );
    worker.postMessage({ name, expect: 1 });
    await withTimeout(ready.promise, DEADLINE, "the worker");
    const previous = new BroadcastChannelAdapter(name);
    previous.start(() => {});
    await new Promise((resolve) => setTimeout(resolve, 10));
    // Closed, and a new one opened in the same turn: Deno 2.9's channel
    // then fails every post ("expected i32").
    previous.close();
    const restarted = new BroadcastChannelAdapter(name);
    const errors: unknown[] = [];
    restarted.start(() => {}, (error) => errors.push(error));
    await new Promise((resolve) => setTimeout(resolve, 10));
    restarted.publish("news", "after the restart");
    assert.deepEqual(
      await withTimeout(received, DEADLINE, "the message in the worker"),
      ["news:after the restart"],
    );
    assert.deepEqual(errors, []);
    restarted.close();
  } finally {
    worker.terminate();
  }
});
