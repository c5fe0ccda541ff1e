// A write completes once the peer has taken it, and completed writes are
// the only sign of a slow peer's progress: large chunks go out in slices,
// so that the close and write-stall timeouts see a peer that keeps reading.
import assert from "node:assert/strict";
import { socketOver } from "./_helpers.ts";
import { Ticker } from "../../src/ticker.ts";

const KIB = 1024;

Deno.test("a peer taking 2 MB/s is not cut off by a 600 ms closeTimeout while it takes 2 MiB messages queued before close(): they are written in slices", async () => {
  const writes: number[] = [];
  let closeFrameWritten = false;
  let cutBeforeCloseFrame: boolean | undefined;
  // The peer sends nothing until the socket closes the transport.
  const transportClosed = Promise.withResolvers<void>();
  const readable = new ReadableStream({
    type: "bytes",
    async pull(controller) {
      await transportClosed.promise;
      controller.close();
      controller.byobRequest?.respond(0);
    },
  });
  const writable = new WritableStream<Uint8Array>({
    async write(chunk) {
      // The peer takes 2000 bytes a millisecond.
      await new Promise((resolve) => setTimeout(resolve, chunk.length / 2000));
      writes.push(chunk.length);
      if (chunk[0] === 0x88) closeFrameWritten = true;
    },
  });
  const socket = socketOver(
    readable,
    writable,
    { closeTimeout: 600 },
    () => {
      cutBeforeCloseFrame = !closeFrameWritten;
      transportClosed.resolve();
    },
  );
  socket.run();
  for (let i = 0; i < 2; i++) socket.trySend(new Uint8Array(2048 * KIB));
  const info = await socket.close(4000, "all sent");
  // The peer never answers the close frame: 1006 once closeTimeout has
  // passed since it was written, not while the messages were.
  assert.equal(info.code, 1006);
  assert.equal(cutBeforeCloseFrame, false, `writes: ${writes}`);
  assert.equal(
    writes.reduce((sum, size) => sum + size, 0),
    2 * (2048 * KIB + 10) + 2 + 2 + 8,
  );
  assert.ok(writes.every((size) => size <= 576 * KIB), `writes: ${writes}`);
});

Deno.test("a keepalive ping is not judged while the peer still takes the output written after it: a slow reader may have it behind what the kernel holds", async () => {
  let closedAt = -1;
  let lastWriteAt = -1;
  let written = 0;
  const pingWritten = Promise.withResolvers<void>();
  const transportClosed = Promise.withResolvers<void>();
  const readable = new ReadableStream({
    type: "bytes",
    async pull(controller) {
      await transportClosed.promise;
      controller.close();
      controller.byobRequest?.respond(0);
    },
  });
  const writable = new WritableStream<Uint8Array>({
    async write(chunk) {
      // The peer takes 4000 bytes a millisecond.
      await new Promise((resolve) => setTimeout(resolve, chunk.length / 4000));
      lastWriteAt = performance.now();
      written += chunk.length;
      if (chunk[0] === 0x89) pingWritten.resolve();
    },
  });
  const socket = socketOver(
    readable,
    writable,
    { pingInterval: 100, pongTimeout: 300, ticker: new Ticker(50) },
    () => {
      closedAt = performance.now();
      transportClosed.resolve();
    },
  );
  socket.run();
  // (The ticker's timer does not keep the event loop alive; this does.)
  const keepAlive = setTimeout(() => {}, 10_000);
  // The peer never answers the keepalive ping; what is sent once the ping
  // is written keeps the peer busy for half a second, longer than
  // pongTimeout.
  await pingWritten.promise;
  for (let i = 0; i < 4; i++) socket.trySend(new Uint8Array(512 * KIB));
  const info = await socket.closed;
  clearTimeout(keepAlive);
  assert.equal(info.code, 1011);
  assert.equal(info.reason, "keepalive pong timeout");
  assert.ok(closedAt >= lastWriteAt, "closed while the peer still took data");
  assert.ok(written >= 4 * 512 * KIB, `${written} bytes written`);
});
