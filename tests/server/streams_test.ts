import assert from "node:assert/strict";
import {
  type CloseInfo,
  type Message,
  prepareMessage,
  serve,
  type Socket,
} from "../../mod.ts";
import {
  assertBytes,
  DEADLINE,
  DenoClient,
  LOCAL,
  NpmClient,
  pattern,
  type Received,
  SocketTracker,
  waitUntil,
  withTimeout,
  wsUrl,
} from "./_helpers.ts";

Deno.test(
  "Socket.readable delivers the messages in order and ends when the connection closes",
  async () => {
    const done = Promise.withResolvers<Message[]>();
    await using server = serve(LOCAL, async (socket) => {
      done.resolve(await Array.fromAsync(socket.readable));
    });
    await using client = await NpmClient.connect(wsUrl(server.addr));
    const sent: Received[] = ["one", pattern(3, 1), "three", pattern(70_000)];
    for (const message of sent) client.send(message);
    await client.close(1000);
    const received = await withTimeout(done.promise, DEADLINE, "the stream");
    assert.equal(received.length, sent.length);
    received.forEach((message, i) => {
      if (typeof sent[i] === "string") assert.equal(message, sent[i]);
      else assertBytes(message, sent[i] as Uint8Array);
    });
  },
);

Deno.test(
  "Socket.readable canceled closes the socket with 1000",
  async () => {
    const first = Promise.withResolvers<Message>();
    await using server = serve(LOCAL, async (socket) => {
      const reader = socket.readable.getReader();
      const { value } = await reader.read();
      first.resolve(value!);
      await reader.cancel();
      await socket.closed;
    });
    await using client = await NpmClient.connect(wsUrl(server.addr));
    client.send("only");
    assert.equal(await withTimeout(first.promise, DEADLINE, "a read"), "only");
    assert.equal(
      (await withTimeout(client.closed, DEADLINE, "the close")).code,
      1000,
    );
  },
);

Deno.test(
  "Socket.writable sends each chunk as one message; closing it closes the socket with 1000",
  async () => {
    const closed = Promise.withResolvers<CloseInfo>();
    await using server = serve(LOCAL, async (socket) => {
      const writer = socket.writable.getWriter();
      await writer.write("text");
      await writer.write(pattern(5, 2));
      await writer.write(pattern(200_000, 3).buffer);
      await writer.write("");
      await writer.close();
      closed.resolve(await socket.closed);
    });
    await using client = await NpmClient.connect(wsUrl(server.addr));
    assert.equal(await client.next(), "text");
    assertBytes(await client.next(), pattern(5, 2));
    assertBytes(await client.next(), pattern(200_000, 3));
    assert.equal(await client.next(), "");
    const seen = await withTimeout(client.closed, DEADLINE, "the close");
    assert.equal(seen.code, 1000);
    const info = await withTimeout(closed.promise, DEADLINE, "socket.closed");
    assert.equal(info.code, 1000);
    assert.equal(info.wasClean, true);
  },
);

Deno.test(
  "Socket.writable as a pipeTo() target: a ReadableStream's chunks arrive as messages, then 1000",
  async () => {
    const chunks = Array.from({ length: 50 }, (_, i) => `chunk ${i}`);
    await using server = serve(LOCAL, async (socket) => {
      await ReadableStream.from(chunks).pipeTo(socket.writable);
    });
    await using client = await DenoClient.connect(wsUrl(server.addr));
    for (const chunk of chunks) assert.equal(await client.next(), chunk);
    const seen = await withTimeout(client.closed, DEADLINE, "the close");
    assert.equal(seen.code, 1000);
    assert.equal(seen.wasClean, true);
  },
);

Deno.test(
  "Socket.readable.pipeTo(socket.writable) echoes until the client closes",
  async () => {
    const tracker = new SocketTracker();
    await using server = serve(
      LOCAL,
      tracker.wrap((socket) => socket.readable.pipeTo(socket.writable)),
    );
    await using client = await NpmClient.connect(wsUrl(server.addr));
    for (let i = 0; i < 10; i++) {
      assert.equal(await client.roundTrip(`echo ${i}`), `echo ${i}`);
    }
    assertBytes(await client.roundTrip(pattern(1000)), pattern(1000));
    assert.equal((await client.close(4000)).code, 4000);
    assert.equal((await tracker.closed(client.port)).code, 4000);
  },
);

Deno.test("Socket.writable aborted closes the socket with 1011", async () => {
  await using server = serve(LOCAL, async (socket) => {
    const writer = socket.writable.getWriter();
    await writer.write("before");
    await writer.abort(new Error("gave up"));
    await socket.closed;
  });
  await using client = await NpmClient.connect(wsUrl(server.addr));
  assert.equal(await client.next(), "before");
  const seen = await withTimeout(client.closed, DEADLINE, "the close");
  assert.deepEqual(seen, { code: 1011, reason: "" });
});

Deno.test(
  "Socket.send(prepareMessage()) delivers the same message to several sockets",
  async () => {
    const sockets: Socket[] = [];
    await using server = serve(LOCAL, async (socket) => {
      sockets.push(socket);
      await socket.closed;
    });
    const clients = await Promise.all([
      NpmClient.connect(wsUrl(server.addr)),
      NpmClient.connect(wsUrl(server.addr)),
      DenoClient.connect(wsUrl(server.addr)),
    ]);
    try {
      await waitUntil(() => sockets.length === 3, "three sockets");
      const bytes = pattern(70_000, 9);
      const text = prepareMessage("x");
      const binary = prepareMessage(bytes);
      bytes.fill(0); // prepareMessage copied it.
      for (const socket of sockets) await socket.send(text);
      for (const socket of sockets) {
        assert.equal(socket.trySend(binary), "sent");
      }
      for (const client of clients) {
        assert.equal(await client.next(), "x");
        assertBytes(await client.next(), pattern(70_000, 9));
      }
      // Written once, still whole for the next round.
      for (const socket of sockets) await socket.send(binary);
      for (const client of clients) {
        assertBytes(await client.next(), pattern(70_000, 9));
      }
      assert.deepEqual(text.frame, new Uint8Array([0x81, 0x01, 0x78]));
    } finally {
      for (const client of clients) await client[Symbol.asyncDispose]();
    }
  },
);
