/**
 * The client's flow-control options: sendHighWaterMark, maxBackpressure
 * with backpressurePolicy, receiveHighWaterMark and maxQueuedMessages, each
 * against real sockets, set so that the defaults would behave otherwise.
 */
import assert from "node:assert/strict";
import {
  type CloseInfo,
  connect,
  ConnectionClosedError,
  type ConnectOptions,
  type Message,
  serve,
  type Socket,
} from "../../mod.ts";
import {
  closePayload,
  deadline,
  frame,
  type RawPeer,
  rawServer,
} from "./_helpers.ts";
import {
  CHUNK,
  delay,
  KIB,
  MAX_CHUNKS,
  numbered,
  seqOf,
  settlesWithin,
} from "../server/_helpers.ts";

/**
 * A raw server that answers the handshake, reads nothing until `read()` is
 * called, then reads the client's binary frames until its close frame,
 * answers it and ends. `seqs` holds the numbers of the binary frames read.
 */
function lazyServer() {
  const go = Promise.withResolvers<void>();
  const seqs: number[] = [];
  let closeCode = 0;
  const server = rawServer(async (peer: RawPeer) => {
    await peer.accept();
    await go.promise;
    for (;;) {
      const { opcode, payload } = await peer.readFrame();
      if (opcode === 0x2) seqs.push(seqOf(payload));
      if (opcode === 0x8) {
        closeCode = (payload[0] << 8) | payload[1];
        break;
      }
    }
    // Answered, then closed by rawServer: the client waits for that.
    await peer.write(frame(0x8, closePayload(closeCode)));
  });
  return {
    url: server.url,
    seqs,
    errors: server.errors,
    read: () => go.resolve(),
    async close() {
      go.resolve();
      await server.close();
    },
  };
}

Deno.test("connect({sendHighWaterMark}) makes trySend() report backpressure above it, and send() wait there while the server does not read", async () => {
  const server = lazyServer();
  try {
    const socket = await connect(server.url, { sendHighWaterMark: CHUNK });
    // One synchronous run: nothing is written in between. With the default
    // (1 MiB) this message would be "sent".
    assert.equal(socket.trySend(numbered(0, 2 * CHUNK)), "backpressure");
    let sent = 1;
    let pending: Promise<void> | undefined;
    while (pending === undefined && sent < MAX_CHUNKS) {
      const sending = socket.send(numbered(sent++));
      if (!await settlesWithin(sending, 150)) pending = sending;
    }
    assert.ok(pending !== undefined, "send() never waited");
    // send() waits just above the mark (1 MiB by default), with the
    // kernel's buffers full.
    const held = socket.bufferedAmount;
    assert.ok(held > CHUNK && held < 1024 * KIB, `${held} bytes held`);
    server.read();
    await deadline(pending, 5_000, "the waiting send()");
    const info = await deadline(socket.close(), 5_000, "the close");
    assert.equal(info.wasClean, true);
    assert.deepEqual(
      server.seqs,
      Array.from({ length: sent }, (_, i) => i),
      "every message arrived, in order",
    );
  } finally {
    await server.close();
  }
  assert.deepEqual(server.errors, []);
});

for (
  const [policy, options] of [
    ["close", { backpressurePolicy: "close" }],
    ["close (the default once maxBackpressure is set)", {}],
  ] as const
) {
  Deno.test(`connect({maxBackpressure, backpressurePolicy: ${policy}}) closes with 1008 when the server stops reading`, async () => {
    const server = lazyServer();
    try {
      const socket = await connect(server.url, {
        sendHighWaterMark: CHUNK,
        maxBackpressure: 4 * CHUNK,
        ...options,
      });
      const statuses = new Set<string>();
      let last = "";
      for (let seq = 0; seq < MAX_CHUNKS && last !== "dropped"; seq++) {
        last = socket.trySend(numbered(seq));
        statuses.add(last);
        await delay(0);
      }
      assert.equal(last, "dropped");
      assert.ok(statuses.has("backpressure"));
      const info = await deadline(socket.closed, 5_000, "the 1008 close");
      assert.deepEqual(
        { code: info.code, reason: info.reason, wasClean: info.wasClean },
        { code: 1008, reason: "backpressure limit exceeded", wasClean: false },
      );
      assert.equal(socket.trySend("late"), "closed");
      await assert.rejects(socket.send("late"), ConnectionClosedError);
    } finally {
      await server.close();
    }
  });
}

Deno.test('connect({maxBackpressure, backpressurePolicy: "drop"}) drops what does not fit, stays open, and delivers the rest in order', async () => {
  const server = lazyServer();
  try {
    const socket = await connect(server.url, {
      sendHighWaterMark: CHUNK,
      maxBackpressure: 4 * CHUNK,
      backpressurePolicy: "drop",
    });
    const accepted: number[] = [];
    let drops = 0;
    for (let seq = 0; seq < MAX_CHUNKS && drops < 5; seq++) {
      if (socket.trySend(numbered(seq)) === "dropped") drops++;
      else accepted.push(seq);
      await delay(0);
    }
    assert.equal(drops, 5);
    // A dropped message's send() resolves: nothing to wait for.
    await deadline(socket.send(numbered(MAX_CHUNKS)), 1_000, "send()");
    assert.equal(socket.state, "open", "dropping does not close");
    server.read();
    const info = await deadline(socket.close(), 5_000, "the close");
    assert.equal(info.wasClean, true);
    assert.deepEqual(server.seqs, accepted);
  } finally {
    await server.close();
  }
  assert.deepEqual(server.errors, []);
});

/**
 * A server that sends `count` numbered messages of `size` bytes at once and
 * records how its socket closed.
 */
function floodingServer(count: number, size: number) {
  const closed = Promise.withResolvers<CloseInfo>();
  const server = serve(
    { hostname: "127.0.0.1", port: 0, pingInterval: 0 },
    async (socket) => {
      for (let seq = 0; seq < count; seq++) socket.trySend(numbered(seq, size));
      closed.resolve(await socket.closed);
    },
  );
  return { server, closed: closed.promise };
}

for (
  const { name, options, size } of [
    {
      name: "receiveHighWaterMark",
      options: { receiveHighWaterMark: 4 * KIB },
      size: KIB,
    },
    { name: "maxQueuedMessages", options: { maxQueuedMessages: 8 }, size: 16 },
  ] as const
) {
  Deno.test(`connect({${name}}) stops reading at it while the loop takes nothing: a full queue left untaken for closeTimeout closes with 1008 'messages not read'`, async () => {
    // 40 messages: far below the defaults (1 MiB, 1024 messages), which
    // would hold them all and wait.
    const count = 40;
    const { server, closed } = floodingServer(count, size);
    await using _ = server;
    const socket: Socket = await connect(
      `ws://127.0.0.1:${server.addr.port}/`,
      { closeTimeout: 300, ...options } satisfies ConnectOptions,
    );
    const seen = await deadline(closed, 5_000, "the server's close");
    assert.deepEqual(seen, {
      code: 1008,
      reason: "messages not read",
      wasClean: true,
    });
    // Nothing was lost meanwhile: a late loop still takes the messages, in
    // order.
    const taken: Message[] = [];
    for await (const message of socket) taken.push(message);
    assert.ok(taken.length > 0, "the queued messages are delivered");
    taken.forEach((message, i) => {
      assert.ok(message instanceof Uint8Array);
      assert.equal(message.length, size);
      assert.equal(seqOf(message), i);
    });
    assert.equal((await socket.closed).code, 1008);
  });
}
