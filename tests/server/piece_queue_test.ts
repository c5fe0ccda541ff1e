// The queue of a message streamed in (streamMessages): every waiting byte is
// counted, and tiny pieces merge, so that a peer trickling bytes cannot
// make one message hold hundreds of times its size.
import assert from "node:assert/strict";
import { PieceQueue } from "../../src/_piece_queue.ts";

Deno.test("PieceQueue merges tiny waiting pieces and counts their bytes plus a bounded overhead", async () => {
  let cost = 0;
  const queue = new PieceQueue<Uint8Array>((change) => cost += change);
  for (let i = 0; i < 100_000; i++) queue.push(new Uint8Array([i & 0xff]));
  queue.end();
  // One object per byte would be about 100 bytes of overhead each.
  assert.ok(cost < 110_000, `cost ${cost}`);
  const pieces = await Array.fromAsync(queue.readable);
  assert.ok(pieces.length <= 8, `${pieces.length} pieces`);
  const bytes = pieces.flatMap((piece) => [...piece]);
  assert.equal(bytes.length, 100_000);
  assert.ok(bytes.every((byte, i) => byte === (i & 0xff)));
  assert.equal(cost, 0);
});

Deno.test("PieceQueue hands pieces to a waiting reader at once, and gives back their cost when read, canceled or failed", async () => {
  let cost = 0;
  let canceled = false;
  const queue = new PieceQueue<string>(
    (change) => cost += change,
    () => canceled = true,
  );
  const reader = queue.readable.getReader();
  const first = reader.read();
  queue.push("a".repeat(20_000));
  assert.deepEqual(await first, { done: false, value: "a".repeat(20_000) });
  assert.equal(cost, 0);
  queue.push("b");
  assert.ok(cost > 0);
  await reader.cancel();
  assert.ok(canceled);
  assert.equal(cost, 0);
  queue.push("c"); // ignored once canceled
  assert.equal(cost, 0);

  const failing = new PieceQueue<string>((change) => cost += change);
  failing.push("x");
  failing.error(new Error("gone"));
  assert.equal(cost, 0);
  await assert.rejects(failing.readable.getReader().read(), /gone/);
});

Deno.test("PieceQueue.release() gives back the cost of what waits, and counts nothing after, while the pieces stay readable", async () => {
  let cost = 0;
  const queue = new PieceQueue<string>((change) => cost += change);
  queue.push("x".repeat(20_000));
  queue.end();
  assert.ok(cost > 0);
  queue.release();
  assert.equal(cost, 0);
  assert.deepEqual(await Array.fromAsync(queue.readable), ["x".repeat(20_000)]);
  assert.equal(cost, 0);
});

Deno.test("PieceQueue counts each text merge's own object: text trickled one character per frame is not nearly free", () => {
  let cost = 0;
  const queue = new PieceQueue<string>((change) => cost += change);
  for (let i = 0; i < 4096; i++) queue.push("x");
  // V8 keeps each `tail + piece` as an object of its own until read.
  assert.ok(cost >= 4096 * 32, `cost ${cost}`);
});
