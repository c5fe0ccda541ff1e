import assert from "node:assert/strict";
import { serve, type Socket } from "../../mod.ts";
import {
  closePayload,
  concat,
  DEADLINE,
  delay,
  echo,
  frame,
  LOCAL,
  NpmClient,
  OP,
  rawHandshake,
  type RawPeer,
  SocketTracker,
  withTimeout,
  wsUrl,
} from "./_helpers.ts";

/**
 * Writes `bytes` to the peer one at a time, one every `every` ms, until
 * stopped or done; write failures (the server closed) end it quietly.
 */
function trickle(peer: RawPeer, bytes: Uint8Array, every: number) {
  let at = 0;
  const timer = setInterval(() => {
    if (at >= bytes.length) return clearInterval(timer);
    peer.write(bytes.subarray(at, at + 1)).catch(() => clearInterval(timer));
    at++;
  }, every);
  return { stop: () => clearInterval(timer), sent: () => at };
}

/** Reads every message until the socket closes. */
const drain = async (socket: Socket) => {
  for await (const _ of socket);
};

const EXPECTED_CLOSE = {
  code: 1008,
  reason: "No whole message within messageTimeout (300 ms)",
  wasClean: false,
};

for (
  const [what, whole] of [
    ["a data frame", frame(OP.binary, new Uint8Array(1000))],
    ["a control frame", frame(OP.ping, new Uint8Array(125))],
  ] as const
) {
  Deno.test(
    `serve({messageTimeout}) fails ${what} trickled in a byte at a time with 1008 MESSAGE_TIMEOUT, though the bytes count as traffic for keepalive`,
    async () => {
      const tracker = new SocketTracker();
      await using server = serve(
        // Traffic every 40 ms: no keepalive ping is ever due.
        { ...LOCAL, messageTimeout: 300, pingInterval: 200 },
        tracker.wrap(drain),
      );
      using peer = await rawHandshake(server.addr);
      const writer = trickle(peer, whole, 40);
      try {
        const close = await peer.readClose();
        assert.deepEqual(close.before, [], "no ping, no pong, no other frame");
        assert.equal(close.code, 1008);
        assert.equal(close.reason, "MESSAGE_TIMEOUT");
        assert.ok(writer.sent() < whole.length, "the frame was still arriving");
        const info = await tracker.closed(peer.port);
        assert.deepEqual(
          { code: info.code, reason: info.reason, wasClean: info.wasClean },
          EXPECTED_CLOSE,
        );
        assert.equal(info.error?.code, "MESSAGE_TIMEOUT");
        // The server lets the transport go (after a short linger).
        await peer.readToEof();
      } finally {
        writer.stop();
      }
    },
  );
}

Deno.test(
  "serve({messageTimeout}) fails a fragmented message that never ends, though its fragments and the pings between them arrive whole",
  async () => {
    const tracker = new SocketTracker();
    await using server = serve(
      { ...LOCAL, messageTimeout: 300, pingInterval: 0 },
      tracker.wrap(drain),
    );
    using peer = await rawHandshake(server.addr);
    await peer.write(frame(OP.text, "first ", { fin: false }));
    const pings = setInterval(
      () => peer.write(frame(OP.ping, "still here")).catch(() => {}),
      40,
    );
    try {
      // The pongs never stop: without a close frame, the deadline ends it.
      const close = await withTimeout(peer.readClose(), DEADLINE, "1008");
      assert.ok(close.before.length > 0, "pongs came back meanwhile");
      assert.ok(close.before.every((f) => f.opcode === OP.pong));
      assert.equal(close.code, 1008);
      assert.equal(close.reason, "MESSAGE_TIMEOUT");
      const info = await tracker.closed(peer.port);
      assert.equal(info.code, 1008);
    } finally {
      clearInterval(pings);
    }
  },
);

/** Echoes each message, read as a stream when the socket streams them. */
const echoStreams = async (socket: Socket) => {
  for await (const message of socket.streams()) {
    let text = "";
    for await (const piece of message.readable) text += piece;
    await socket.send(text);
  }
};

for (const streamMessages of [false, true]) {
  Deno.test(
    `serve({messageTimeout, streamMessages: ${streamMessages}}) lets a peer trickle many messages as long as each arrives whole in time`,
    async () => {
      const tracker = new SocketTracker();
      await using server = serve(
        { ...LOCAL, messageTimeout: 300, pingInterval: 0, streamMessages },
        tracker.wrap(streamMessages ? echoStreams : echo),
      );
      using peer = await rawHandshake(server.addr);
      // 16 messages of 12 bytes in 18-byte frames, a byte every 8 ms: each
      // takes about 150 ms, all of them over 2 s, and a frame is almost
      // always half arrived when the server looks.
      const messages = Array.from(
        { length: 16 },
        (_, i) => `message ${i}`.padEnd(12),
      );
      const bytes = new Uint8Array(16 * 18);
      messages.forEach((text, i) => bytes.set(frame(OP.text, text), i * 18));
      const writer = trickle(peer, bytes, 8);
      try {
        for (const text of messages) {
          const echoed = await peer.readFrame();
          assert.equal(echoed.opcode, OP.text, "an echo, not a close frame");
          assert.equal(new TextDecoder().decode(echoed.payload), text);
        }
        const socket = await tracker.socket(peer.port);
        assert.equal(socket.state, "open");
      } finally {
        writer.stop();
      }
    },
  );
}

Deno.test(
  "serve({messageTimeout, streamMessages}) does not count the time a message waits while the handler is slow to read it",
  async () => {
    const handlerRead = Promise.withResolvers<number>();
    await using server = serve(
      {
        ...LOCAL,
        messageTimeout: 200,
        pingInterval: 0,
        streamMessages: true,
        receiveHighWaterMark: 16 * 1024,
      },
      async (socket) => {
        for await (const message of socket.streams()) {
          // Reading stops at 16 KiB while the 1 MiB message is arriving;
          // a handler this slow is not the peer's doing.
          await delay(700);
          let size = 0;
          for await (const piece of message.readable) size += piece.length;
          handlerRead.resolve(size);
          await socket.send(String(size));
        }
      },
    );
    await using client = await NpmClient.connect(wsUrl(server.addr));
    client.send(new Uint8Array(1024 * 1024));
    assert.equal(await client.next(), String(1024 * 1024));
    assert.equal(
      await withTimeout(handlerRead.promise, DEADLINE, "the handler"),
      1024 * 1024,
    );
    assert.equal(client.ws.readyState, 1, "still open");
  },
);

Deno.test(
  "serve({messageTimeout}) reads what arrived while the event loop was busy before it judges a message late",
  async () => {
    await using server = serve(
      { ...LOCAL, messageTimeout: 300, pingInterval: 0 },
      echo,
    );
    using peer = await rawHandshake(server.addr);
    const whole = frame(OP.text, "hello, a small message");
    await peer.write(whole.subarray(0, 10));
    await delay(100); // a tick (every 75 ms) sees the frame arriving
    // The rest is in the kernel while the event loop is busy for longer
    // than messageTimeout: the server, not the peer, was late.
    await peer.write(whole.subarray(10));
    const end = performance.now() + 500;
    while (performance.now() < end);
    const reply = await peer.readFrame();
    assert.equal(reply.opcode, OP.text, "the echo, not a close frame");
    assert.equal(
      new TextDecoder().decode(reply.payload),
      "hello, a small message",
    );
  },
);

Deno.test(
  "serve({messageTimeout, idleTimeout}) due together, the idle close first (on the same tick at the latest): it goes out and its handshake completes, the message still arriving no longer judged",
  async () => {
    const tracker = new SocketTracker();
    // The message clock starts at the read, the idle clock at the next tick
    // (50 ms at most): with 200 against 300, the idle close is due first or
    // on the same tick, where it is checked first.
    await using server = serve(
      { ...LOCAL, messageTimeout: 300, idleTimeout: 200, pingInterval: 0 },
      tracker.wrap(drain),
    );
    using peer = await rawHandshake(server.addr);
    // A whole message, then one byte of the next: both clocks start now.
    await peer.write(
      concat(frame(OP.text, "hi"), frame(OP.text, "never").subarray(0, 1)),
    );
    const close = await peer.readClose();
    assert.equal(close.code, 1001);
    assert.equal(close.reason, "idle timeout");
    // The server waits for the answer, which comes late, after the rest of
    // the frame: the late message is not the server's to judge any more.
    await delay(500);
    await peer.write(frame(OP.text, "never").subarray(1));
    await peer.write(frame(OP.close, closePayload(1001)));
    assert.deepEqual(await tracker.closed(peer.port), {
      code: 1001,
      reason: "",
      wasClean: true,
    });
  },
);
