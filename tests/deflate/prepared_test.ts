import assert from "node:assert/strict";
import {
  deflateMessage,
  OPCODE,
  type PerMessageDeflateOptions,
  type PerMessageDeflateParams,
  type PreparedMessage,
  prepareMessage,
  serve,
  type Socket,
} from "../../mod.ts";
import { serverFrame, utf8 } from "../protocol/_helpers.ts";
import {
  assertBytes,
  closePayload,
  DenoClient,
  frame as rawFrame,
  LOCAL,
  NpmClient,
  OP,
  type RawPeer,
  type Received,
  waitUntil,
  wsUrl,
} from "../server/_helpers.ts";
import {
  ClientInflater,
  messageOf,
  negotiated,
  randomBytes,
  rawDeflateClient,
  repetitiveBytes,
  RSV1,
  wordText,
} from "./_helpers.ts";

const BIG_TEXT = wordText(300_000, 21);
const BIG_BINARY = repetitiveBytes(200_000, 22);

/**
 * Wraps `prepared.compressedFrame` to record every call and every distinct
 * frame it returned.
 */
function spy(prepared: PreparedMessage) {
  const original = prepared.compressedFrame.bind(prepared);
  const calls: PerMessageDeflateParams[] = [];
  const frames = new Set<Uint8Array>();
  prepared.compressedFrame = (params) => {
    calls.push(params as PerMessageDeflateParams);
    const frame = original(params);
    frames.add(frame);
    return frame;
  };
  return { calls, frames };
}

/** A server whose sockets wait for `go` and are kept in connection order. */
function gatheringServer(
  perMessageDeflate: boolean | PerMessageDeflateOptions,
) {
  const sockets: Socket[] = [];
  const server = serve({ ...LOCAL, perMessageDeflate }, async (socket) => {
    sockets.push(socket);
    socket.subscribe("news");
    for await (const _ of socket) {
      // Held open until the client closes.
    }
  });
  return { server, sockets };
}

/** Reads one message frame, answering nothing else in between. */
async function readMessage(peer: RawPeer) {
  const frame = await peer.readFrame();
  assert.ok(frame.opcode === OP.text || frame.opcode === OP.binary);
  return frame;
}

async function closeRaw(peer: RawPeer): Promise<void> {
  await peer.write(rawFrame(OP.close, closePayload(1000)));
  assert.equal((await peer.readClose()).code, 1000);
}

function assertReceived(reply: Received, message: string | Uint8Array): void {
  if (typeof message === "string") assert.ok(reply === message);
  else assertBytes(reply, message);
}

// ---------------------------------------------------------------------------
// The cache itself
// ---------------------------------------------------------------------------

Deno.test("PreparedMessage.compressedFrame compresses once per setting and returns the same Uint8Array", () => {
  const prepared = prepareMessage(BIG_TEXT);
  const params = negotiated();
  const frame = prepared.compressedFrame(params);
  assert.equal(prepared.compressedFrame(params), frame);
  // Equal settings from another negotiation share it.
  assert.equal(prepared.compressedFrame({ ...negotiated() }), frame);
  // The threshold and context flags do not change the bytes: same entry.
  assert.equal(
    prepared.compressedFrame(negotiated({ threshold: 0 })),
    frame,
  );
  // A different window, level or memory level is a different frame.
  const others = [
    negotiated({ serverMaxWindowBits: 10 }),
    negotiated({ level: 1 }),
    negotiated({ memLevel: 9 }),
  ].map((p) => prepared.compressedFrame(p));
  for (const other of others) assert.notEqual(other, frame);
  assert.equal(new Set(others).size, 3);
  // The frame: FIN + RSV1 + text, the stateless compression of the text.
  assertBytes(
    frame,
    serverFrame(OPCODE.Text, deflateMessage(utf8(BIG_TEXT), params), {
      rsv: RSV1,
    }),
  );
  // The uncompressed frame is untouched.
  assertBytes(prepared.frame, serverFrame(OPCODE.Text, BIG_TEXT));
});

Deno.test("PreparedMessage.compressedFrame frames binary with opcode 2 and inflates back", () => {
  const prepared = prepareMessage(BIG_BINARY);
  const frame = prepared.compressedFrame(negotiated());
  assert.equal(frame[0], 0x80 | RSV1 | OPCODE.Binary);
  const payload = deflateMessage(BIG_BINARY, negotiated());
  assertBytes(frame.subarray(frame.length - payload.length), payload);
  assertBytes(new ClientInflater(false).inflate(payload), BIG_BINARY);
});

// ---------------------------------------------------------------------------
// Sockets without context takeover share the compressed frame
// ---------------------------------------------------------------------------

Deno.test("Socket.send(prepared) to several deflate sockets with one setting compresses once and sends the same bytes to each", async () => {
  const { server, sockets } = gatheringServer(true);
  await using _server = server;
  const raws = await Promise.all(
    [1, 2, 3].map(() => rawDeflateClient(server.addr)),
  );
  const npm = await Promise.all(
    [1, 2].map(() =>
      NpmClient.connect(wsUrl(server.addr), { perMessageDeflate: true })
    ),
  );
  try {
    await waitUntil(() => sockets.length === 5, "five sockets");
    for (const message of [BIG_TEXT, BIG_BINARY]) {
      const prepared = prepareMessage(message);
      const { calls, frames } = spy(prepared);
      for (const socket of sockets) await socket.send(prepared);
      assert.equal(calls.length, 5);
      assert.equal(frames.size, 1, "one compressed frame for all");
      const [frame] = frames;
      // The raw clients got exactly that frame's bytes.
      for (const { peer } of raws) {
        const got = await readMessage(peer);
        assert.equal(got.rsv, RSV1);
        assertBytes(
          serverFrame(got.opcode, got.payload, { rsv: got.rsv }),
          frame,
        );
        assertBytes(
          messageOf(got, new ClientInflater(false)),
          typeof message === "string" ? utf8(message) : message,
        );
      }
      for (const client of npm) assertReceived(await client.next(), message);
    }
  } finally {
    for (const { peer } of raws) {
      await closeRaw(peer);
      peer.close();
    }
    for (const client of npm) await client.close(1000);
  }
});

Deno.test("server.publish(prepared) reaches deflate and plain subscribers alike, compressed once for the deflate ones", async () => {
  const { server, sockets } = gatheringServer(true);
  await using _server = server;
  await using deflate1 = await NpmClient.connect(wsUrl(server.addr), {
    perMessageDeflate: true,
  });
  await using deflate2 = await NpmClient.connect(wsUrl(server.addr), {
    perMessageDeflate: true,
  });
  await using plain = await NpmClient.connect(wsUrl(server.addr));
  await using deno = await DenoClient.connect(wsUrl(server.addr));
  await waitUntil(() => sockets.length === 4, "four sockets");
  assert.deepEqual(
    sockets.map((s) => s.perMessageDeflate !== undefined).sort(),
    [false, false, true, true],
  );
  const prepared = prepareMessage(BIG_TEXT);
  const { calls, frames } = spy(prepared);
  assert.equal(server.publish("news", prepared), 4);
  assert.equal(calls.length, 2, "only the deflate sockets ask for it");
  assert.equal(frames.size, 1);
  for (const client of [deflate1, deflate2, plain, deno]) {
    assertReceived(await client.next(), BIG_TEXT);
  }
  // Below the threshold, nobody compresses it.
  const small = prepareMessage("tiny");
  const smallSpy = spy(small);
  assert.equal(server.publish("news", small), 4);
  assert.equal(smallSpy.calls.length, 0);
  for (const client of [deflate1, deflate2, plain, deno]) {
    assert.equal(await client.next(), "tiny");
  }
  // A plain string is prepared (and compressed) by publish itself.
  assert.equal(server.publish("news", BIG_BINARY), 4);
  for (const client of [deflate1, deflate2, plain, deno]) {
    assertReceived(await client.next(), BIG_BINARY);
  }
});

Deno.test("Socket.send(prepared, { compress: false }) sends the uncompressed frame to a deflate socket", async () => {
  const { server, sockets } = gatheringServer(true);
  await using _server = server;
  const { peer } = await rawDeflateClient(server.addr);
  using _peer = peer;
  await waitUntil(() => sockets.length === 1, "the socket");
  const prepared = prepareMessage(BIG_TEXT);
  const { calls } = spy(prepared);
  await sockets[0].send(prepared, { compress: false });
  const got = await readMessage(peer);
  assert.equal(got.rsv, 0);
  assertBytes(serverFrame(got.opcode, got.payload), prepared.frame);
  assert.equal(calls.length, 0);
  await closeRaw(peer);
});

Deno.test("Socket.send(prepared) on servers with different levels uses one compressed frame per level", async () => {
  const fast = gatheringServer({ level: 1 });
  const best = gatheringServer({ level: 9 });
  await using _fast = fast.server;
  await using _best = best.server;
  const peers = await Promise.all([
    rawDeflateClient(fast.server.addr),
    rawDeflateClient(fast.server.addr),
    rawDeflateClient(best.server.addr),
    rawDeflateClient(best.server.addr),
  ]);
  try {
    await waitUntil(
      () => fast.sockets.length === 2 && best.sockets.length === 2,
      "four sockets",
    );
    const prepared = prepareMessage(BIG_TEXT);
    const { calls, frames } = spy(prepared);
    for (const socket of [...fast.sockets, ...best.sockets]) {
      await socket.send(prepared);
    }
    assert.equal(calls.length, 4);
    assert.equal(frames.size, 2);
    const received = [];
    for (const { peer } of peers) {
      const got = await readMessage(peer);
      received.push(serverFrame(got.opcode, got.payload, { rsv: got.rsv }));
      assert.equal(
        new TextDecoder().decode(messageOf(got, new ClientInflater(false))),
        BIG_TEXT,
      );
    }
    assertBytes(received[0], received[1]);
    assertBytes(received[2], received[3]);
    assert.notDeepEqual(received[0], received[2]);
  } finally {
    for (const { peer } of peers) {
      await closeRaw(peer);
      peer.close();
    }
  }
});

// ---------------------------------------------------------------------------
// Sockets with context takeover compress each for itself
// ---------------------------------------------------------------------------

Deno.test("Socket.send(prepared) with context takeover compresses per socket, in each socket's own window", async () => {
  const { server, sockets } = gatheringServer({
    serverNoContextTakeover: false,
  });
  await using _server = server;
  const raws = await Promise.all(
    [1, 2].map(() => rawDeflateClient(server.addr)),
  );
  await using npm = await NpmClient.connect(wsUrl(server.addr), {
    perMessageDeflate: true,
  });
  try {
    await waitUntil(() => sockets.length === 3, "three sockets");
    // Hex of random bytes: compresses only to about half on its own, and
    // fits in one 32 KiB window, so a second copy can refer to the first.
    const text = Array.from(
      randomBytes(8_000, 23),
      (b) => b.toString(16).padStart(2, "0"),
    ).join("");
    const prepared = prepareMessage(text);
    const { calls } = spy(prepared);
    const [first, second] = raws;
    // The first raw client's socket gets it twice, the others once.
    const twice = sockets.find((s) => s.remoteAddr.port === first.peer.port)!;
    await twice.send(prepared);
    for (const socket of sockets) await socket.send(prepared);
    assert.equal(calls.length, 0, "the shared frame is not used");
    const inflater = new ClientInflater(true);
    const a = await readMessage(first.peer);
    const b = await readMessage(first.peer);
    for (const frame of [a, b]) {
      assert.equal(frame.rsv, RSV1);
      assert.equal(new TextDecoder().decode(messageOf(frame, inflater)), text);
    }
    // The second copy refers back to the first: far smaller.
    assert.ok(
      b.payload.length * 10 < a.payload.length,
      `${b.payload.length} vs ${a.payload.length} bytes`,
    );
    // Another socket starts from an empty window: like the first copy.
    const c = await readMessage(second.peer);
    assertBytes(c.payload, a.payload);
    assertReceived(await npm.next(), text);
  } finally {
    for (const { peer } of raws) {
      await closeRaw(peer);
      peer.close();
    }
  }
});

Deno.test("server.publish() with context takeover delivers the right message to every subscriber, in order", async () => {
  const { server, sockets } = gatheringServer({
    serverNoContextTakeover: false,
  });
  await using _server = server;
  const clients = await Promise.all(
    [1, 2, 3, 4].map((i) =>
      NpmClient.connect(wsUrl(server.addr), { perMessageDeflate: i !== 4 })
    ),
  );
  try {
    await waitUntil(() => sockets.length === 4, "four sockets");
    const messages = [BIG_TEXT, "small", BIG_BINARY, wordText(5_000, 3)];
    for (const message of messages) server.publish("news", message);
    for (const client of clients) {
      for (const message of messages) {
        assertReceived(await client.next(), message);
      }
    }
  } finally {
    for (const client of clients) await client[Symbol.asyncDispose]();
  }
});

Deno.test("prepareMessage copies binary data: changing it afterwards changes neither the plain nor the compressed frame", () => {
  const data = utf8("original payload ".repeat(100));
  const prepared = prepareMessage(data);
  const params = { serverMaxWindowBits: 15, level: 6, memLevel: 8 };
  data.fill(0x41);
  assert.notEqual(prepared.message, data);
  assertBytes(
    prepared.frame,
    serverFrame(OPCODE.Binary, utf8("original payload ".repeat(100))),
  );
  const compressed = prepared.compressedFrame(params);
  // The compressed frame is built now, from the bytes as they were.
  const expected = deflateMessage(
    utf8("original payload ".repeat(100)),
    params,
  );
  assert.equal(compressed[0], 0xc2); // FIN, RSV1, binary
  assertBytes(
    compressed.subarray(compressed.length - expected.length),
    expected,
  );
});
