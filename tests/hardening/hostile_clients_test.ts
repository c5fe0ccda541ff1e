/**
 * Hostile clients on real sockets. Each test runs one kind of abuse against
 * a server on 127.0.0.1 while a well-behaved npm:ws client is connected,
 * and checks three things: what the server did to the abuser (status, close
 * code and reason on the wire and in `socket.closed`), that the server's own
 * state stayed bounded (`bufferedAmount`, `stats()`, `connections`, no
 * message delivered), and that the good client was served before, during
 * and after.
 *
 * Timeouts are short here (hundreds of milliseconds) so that the tests are
 * quick; no assertion depends on how long anything took.
 *
 * @module
 */
import assert from "node:assert/strict";
import net from "node:net";
import zlib from "node:zlib";
import {
  serve,
  type ServeOptions,
  type Server,
  type Socket,
} from "../../mod.ts";
import {
  concat,
  DEADLINE,
  echo,
  encodeRequest,
  frame,
  LOCAL,
  NpmClient,
  OP,
  rawHandshake,
  RawPeer,
  SocketTracker,
  upgradeHeaders,
  withTimeout,
  wsUrl,
} from "../server/_helpers.ts";

const utf8 = new TextEncoder();

/** Resolves after `ms` milliseconds (pacing, never an assertion). */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` every 10 ms until it holds, or fails after DEADLINE. */
async function waitFor(condition: () => boolean, what: string) {
  const deadline = performance.now() + DEADLINE;
  while (!condition()) {
    if (performance.now() > deadline) {
      throw new Error(`Timed out after ${DEADLINE} ms waiting for ${what}`);
    }
    await sleep(10);
  }
}

/** A masked frame header declaring any 64-bit length, and no payload. */
function header64(b0: number, length: bigint): Uint8Array {
  const bytes = new Uint8Array(14);
  bytes[0] = b0;
  bytes[1] = 0x80 | 127;
  new DataView(bytes.buffer).setBigUint64(2, length);
  bytes.set([0x37, 0xfa, 0x21, 0x3d], 10);
  return bytes;
}

/** A server, an echo handler that records its sockets, and a good client. */
async function setUp(options: Partial<ServeOptions> = {}) {
  const tracker = new SocketTracker();
  const server = serve({ ...LOCAL, ...options }, tracker.wrap(echo));
  try {
    const good = await NpmClient.connect(wsUrl(server.addr));
    assert.equal(await good.roundTrip("before"), "before");
    return {
      server,
      tracker,
      good,
      async [Symbol.asyncDispose]() {
        await good[Symbol.asyncDispose]();
        await server.shutdown();
      },
    };
  } catch (error) {
    await server.shutdown();
    throw error;
  }
}

/** The good client still gets its echoes, text and binary. */
async function assertGoodServed(good: NpmClient, label: string) {
  assert.equal(await good.roundTrip(`text ${label}`), `text ${label}`);
  const bytes = utf8.encode(`binary ${label}`);
  assert.deepEqual(await good.roundTrip(bytes), bytes);
  assert.equal(good.error, null, "the good client saw no error");
}

// ---------------------------------------------------------------------------
// Slowloris
// ---------------------------------------------------------------------------

Deno.test("serve() disconnects slowloris handshakes (a byte at a time) at handshakeTimeout, silently, and keeps serving", async () => {
  await using env = await setUp({ handshakeTimeout: 300 });
  const { server, good } = env;
  // A valid head padded long enough that trickling it all would take
  // minutes: only the deadline can end it.
  const head = encodeRequest("GET / HTTP/1.1", [
    ...upgradeHeaders(server.addr),
    ["X-Padding", "p".repeat(2000)],
  ]);
  const peers = await Promise.all(
    Array.from({ length: 20 }, () => RawPeer.connect(server.addr)),
  );
  try {
    const outcomes = peers.map(async (peer) => {
      const stop = { done: false };
      const trickling = (async () => {
        let sent = 0;
        while (sent < head.length && !stop.done) {
          try {
            await peer.conn.write(head.subarray(sent, sent + 1));
          } catch {
            break; // The server closed the connection.
          }
          sent++;
          await sleep(20);
        }
        return sent;
      })();
      const received = await peer.readToEof().finally(() => stop.done = true);
      return { received, sent: await trickling };
    });
    // A newcomer is served while twenty peers trickle.
    {
      await using other = await NpmClient.connect(wsUrl(server.addr));
      assert.equal(await other.roundTrip("during"), "during");
    }
    await assertGoodServed(good, "during");
    for (const { received, sent } of await Promise.all(outcomes)) {
      assert.equal(received.length, 0, "no response: the server just hangs up");
      assert.ok(sent < head.length, "cut off before the head was complete");
    }
  } finally {
    for (const peer of peers) peer.close();
  }
  // Nothing was upgraded, rejected or leaked on their account.
  assert.equal(server.connections, 1);
  const stats = server.stats();
  assert.equal(stats.totalConnections, 2);
  assert.deepEqual(stats.handshakeRejections, {});
  await assertGoodServed(good, "after");
});

Deno.test("serve() closes a peer stalled inside a frame with 1001 'idle timeout' (idleTimeout)", async () => {
  await using env = await setUp({ idleTimeout: 1000, closeTimeout: 300 });
  const { server, tracker, good } = env;
  // The good client keeps talking (so that it is not idle itself) until
  // the end of the test.
  const stop = { done: false };
  let echoes = 0;
  const heartbeat = (async () => {
    while (!stop.done) {
      assert.equal(await good.roundTrip(`beat ${echoes}`), `beat ${echoes}`);
      echoes++;
      await sleep(50);
    }
  })();
  try {
    using peer = await rawHandshake(server.addr);
    // A header declaring 100 bytes, ten of them, then nothing.
    await peer.write(frame(OP.binary, new Uint8Array(100)).subarray(0, 16));
    const wire = await peer.readClose();
    assert.deepEqual(wire, { code: 1001, reason: "idle timeout", before: [] });
    // The peer cannot answer from inside its frame: after closeTimeout the
    // server drops the connection, and reports a close without handshake.
    await peer.readToEof();
    assert.deepEqual(await tracker.closed(peer.port), {
      code: 1006,
      reason: "",
      wasClean: false,
    });
    await waitFor(() => server.connections === 1, "the stalled socket to go");
    assert.deepEqual(server.stats().closeCodes, { 1006: 1 });
  } finally {
    stop.done = true;
    await heartbeat;
  }
  assert.ok(echoes > 0);
  await assertGoodServed(good, "after");
});

Deno.test("serve() closes a peer stalled inside a frame with 1011 'keepalive pong timeout' (pingInterval + pongTimeout)", async () => {
  await using env = await setUp({ pingInterval: 100, pongTimeout: 500 });
  const { server, tracker, good } = env;
  using peer = await rawHandshake(server.addr);
  // Half a frame header: the peer can never send a pong from here.
  await peer.write(frame(OP.text, "never finished").subarray(0, 4));
  const ping = await peer.readFrame();
  assert.equal(ping.opcode, OP.ping, "the keepalive ping");
  // Given up on: the transport closes without a closing handshake (the close
  // frame is best effort and does not reach a peer given up on).
  const rest = await peer.readToEof();
  assert.ok(rest.length === 0 || rest[0] === 0x88, "nothing but a close");
  assert.deepEqual(await tracker.closed(peer.port), {
    code: 1011,
    reason: "keepalive pong timeout",
    wasClean: false,
  });
  // The good client answered its pings (npm:ws does) and is still here.
  await waitFor(() => server.stats().pingRtt.count > 0, "a measured ping");
  assert.equal(server.stats().closeCodes[1011], 1);
  assert.equal(server.connections, 1);
  await assertGoodServed(good, "after");
});

Deno.test("serve() closes a half-open peer (silent after the handshake) with 1011 'keepalive pong timeout'", async () => {
  await using env = await setUp({ pingInterval: 100, pongTimeout: 500 });
  const { server, tracker, good } = env;
  // Connected, then neither reads nor writes: what a vanished host looks like.
  using peer = await rawHandshake(server.addr);
  const info = await tracker.closed(peer.port);
  assert.deepEqual(info, {
    code: 1011,
    reason: "keepalive pong timeout",
    wasClean: false,
  });
  // Whatever the server wrote (pings) stayed small.
  const rest = await peer.readToEof();
  assert.ok(rest.length < 64, `${rest.length} bytes for a silent peer`);
  assert.equal(server.connections, 1);
  await assertGoodServed(good, "after");
});

// ---------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------

function fragmented(count: number): Uint8Array {
  const frames = [frame(OP.text, "a", { fin: false })];
  for (let i = 1; i < count - 1; i++) {
    frames.push(frame(OP.continuation, "a", { fin: false }));
  }
  frames.push(frame(OP.continuation, "a"));
  return concat(...frames);
}

Deno.test("serve() accepts a message in exactly maxFragments 1-byte frames and fails one more with 1009 TOO_MANY_FRAGMENTS", async () => {
  await using env = await setUp(); // the default maxFragments, 4096
  const { server, tracker, good } = env;
  {
    using peer = await rawHandshake(server.addr);
    await peer.write(fragmented(4096));
    const echoed = await peer.readFrame();
    assert.equal(echoed.opcode, OP.text);
    assert.equal(echoed.payload.length, 4096);
    await peer.write(frame(OP.close, new Uint8Array([0x03, 0xe8])));
    assert.equal((await peer.readClose()).code, 1000);
  }
  const before = server.stats().messagesReceived;
  using peer = await rawHandshake(server.addr);
  // Thousands of 1-byte frames in a few writes: 4097 frames, 28 KB.
  const flood = fragmented(4097);
  for (let at = 0; at < flood.length; at += 8192) {
    await peer.write(flood.subarray(at, at + 8192));
  }
  assert.deepEqual(await peer.readClose(), {
    code: 1009,
    reason: "TOO_MANY_FRAGMENTS",
    before: [],
  });
  await peer.readToEof();
  const info = await tracker.closed(peer.port);
  assert.equal(info.code, 1009);
  assert.equal(info.error?.code, "TOO_MANY_FRAGMENTS");
  // No message was delivered for it: nothing queued for the handler.
  assert.equal(server.stats().messagesReceived, before);
  await assertGoodServed(good, "after");
});

Deno.test("serve() fails a frame declaring 2^63-1 bytes with 1009 before any payload, and 2^63 with 1002", async () => {
  await using env = await setUp();
  const { server, tracker, good } = env;
  for (
    const [length, closeCode, errorCode] of [
      [2n ** 63n - 1n, 1009, "MESSAGE_TOO_BIG"],
      [2n ** 63n, 1002, "INVALID_LENGTH"],
    ] as const
  ) {
    using peer = await rawHandshake(server.addr);
    const bytesBefore = server.stats().bytesReceived;
    // Only the 14-byte header: no payload byte is ever sent.
    await peer.write(header64(0x82, length));
    assert.deepEqual(await peer.readClose(), {
      code: closeCode,
      reason: errorCode,
      before: [],
    });
    await peer.readToEof();
    const info = await tracker.closed(peer.port);
    assert.equal(info.code, closeCode);
    assert.equal(info.error?.code, errorCode);
    // The server read the header and nothing else (the good client is idle).
    assert.equal(server.stats().bytesReceived - bytesBefore, 14);
  }
  await assertGoodServed(good, "after");
});

Deno.test("serve() coalesces the pongs of a ping flood: output stays far below input, the last ping answered", async () => {
  await using env = await setUp();
  const { server, good } = env;
  using peer = await rawHandshake(server.addr);
  const pings = 10_000;
  const flood = concat(
    ...Array.from({ length: pings }, (_, i) => {
      const payload = new Uint8Array(4);
      new DataView(payload.buffer).setUint32(0, i);
      return frame(OP.ping, payload);
    }),
  );
  // Four writes of 25 KB, then a close: its echo follows the last pong.
  const quarter = Math.ceil(flood.length / 4);
  for (let at = 0; at < flood.length; at += quarter) {
    await peer.write(flood.subarray(at, at + quarter));
  }
  await peer.write(frame(OP.close, new Uint8Array([0x03, 0xe8])));
  const { code, before } = await peer.readClose();
  assert.equal(code, 1000);
  assert.ok(before.every((f) => f.opcode === OP.pong), "only pongs");
  assert.ok(before.length >= 1, "at least one pong");
  assert.ok(
    before.length <= pings / 10,
    `${before.length} pongs for ${pings} pings: not coalesced`,
  );
  const last = before.at(-1)!.payload;
  assert.equal(new DataView(last.buffer).getUint32(0), pings - 1);
  // What the server wrote is bounded by the pongs, not by the pings.
  const written = before.reduce((n, f) => n + 2 + f.payload.length, 0);
  assert.ok(written * 10 < flood.length);
  await peer.readToEof();
  await waitFor(() => server.connections === 1, "the flooder to go");
  await assertGoodServed(good, "after");
});

// ---------------------------------------------------------------------------
// A peer that never reads
// ---------------------------------------------------------------------------

const MAX_BACKPRESSURE = 256 * 1024;
const MESSAGE_SIZE = 32 * 1024;

/**
 * Publishes numbered messages to a topic shared by the good client and a
 * peer that never reads, one at a time, each once the good client has it,
 * until `enough()` or 64 MiB. Returns the largest `bufferedAmount` seen on
 * the slow peer's socket.
 */
async function publishUntil(
  server: Server,
  good: NpmClient,
  slow: Socket,
  enough: (published: number) => boolean,
  from = 0,
): Promise<{ published: number; largest: number }> {
  let largest = 0;
  let published = from;
  while (!enough(published) && published < from + 2048) {
    const message = new Uint8Array(MESSAGE_SIZE);
    new DataView(message.buffer).setUint32(0, published);
    server.publish("feed", message);
    const got = await good.next(`message ${published} on the good client`);
    assert.ok(got instanceof Uint8Array);
    assert.equal(new DataView(got.buffer).getUint32(0), published, "in order");
    published++;
    largest = Math.max(largest, slow.bufferedAmount);
  }
  return { published, largest };
}

async function feedSetUp(policy: "close" | "drop") {
  const tracker = new SocketTracker();
  const server = serve(
    {
      ...LOCAL,
      backpressurePolicy: policy,
      maxBackpressure: MAX_BACKPRESSURE,
      sendHighWaterMark: 64 * 1024,
    },
    tracker.wrap(async (socket) => {
      socket.subscribe("feed");
      await echo(socket);
    }),
  );
  const good = await NpmClient.connect(wsUrl(server.addr));
  const slow = await rawHandshake(server.addr);
  await tracker.socket(good.port);
  const slowSocket = await tracker.socket(slow.port);
  await waitFor(() => server.subscriberCount("feed") === 2, "2 subscribers");
  return {
    server,
    tracker,
    good,
    slow,
    slowSocket,
    async [Symbol.asyncDispose]() {
      slow.close();
      await good[Symbol.asyncDispose]();
      await server.shutdown();
    },
  };
}

Deno.test("serve() with backpressurePolicy 'close' closes a peer that never reads with 1008 'backpressure limit exceeded'; the other subscriber gets everything", async () => {
  await using env = await feedSetUp("close");
  const { server, tracker, good, slow, slowSocket } = env;
  const { published, largest } = await publishUntil(
    server,
    good,
    slowSocket,
    () => slowSocket.state !== "open",
  );
  assert.notEqual(slowSocket.state, "open", `still open after ${published}`);
  assert.ok(
    largest <= MAX_BACKPRESSURE + MESSAGE_SIZE + 14,
    `${largest} bytes queued for a peer that never reads`,
  );
  assert.deepEqual(await tracker.closed(slow.port), {
    code: 1008,
    reason: "backpressure limit exceeded",
    wasClean: false,
  });
  const stats = server.stats();
  assert.equal(stats.closeCodes[1008], 1);
  assert.equal(stats.backpressureDrops, 1, "the message that tripped it");
  assert.equal(server.subscriberCount("feed"), 1);
  // The survivor keeps getting the feed.
  const after = await publishUntil(
    server,
    good,
    slowSocket,
    (n) => n >= published + 10,
    published,
  );
  assert.equal(after.published, published + 10);
  await assertGoodServed(good, "after");
});

Deno.test("serve() with backpressurePolicy 'drop' drops for a peer that never reads, counts the drops, and keeps the other subscriber whole", async () => {
  await using env = await feedSetUp("drop");
  const { server, good, slowSocket } = env;
  const { published, largest } = await publishUntil(
    server,
    good,
    slowSocket,
    () => server.stats().backpressureDrops >= 50,
  );
  const drops = server.stats().backpressureDrops;
  assert.ok(drops >= 50, `${drops} drops`);
  assert.equal(slowSocket.state, "open", "dropping keeps the socket");
  assert.ok(
    largest <= MAX_BACKPRESSURE + MESSAGE_SIZE + 14,
    `${largest} bytes queued for a peer that never reads`,
  );
  // Drops go on growing while memory does not.
  const more = await publishUntil(
    server,
    good,
    slowSocket,
    () => server.stats().backpressureDrops >= drops + 20,
    published,
  );
  assert.ok(more.largest <= MAX_BACKPRESSURE + MESSAGE_SIZE + 14);
  assert.equal(server.connections, 2);
  await assertGoodServed(good, "after");
});

// ---------------------------------------------------------------------------
// Compression
// ---------------------------------------------------------------------------

/** A permessage-deflate payload (RFC 7692 §7.2.1): sync flush, tail cut. */
function compress(data: Uint8Array): Uint8Array {
  const out = zlib.deflateRawSync(data, {
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
    level: 9,
  });
  return new Uint8Array(out.buffer, out.byteOffset, out.length - 4);
}

Deno.test("serve({perMessageDeflate}) fails decompression bombs with 1009, inflating no more than maxPayload, and keeps serving a compressing client", async () => {
  const tracker = new SocketTracker();
  await using server = serve(
    { ...LOCAL, perMessageDeflate: true, maxPayload: 1024 * 1024 },
    tracker.wrap(echo),
  );
  await using good = await NpmClient.connect(wsUrl(server.addr), {
    perMessageDeflate: true,
  });
  assert.match(good.ws.extensions, /permessage-deflate/, "negotiated");
  const big = "compressible ".repeat(50_000); // 650 KB
  assert.equal(await good.roundTrip(big), big);
  // 64 MiB of zeros in 64 KB: 1000 times maxPayload per byte received.
  const bomb = compress(new Uint8Array(64 * 1024 * 1024));
  assert.ok(bomb.length < 128 * 1024, `${bomb.length} bytes`);
  const rssBefore = Deno.memoryUsage().rss;
  for (let i = 0; i < 10; i++) {
    using peer = await RawPeer.connect(server.addr);
    await peer.write(encodeRequest("GET / HTTP/1.1", [
      ...upgradeHeaders(server.addr),
      ["Sec-WebSocket-Extensions", "permessage-deflate"],
    ]));
    const response = await peer.readResponse();
    assert.equal(response.status, 101, response.statusLine);
    assert.match(
      response.headers.get("sec-websocket-extensions") ?? "",
      /^permessage-deflate/,
    );
    await peer.write(frame(OP.binary, bomb, { rsv: 0x40 }));
    assert.deepEqual(await peer.readClose(), {
      code: 1009,
      reason: "MESSAGE_TOO_BIG",
      before: [],
    });
    await peer.readToEof();
    const info = await tracker.closed(peer.port);
    assert.equal(info.error?.code, "MESSAGE_TOO_BIG");
  }
  // Ten bombs would be 640 MiB inflated; inflation stops at maxPayload.
  const grown = Deno.memoryUsage().rss - rssBefore;
  assert.ok(grown < 128 * 1024 * 1024, `RSS grew ${grown} bytes`);
  assert.equal(server.stats().closeCodes[1009], 10);
  assert.equal(server.stats().messagesReceived, 1, "only the good message");
  await assertGoodServed(good, "after");
});

// ---------------------------------------------------------------------------
// Request heads
// ---------------------------------------------------------------------------

Deno.test("serve() answers header floods with 431, by field count and by head size (defaults)", async () => {
  await using env = await setUp();
  const { server, good } = env;
  const start = `GET / HTTP/1.1\r\nHost: 127.0.0.1:${server.addr.port}\r\n`;
  const floods = {
    // 3000 fields in 15 KB: under maxHeadSize, over maxHeaders (100).
    "3000 tiny fields": start + "a:b\r\n".repeat(3000) + "\r\n",
    // 5000 fields in 110 KB: over maxHeadSize (16 KiB) long before the end.
    "5000 fields": start +
      Array.from({ length: 5000 }, (_, i) => `X-Flood-${i}: v\r\n`).join("") +
      "\r\n",
  };
  for (const [label, head] of Object.entries(floods)) {
    using peer = await RawPeer.connect(server.addr);
    // The server may answer and stop reading before all of it is written.
    await peer.write(head).catch(() => {});
    const response = await peer.readResponse();
    assert.equal(response.status, 431, `${label}: ${response.statusLine}`);
    await peer.readToEof();
  }
  assert.deepEqual(server.stats().handshakeRejections, { 431: 2 });
  await assertGoodServed(good, "after");
});

Deno.test("serve() answers a head that never ends with 431 at maxHeadSize, then hangs up on a peer that keeps sending", async () => {
  await using env = await setUp();
  const { server, good } = env;
  using peer = await RawPeer.connect(server.addr);
  await peer.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: `);
  const chunk = utf8.encode("a".repeat(1024));
  // Exactly up to the default limit (16 KiB): the answer comes then.
  for (let sent = 0; sent < 16 * 1024; sent += chunk.length) {
    await peer.write(chunk);
  }
  const response = await peer.readResponse();
  assert.equal(response.status, 431, response.statusLine);
  // Keep streaming: the server discards a bounded amount, then closes.
  let streamed = 0;
  try {
    while (streamed < 64 * 1024 * 1024) {
      await peer.conn.write(new Uint8Array(64 * 1024));
      streamed += 64 * 1024;
    }
  } catch {
    // Broken pipe or reset: the server hung up.
  }
  assert.ok(streamed < 64 * 1024 * 1024, "the server never hung up");
  assert.deepEqual(server.stats().handshakeRejections, { 431: 1 });
  await assertGoodServed(good, "after");
});

// ---------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------

Deno.test("serve() answers connections beyond maxConnections with 503 and serves a newcomer once others leave", async () => {
  const tracker = new SocketTracker();
  await using server = serve(
    { ...LOCAL, maxConnections: 8 },
    tracker.wrap(echo),
  );
  const holders: RawPeer[] = [];
  try {
    for (let i = 0; i < 8; i++) holders.push(await rawHandshake(server.addr));
    assert.equal(server.connections, 8);
    // A flood of 40 more at once: every one gets 503.
    const statuses = await Promise.all(
      Array.from({ length: 40 }, async () => {
        using peer = await RawPeer.connect(server.addr);
        await peer.write(
          encodeRequest("GET / HTTP/1.1", upgradeHeaders(server.addr)),
        ).catch(() => {});
        const { status } = await peer.readResponse();
        await peer.readToEof();
        return status;
      }),
    );
    assert.deepEqual(statuses, Array(40).fill(503));
    // A well-behaved client is turned away too while the server is full.
    await assert.rejects(
      NpmClient.connect(wsUrl(server.addr)),
      /Unexpected server response: 503/,
    );
    // One holder leaves: the newcomer gets in, once the server has let go
    // of the leaver (and of the turned-away connections, which count until
    // they close).
    holders.shift()!.close();
    await waitFor(() => server.connections === 7, "a holder to leave");
    let good: NpmClient | undefined;
    for (let attempt = 0; good === undefined; attempt++) {
      try {
        good = await NpmClient.connect(wsUrl(server.addr));
      } catch (error) {
        assert.match(String(error), /503/);
        assert.ok(attempt < 50, "never let in");
        await sleep(20);
      }
    }
    await using _good = good;
    await assertGoodServed(good, "after");
    assert.equal(server.connections, 8);
    const stats = server.stats();
    assert.ok(stats.handshakeRejections[503] >= 41);
    assert.equal(stats.totalConnections, 9, "rejected ones never counted");
  } finally {
    for (const holder of holders) holder.close();
  }
});

/** A node:net socket, for the one thing Deno.Conn cannot do: send a RST. */
async function nodeConnect(addr: Deno.NetAddr): Promise<net.Socket> {
  const socket = net.connect(addr.port, "127.0.0.1");
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    }),
    DEADLINE,
    "node:net connect",
  );
  return socket;
}

async function resetAndWait(socket: net.Socket): Promise<void> {
  const closed = new Promise((resolve) => socket.once("close", resolve));
  socket.resetAndDestroy();
  await withTimeout(closed, DEADLINE, "the reset socket to close");
}

Deno.test("serve() survives resets (TCP RST) mid-handshake and mid-message: 1006 for the open ones, nothing leaked", async () => {
  await using env = await setUp();
  const { server, tracker, good } = env;
  const head = encodeRequest("GET / HTTP/1.1", upgradeHeaders(server.addr));
  // Mid-handshake: half a head, then a reset.
  await Promise.all(Array.from({ length: 20 }, async () => {
    const socket = await nodeConnect(server.addr);
    socket.write(head.subarray(0, head.length >> 1));
    await resetAndWait(socket);
  }));
  await assertGoodServed(good, "after handshake resets");
  // Mid-message: a full handshake, the 101 read, half a frame, a reset.
  const ports = await Promise.all(Array.from({ length: 20 }, async () => {
    const socket = await nodeConnect(server.addr);
    const port = socket.localPort!;
    const upgraded = new Promise<void>((resolve) =>
      socket.once("data", () => resolve())
    );
    socket.write(head);
    await withTimeout(upgraded, DEADLINE, "the 101");
    socket.write(frame(OP.binary, new Uint8Array(1000)).subarray(0, 500));
    await tracker.socket(port);
    await resetAndWait(socket);
    return port;
  }));
  for (const port of ports) {
    assert.deepEqual(await tracker.closed(port), {
      code: 1006,
      reason: "",
      wasClean: false,
    });
  }
  await waitFor(() => server.connections === 1, "the reset sockets to go");
  const stats = server.stats();
  assert.equal(stats.closeCodes[1006], 20);
  assert.equal(stats.totalConnections, 21);
  assert.deepEqual(stats.handshakeRejections, {});
  await assertGoodServed(good, "after message resets");
});

Deno.test("serve({fetch}) serves a client pipelining thousands of requests a turn at a time: another connection's message is echoed after a few of them, not after thousands", async () => {
  await using server = serve({
    ...LOCAL,
    fetch: () => new Response("ok"),
  }, echo);
  await using other = await NpmClient.connect(wsUrl(server.addr));
  const flood = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  try {
    const count = 20_000;
    const requests = new TextEncoder().encode(
      "GET / HTTP/1.1\r\nHost: a\r\n\r\n".repeat(count),
    );
    // Responses are counted as they arrive.
    let answered = 0;
    const reading = (async () => {
      const buffer = new Uint8Array(64 * 1024);
      const decoder = new TextDecoder();
      let carry = "";
      while (answered < count) {
        const n = await flood.read(buffer);
        if (n === null) break;
        const parts = (carry + decoder.decode(buffer.subarray(0, n)))
          .split("HTTP/1.1 200");
        answered += parts.length - 1;
        carry = parts[parts.length - 1].slice(-11);
      }
    })();
    reading.catch(() => {}); // cut by close()
    const writing = (async () => {
      for (let at = 0; at < requests.length;) {
        at += await flood.write(requests.subarray(at));
      }
    })();
    writing.catch(() => {}); // cut by close()
    while (answered < 100) await new Promise((r) => setTimeout(r, 1));
    // Bytes of the whole flood are on the server's side: served one at a
    // time, they take seconds; each waits for the next turn of the event
    // loop, in which the other connection is read too. Without the turns,
    // other connections waited a few hundred milliseconds, as long as
    // thousands of requests took.
    const before = answered;
    assert.equal(
      await withTimeout(other.roundTrip("still here"), DEADLINE, "the echo"),
      "still here",
    );
    assert.ok(
      answered - before < 1000,
      `${answered - before} requests were served before the echo`,
    );
    flood.close();
    await Promise.allSettled([reading, writing]);
  } catch (error) {
    try {
      flood.close();
    } catch { /* closed */ }
    throw error;
  }
});

Deno.test("serve({fetch}) begins no pipelined request once shutdown() has begun", async () => {
  let shuttingDown = false;
  let begunAfter = 0;
  let answered = 0;
  const server = serve({
    ...LOCAL,
    fetch: () => {
      if (shuttingDown) begunAfter++;
      answered++;
      return new Response("ok");
    },
  }, echo);
  const flood = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  try {
    const requests = new TextEncoder().encode(
      "GET / HTTP/1.1\r\nHost: a\r\n\r\n".repeat(3000),
    );
    const writing = (async () => {
      for (let at = 0; at < requests.length;) {
        at += await flood.write(requests.subarray(at));
      }
    })();
    writing.catch(() => {}); // cut by shutdown
    const draining = flood.readable.pipeTo(new WritableStream());
    draining.catch(() => {});
    while (answered < 100) await new Promise((r) => setTimeout(r, 1));
    shuttingDown = true;
    await withTimeout(server.shutdown(), DEADLINE, "the shutdown");
    assert.equal(begunAfter, 0);
    await Promise.allSettled([writing, draining]);
  } finally {
    try {
      flood.close();
    } catch { /* closed by the drain */ }
    await server.shutdown();
  }
});
