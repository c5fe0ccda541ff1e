// A write completes once the peer has taken it, and completed writes are
// the only sign of a slow peer's progress: large chunks go out in slices,
// so that the close and write-stall timeouts see a peer that keeps reading.
import assert from "node:assert/strict";
import type { SocketOptions } from "../../src/socket_options.ts";
import { socketOver } from "./_helpers.ts";

const KIB = 1024;

/** One write the slow peer took. */
interface Write {
  size: number;
  /** The first byte: 0x88 for a close frame. */
  first: number;
}

/**
 * A server socket over a peer that takes `bytesPerMs` of what is written
 * and sends nothing; `writesAtClose` counts the writes taken when the socket
 * closed the transport.
 */
function slowPeer(bytesPerMs: number, options: Partial<SocketOptions>) {
  const writes: Write[] = [];
  const peer = { writes, writesAtClose: 0 };
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
      await new Promise((resolve) =>
        setTimeout(resolve, chunk.length / bytesPerMs)
      );
      writes.push({ size: chunk.length, first: chunk[0] });
    },
  });
  const socket = socketOver(readable, writable, options, () => {
    peer.writesAtClose = writes.length;
    transportClosed.resolve();
  });
  socket.run();
  return { socket, peer };
}

Deno.test("a peer taking 2 MB/s is not cut off by a 600 ms closeTimeout while it takes 2 MiB messages queued before close(): they are written in slices", async () => {
  const { socket, peer } = slowPeer(2000, { closeTimeout: 600 });
  for (let i = 0; i < 2; i++) socket.trySend(new Uint8Array(2048 * KIB));
  const info = await socket.close(4000, "all sent");
  // The peer never answers the close frame: 1006 once closeTimeout has
  // passed since it was written, not while the messages were.
  assert.equal(info.code, 1006);
  const sizes = peer.writes.map((write) => write.size);
  assert.ok(
    peer.writes.slice(0, peer.writesAtClose).some((w) => w.first === 0x88),
    `cut before the close frame was written: ${sizes}`,
  );
  assert.equal(
    sizes.reduce((sum, size) => sum + size, 0),
    2 * (2048 * KIB + 10) + 2 + 2 + 8,
  );
  assert.ok(sizes.every((size) => size <= 576 * KIB), `writes: ${sizes}`);
});

Deno.test("an HTTP response body leaves in watched writes of at most 64 KiB, head included, so that a slow reader's progress counts against requestTimeout write by write", async () => {
  const { writeResponse } = await import(
    "../../src/server/_response_writer.ts"
  );
  for (
    const body of [
      new Uint8Array(1024 * 1024 + 5), // in memory: leaves with the head
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new Uint8Array(300 * 1024));
          controller.enqueue(new Uint8Array(700 * 1024));
          controller.close();
        },
      }),
    ]
  ) {
    const writes: number[] = [];
    const events: boolean[] = [];
    const writer = new WritableStream<Uint8Array>({
      write: (chunk) => void writes.push(chunk.length),
    }).getWriter();
    const result = await writeResponse(writer, new Response(body), {
      head: false,
      http10: false,
      keepAlive: true,
      onWrite: (pending) => events.push(pending),
    });
    assert.equal(result.delivered, true);
    assert.ok(writes.length > 15, `${writes.length} writes`);
    for (const size of writes) assert.ok(size <= 64 * 1024 + 16, `${size}`);
    // Each body write is watched: started, then taken.
    const starts = events.filter((pending) => pending).length;
    assert.ok(starts >= writes.length - 1, `${starts} of ${writes.length}`);
    assert.equal(starts, events.length - starts);
  }
});
