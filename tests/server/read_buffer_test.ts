// The socket's read size follows the traffic: it grows when a read fills the
// buffer and shrinks only after a run of small reads, so traffic that
// alternates big and small reads does not reallocate on every read.
import assert from "node:assert/strict";
import { frame, OP, socketOver } from "./_helpers.ts";

const KiB = 1024;

/**
 * A byte stream answering its first `reads` BYOB reads at once, each with
 * what `fill` puts in the offered view (it returns the length), then ending.
 */
function immediateReads(
  reads: number,
  fill: (view: Uint8Array) => number,
): { readable: ReadableStream<Uint8Array<ArrayBuffer>>; served(): number } {
  let served = 0;
  const readable = new ReadableStream({
    type: "bytes",
    pull(controller) {
      const request = controller.byobRequest!;
      if (++served > reads) {
        controller.close();
        request.respond(0);
        return;
      }
      request.respond(fill(request.view as Uint8Array));
    },
  });
  return { readable, served: () => served };
}

/** Endless bytes: one 64 MiB binary frame, so every later byte is payload. */
function oneHugeFrame(): (view: Uint8Array) => void {
  let head: Uint8Array | null = frame(OP.binary, new Uint8Array(0), {
    declaredLength: 64 * 1024 * KiB,
  });
  return (view) => {
    if (head !== null) view.set(head.subarray(0, view.length));
    head = null;
  };
}

/** Endless bytes: back-to-back masked 1000-byte binary frames. */
function smallFrames(): (view: Uint8Array) => void {
  const bytes = frame(OP.binary, new Uint8Array(1000));
  let at = 0;
  return (view) => {
    for (let i = 0; i < view.length; i++) {
      view[i] = bytes[at];
      at = (at + 1) % bytes.length;
    }
  };
}

/**
 * Runs a server socket over a byte stream that answers each BYOB read with a
 * full buffer or a single byte, following `script`, then ends; returns the
 * size of every buffer the socket offered.
 */
async function offeredReadSizes(
  script: ("full" | "one")[],
  fill = oneHugeFrame(),
): Promise<number[]> {
  const offered: number[] = [];
  const readable = new ReadableStream({
    type: "bytes",
    pull(controller) {
      const request = controller.byobRequest!;
      const view = request.view as Uint8Array;
      offered.push(view.byteLength);
      const next = script.shift();
      if (next === undefined) {
        controller.close();
        request.respond(0);
        return;
      }
      const length = next === "full" ? view.byteLength : 1;
      fill(view.subarray(0, length));
      request.respond(length);
    },
  });
  const socket = socketOver(readable, undefined, {
    maxPayload: 128 * 1024 * KiB,
    // Nobody takes the messages: let them pile up rather than pause reading.
    receiveHighWaterMark: 1024 * 1024 * KiB,
    maxQueuedMessages: 1_000_000,
  });
  await socket.run();
  return offered;
}

Deno.test("the read buffer doubles on full reads up to 256 KiB between small frames", async () => {
  const offered = await offeredReadSizes(
    Array<"full">(12).fill("full"),
    smallFrames(),
  );
  assert.deepEqual(
    offered,
    [1, 2, 4, 8, 16, 32, 64, 128, 256, 256, 256, 256, 256].map((n) => n * KiB),
  );
});

Deno.test("the read buffer grows to 1 MiB inside a frame that needs more, holds through alternating reads, then shrinks after four small ones", async () => {
  const growing = Array<"full">(11).fill("full");
  const alternating = Array.from(
    { length: 20 },
    (_, i) => i % 2 === 0 ? "one" as const : "full" as const,
  );
  const quiet = Array<"one">(4).fill("one");
  const offered = await offeredReadSizes([
    ...growing,
    ...alternating,
    ...quiet,
  ]);
  assert.deepEqual(
    offered.slice(0, 12),
    [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 1024].map((n) => n * KiB),
  );
  // Alternating big and small reads keep the same buffer size.
  assert.deepEqual(offered.slice(12, 35), Array(23).fill(1024 * KiB));
  // Four small reads in a row: down to an eighth.
  assert.deepEqual(offered.slice(35), [128 * KiB]);
});

Deno.test("a socket whose reads all complete at once still lets the event loop turn: a timer set when reading starts fires long before the reads end", async () => {
  // Every read is answered at once, as a socket that always holds data is:
  // without a pause now and then, the read loop would run on in microtasks
  // and starve every other connection (and timer) until the peer stopped.
  const reads = 10_000;
  const ping = frame(OP.ping, new Uint8Array(125));
  const { readable, served } = immediateReads(reads, (view) => {
    const length = Math.min(view.length, ping.length);
    view.set(ping.subarray(0, length));
    return length;
  });
  const socket = socketOver(readable);
  let servedWhenTimerFired = -1;
  const timer = new Promise<void>((resolve) =>
    setTimeout(() => {
      servedWhenTimerFired = served();
      resolve();
    }, 0)
  );
  await socket.run();
  await timer;
  assert.ok(
    servedWhenTimerFired < reads / 10,
    `the timer fired after ${servedWhenTimerFired} of ${reads} reads`,
  );
});

Deno.test("a read of tens of thousands of tiny pings is parsed a few thousand frames per turn of the event loop", async () => {
  // Each read is answered with a buffer full of empty pings; every turn
  // that parsed some queues a pong, written once per turn (corking). Parsed
  // whole, each read would be one turn and one write.
  const reads = 30;
  const ping = frame(OP.ping, new Uint8Array(2)); // 8 bytes: fills reads
  const { readable } = immediateReads(reads, (view) => {
    const count = Math.floor(view.length / ping.length);
    for (let i = 0; i < count; i++) view.set(ping, i * ping.length);
    return count * ping.length;
  });
  let writes = 0;
  const socket = socketOver(
    readable,
    new WritableStream({ write: () => void writes++ }),
  );
  await socket.run();
  assert.ok(writes > 2 * reads, `${writes} pong writes for ${reads} reads`);
});
