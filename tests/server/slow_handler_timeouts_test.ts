import assert from "node:assert/strict";
import { connect, serve, type Socket } from "../../mod.ts";
import type { Ticker } from "../../src/ticker.ts";
import type { SocketOptions } from "../../src/socket_options.ts";
import {
  concat,
  DEADLINE,
  delay,
  frame,
  LOCAL,
  NpmClient,
  OP,
  socketOver,
  withTimeout,
  wsUrl,
} from "./_helpers.ts";

// idleTimeout and messageTimeout judge the peer, not the handler: a handler
// slow to take what the peer sent (in time) must not make the connection
// look idle, or the peer's message look late.

/**
 * A ticker the test drives: `tick(now)` runs one check at `now`. It is too
 * coarse for close timeouts (`period`), which keep to their timers.
 */
function manualTicker(): { ticker: Ticker; tick: (now: number) => void } {
  let callback: ((now: number) => void) | null = null;
  let clock = 0;
  return {
    ticker: {
      period: Infinity,
      add(tick: (now: number) => void) {
        callback = tick;
        return () => callback = null;
      },
      now: () => clock,
    } as unknown as Ticker,
    tick: (now) => callback?.(clock = now),
  };
}

/**
 * A socket over a transport whose input the test hands out: each `give()`
 * answers the socket's pending read (or the next one) with up to a read's
 * worth of `bytes`; `end()` ends the input.
 */
function scriptedSocket(bytes: Uint8Array, options: Partial<SocketOptions>) {
  let at = 0;
  let allowed = 0;
  let ended = false;
  let controller!: ReadableByteStreamController;
  const answer = () => {
    const request = controller.byobRequest;
    if (request === null) return;
    if (ended) {
      controller.close();
      request.respond(0);
    } else if (allowed > 0 && at < bytes.length) {
      allowed--;
      const view = request.view as Uint8Array;
      const length = Math.min(view.length, bytes.length - at);
      view.set(bytes.subarray(at, at + length));
      at += length;
      request.respond(length);
    }
  };
  const readable = new ReadableStream({
    type: "bytes",
    start: (c) => {
      controller = c;
    },
    pull: answer,
  });
  const end = () => {
    if (ended) return;
    ended = true;
    answer();
  };
  const socket = socketOver(readable, undefined, options, end);
  const running = socket.run();
  return {
    socket,
    give(reads = 1) {
      allowed += reads;
      answer();
    },
    /** Ends the input and waits for the socket to finish. */
    async end() {
      end();
      socket.terminate();
      await withTimeout(running, DEADLINE, "run()");
    },
  };
}

Deno.test("idleTimeout: the handler taking a message counts as traffic, long after the message was read off the wire", async () => {
  const { ticker, tick } = manualTicker();
  const input = concat(frame(OP.text, "one"), frame(OP.text, "two"));
  const peer = scriptedSocket(input, { idleTimeout: 100, ticker });
  try {
    const messages = peer.socket[Symbol.asyncIterator]();
    const first = messages.next();
    peer.give(Infinity);
    assert.equal((await first).value, "one");
    await delay(0);
    tick(1_000); // both were read: traffic
    tick(1_050);
    // The wire has been quiet since; the handler takes "two" only now.
    assert.equal((await messages.next()).value, "two");
    tick(1_150);
    assert.equal(peer.socket.state, "open", "taking 'two' was traffic");
    tick(1_300);
    assert.equal(peer.socket.state, "closing", "idle once nothing moved");
  } finally {
    await peer.end();
  }
});

Deno.test("idleTimeout: messages a handler never takes (it only pushes) do not keep an idle peer connected", async () => {
  const { ticker, tick } = manualTicker();
  const input = concat(frame(OP.text, "one"), frame(OP.text, "two"));
  const peer = scriptedSocket(input, { idleTimeout: 100, ticker });
  try {
    peer.give(Infinity);
    await delay(0);
    tick(1_000); // read: traffic
    tick(1_050);
    assert.equal(peer.socket.state, "open");
    tick(1_150);
    assert.equal(peer.socket.state, "closing", "idle though two wait");
  } finally {
    await peer.end();
  }
});

Deno.test("idleTimeout: a message counts as it arrives, though the handler never takes it: a peer that sends more often than the timeout is not idle", async () => {
  const { ticker, tick } = manualTicker();
  // Frames of 1024 bytes: the first read takes one (and fills the buffer,
  // which doubles), the second two, the third the last.
  const message = () => frame(OP.text, "a".repeat(1016));
  const input = concat(message(), message(), message(), message());
  const peer = scriptedSocket(input, { idleTimeout: 100, ticker });
  try {
    for (const at of [1_000, 1_080, 1_160]) {
      peer.give();
      await delay(0);
      tick(at);
      assert.equal(peer.socket.state, "open", `a message arrived at ${at}`);
    }
    tick(1_240);
    assert.equal(peer.socket.state, "open");
    tick(1_300);
    assert.equal(peer.socket.state, "closing", "none since 1160");
  } finally {
    await peer.end();
  }
});

Deno.test("idleTimeout: a streamed message the handler reads slowly, a piece at a time, keeps the connection from idling", async () => {
  const { ticker, tick } = manualTicker();
  const size = 64 * 1024;
  const peer = scriptedSocket(frame(OP.binary, new Uint8Array(size)), {
    idleTimeout: 100,
    ticker,
    streamMessages: true,
    receiveHighWaterMark: 1024,
  });
  try {
    const streams = peer.socket.streams()[Symbol.asyncIterator]();
    const taking = streams.next();
    // The peer sent it all: every read the socket makes is answered.
    peer.give(Infinity);
    const reader = (await taking).value!.readable.getReader();
    let received = 0;
    let now = 1_000;
    while (true) {
      // The handler takes a piece now and then: between two pieces, more
      // than idleTimeout passes (the socket has read what it may, and
      // waits for the handler).
      tick(now += 200);
      assert.equal(peer.socket.state, "open", `after ${received} bytes`);
      const { done, value } = await reader.read();
      if (done) break;
      received += value.length;
    }
    assert.equal(received, size);
    tick(now += 200);
    tick(now += 200);
    assert.equal(peer.socket.state, "closing", "idle once all was read");
  } finally {
    await peer.end();
  }
});

Deno.test("messageTimeout runs from the read that began the message, not from the first tick that saw it arriving (a tick late at most, not two)", async () => {
  const { ticker, tick } = manualTicker();
  const peer = scriptedSocket(frame(OP.binary, new Uint8Array(64 * 1024)), {
    messageTimeout: 100,
    ticker,
  });
  try {
    tick(1_000);
    peer.give(); // the message's first bytes, read at 1000
    await delay(1);
    tick(1_090);
    await delay(1);
    assert.equal(peer.socket.state, "open", "90 ms into it");
    tick(1_100);
    const info = await withTimeout(peer.socket.closed, DEADLINE, "closed");
    assert.equal(info.error?.code, "MESSAGE_TIMEOUT");
  } finally {
    await peer.end();
  }
});

Deno.test("messageTimeout: a slow handler cannot make a message the peer sent in time fail, though each tick finds reading resumed for a moment", async () => {
  const { ticker, tick } = manualTicker();
  const size = 4 * 1024 * 1024;
  const peer = scriptedSocket(frame(OP.binary, new Uint8Array(size)), {
    messageTimeout: 100,
    ticker,
    streamMessages: true,
    receiveHighWaterMark: 1024,
  });
  try {
    const streams = peer.socket.streams()[Symbol.asyncIterator]();
    const taking = streams.next();
    peer.give();
    const reader = (await taking).value!.readable.getReader();
    let received = 0;
    let now = 1_000;
    for (let step = 0; step < 8; step++) {
      // The handler takes a piece: reading resumes, and the tick comes
      // before the read it started completes.
      received += (await reader.read()).value!.length;
      tick(now += 60);
      await delay(1); // the verdict's turn
      assert.equal(peer.socket.state, "open", `after ${received} bytes`);
      // The peer's next bytes were there all along: the read completes,
      // and fills the queue again (reading pauses).
      peer.give();
      await delay(1);
    }
    // Now the peer stops sending: that is a message arriving too slowly.
    received += (await reader.read()).value!.length;
    assert.ok(received < size);
    for (let i = 0; i < 4; i++) tick(now += 60);
    const info = await withTimeout(peer.socket.closed, DEADLINE, "closed");
    assert.equal(info.code, 1008);
    assert.equal(info.error?.code, "MESSAGE_TIMEOUT");
  } finally {
    await peer.end();
  }
});

Deno.test("serve({idleTimeout}): a streamed upload read slowly is answered, and the connection idles out only after", async () => {
  const replied = Promise.withResolvers<void>();
  let closedAfterReply: boolean | undefined;
  await using server = serve(
    {
      ...LOCAL,
      idleTimeout: 150,
      streamMessages: true,
      receiveHighWaterMark: 128 * 1024,
      maxPayload: 4 * 1024 * 1024,
    },
    async (socket: Socket) => {
      for await (const { readable } of socket.streams()) {
        let size = 0;
        for await (const piece of readable as ReadableStream<Uint8Array>) {
          size += piece.length;
          await delay(60); // slow, but faster than idleTimeout
        }
        await socket.send(`ok ${size}`);
        replied.resolve();
      }
      await socket.closed;
      closedAfterReply = true;
    },
  );
  await using client = await NpmClient.connect(wsUrl(server.addr));
  client.ws.send(new Uint8Array(2 * 1024 * 1024));
  assert.equal(
    await withTimeout(client.next(), 4 * DEADLINE, "the reply"),
    `ok ${2 * 1024 * 1024}`,
  );
  await replied.promise;
  assert.deepEqual(await withTimeout(client.closed, DEADLINE, "idle close"), {
    code: 1001,
    reason: "idle timeout",
  });
  await server.shutdown();
  assert.equal(closedAfterReply, true);
});

Deno.test("connect({idleTimeout}): a streamed download read slowly is not idleness; the reply after it reaches the server", async () => {
  const size = 2 * 1024 * 1024;
  const reply = Promise.withResolvers<unknown>();
  await using server = serve(LOCAL, async (socket: Socket) => {
    await socket.send(new Uint8Array(size));
    for await (const message of socket) reply.resolve(message);
  });
  const socket = await connect(wsUrl(server.addr), {
    idleTimeout: 150,
    streamMessages: true,
    receiveHighWaterMark: 128 * 1024,
    maxPayload: 4 * 1024 * 1024,
  });
  try {
    for await (const { readable } of socket.streams()) {
      let received = 0;
      for await (const piece of readable as ReadableStream<Uint8Array>) {
        received += piece.length;
        await delay(60); // slow, but faster than idleTimeout
      }
      await socket.send(`ok ${received}`);
      break;
    }
    assert.equal(
      await withTimeout(reply.promise, DEADLINE, "the reply"),
      `ok ${size}`,
    );
    const info = await withTimeout(socket.closed, DEADLINE, "idle close");
    assert.equal(info.code, 1001);
    assert.equal(info.reason, "idle timeout");
  } finally {
    socket.terminate();
  }
});
