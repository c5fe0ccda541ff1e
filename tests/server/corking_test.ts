// Corking: what handlers send while the messages of one read are handled
// goes out in one write per socket, not one write per message — the trick
// uWS calls its most important. Each socket here runs over in-memory streams
// that record every write.
import assert from "node:assert/strict";
import type { Socket } from "../../src/socket.ts";
import { Topics } from "../../src/pubsub/topics.ts";
import {
  assertBytes,
  concat,
  frame,
  oneReadThenEnd,
  OP,
  socketOver,
  waitUntil,
} from "./_helpers.ts";

interface RecordedSocket {
  socket: Socket;
  /** Every chunk written to the transport, copied. */
  writes: Uint8Array[];
  /** Resolves once `length` bytes have been written. */
  written(length: number): Promise<void>;
  /** Ends the incoming bytes; resolves once the socket has finished. */
  end(): Promise<void>;
}

/**
 * A server socket whose peer sends `incoming` in one read, then nothing
 * until `end()`.
 */
function recordedSocket(
  incoming: Uint8Array | null,
  { topics, writeDone }: {
    topics?: Topics;
    /** Holds a write until the promise it returns resolves. */
    writeDone?: () => Promise<void>;
  } = {},
): RecordedSocket {
  const writes: Uint8Array[] = [];
  const { readable, end } = oneReadThenEnd(incoming);
  const writable = new WritableStream<Uint8Array>({
    async write(chunk) {
      writes.push(chunk.slice());
      await writeDone?.();
    },
  });
  const socket = socketOver(readable, writable, {
    sendHighWaterMark: 1024 * 1024,
    topics,
  });
  const running = socket.run();
  return {
    socket,
    writes,
    written: (length) =>
      waitUntil(
        () => writes.reduce((sum, write) => sum + write.length, 0) >= length,
        `${length} bytes written`,
      ),
    async end() {
      end();
      await running;
    },
  };
}

/** A text frame as the server sends it: unmasked. */
function serverText(text: string): Uint8Array {
  return frame(OP.text, text, { mask: false });
}

Deno.test("corking: messages echoed while one read is handled go out in one write", async () => {
  const peer = recordedSocket(
    concat(frame(OP.text, "one"), frame(OP.text, "two"), frame(OP.text, "3")),
  );
  const handled: string[] = [];
  const handler = (async () => {
    for await (const message of peer.socket) {
      handled.push(message as string);
      await peer.socket.send(message);
    }
  })();
  const echoes = concat(serverText("one"), serverText("two"), serverText("3"));
  await peer.written(echoes.length);
  assert.deepEqual(handled, ["one", "two", "3"]);
  assert.equal(peer.writes.length, 1, "one write for three echoes");
  assertBytes(peer.writes[0], echoes);
  await peer.end();
  await handler;
});

Deno.test("corking: a broadcast of two messages from one read reaches each subscriber in one write", async () => {
  const topics = new Topics(undefined, (error) => {
    throw error;
  });
  const subscribers = [1, 2, 3].map(() => recordedSocket(null, { topics }));
  for (const { socket } of subscribers) socket.subscribe("news");
  const publisher = recordedSocket(
    concat(frame(OP.text, "first"), frame(OP.text, "second")),
    { topics },
  );
  const handler = (async () => {
    for await (const message of publisher.socket) {
      publisher.socket.publish("news", message);
    }
  })();
  const deliveries = concat(serverText("first"), serverText("second"));
  for (const { writes, written } of subscribers) {
    await written(deliveries.length);
    assert.equal(writes.length, 1, "one write for two deliveries");
    assertBytes(writes[0], deliveries);
  }
  assert.equal(publisher.writes.length, 0);
  await publisher.end();
  await handler;
  await Promise.all(subscribers.map((subscriber) => subscriber.end()));
});

Deno.test("corking: what is sent while a write is in flight goes out with the rest of the turn that ends it", async () => {
  let release = () => {};
  const held = new Promise<void>((resolve) => release = resolve);
  let first = true;
  const peer = recordedSocket(null, {
    writeDone: () => first ? (first = false, held) : Promise.resolve(),
  });
  peer.socket.send("a");
  await peer.written(serverText("a").length);
  peer.socket.send("b");
  release();
  // Later in the same turn, after the write of "a" is long done.
  for (let hop = 0; hop < 100; hop++) await Promise.resolve();
  peer.socket.send("c");
  const rest = concat(serverText("b"), serverText("c"));
  await peer.written(serverText("a").length + rest.length);
  assert.equal(peer.writes.length, 2, "b and c in one write");
  assertBytes(peer.writes[1], rest);
  await peer.end();
});
