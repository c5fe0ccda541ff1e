// The socket's read size follows the traffic: it grows when a read fills the
// buffer and shrinks only after a run of small reads, so traffic that
// alternates big and small reads does not reallocate on every read.
import assert from "node:assert/strict";
import { Socket } from "../../src/socket.ts";

const KiB = 1024;

/**
 * Runs a server socket over a byte stream that answers each BYOB read with a
 * full buffer or a single byte, following `script`, then ends; returns the
 * size of every buffer the socket offered.
 */
async function offeredReadSizes(script: ("full" | "one")[]): Promise<number[]> {
  const offered: number[] = [];
  let first = true;
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
      if (first) {
        // One masked binary frame, 64 MiB long: every later byte is payload.
        view.set([0x82, 0xff, 0, 0, 0, 0, 0x04, 0, 0, 0, 1, 2, 3, 4]);
        first = false;
      }
      request.respond(next === "full" ? view.byteLength : 1);
    },
  });
  const socket = new Socket({
    readable,
    writable: new WritableStream(),
    close() {},
  }, {
    url: new URL("ws://localhost/"),
    headers: new Headers(),
    remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 },
    protocol: "",
  }, {
    role: "server",
    maxPayload: 128 * 1024 * KiB,
    closeTimeout: 1000,
    sendHighWaterMark: 16 * KiB,
    receiveHighWaterMark: 1024 * KiB,
    maxQueuedMessages: 16,
    maxBackpressure: 1024 * KiB,
    backpressurePolicy: "wait",
    pingInterval: 0,
    pongTimeout: 0,
    idleTimeout: 0,
  }, undefined);
  await socket.run();
  return offered;
}

Deno.test("the read buffer doubles on full reads up to 256 KiB, holds through alternating reads, then shrinks after four small ones", async () => {
  const growing = Array<"full">(9).fill("full");
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
    offered.slice(0, 9),
    [1, 2, 4, 8, 16, 32, 64, 128, 256].map((n) => n * KiB),
  );
  // Alternating big and small reads keep the same buffer size.
  assert.deepEqual(offered.slice(9, 33), Array(24).fill(256 * KiB));
  // Four small reads in a row: down to an eighth.
  assert.deepEqual(offered.slice(33), [32 * KiB]);
});
