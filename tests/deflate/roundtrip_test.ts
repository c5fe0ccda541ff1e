import assert from "node:assert/strict";
import fc from "fast-check";
import {
  Connection,
  ContextDeflater,
  deflateMessage,
  OPCODE,
  serve,
  type Socket,
} from "../../mod.ts";
import {
  clientFrame,
  concat,
  cut,
  fixedMaskKey,
  prng,
  utf8,
} from "../protocol/_helpers.ts";
import {
  assertBytes,
  closePayload,
  DEADLINE,
  decode,
  echo,
  frame as rawFrame,
  LOCAL,
  NpmClient,
  OP,
  type RawFrame,
  type RawPeer,
  type Received,
  SocketTracker,
  withTimeout,
  wsUrl,
} from "../server/_helpers.ts";
import {
  clientDeflate,
  ClientInflater,
  deflateConnection,
  deflateOptions,
  messageOf,
  negotiated,
  randomBytes,
  rawDeflateClient,
  repetitiveBytes,
  RSV1,
  wordText,
} from "./_helpers.ts";

const { Text, Binary, Continuation } = OPCODE;
const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

type Kind = "random" | "repetitive" | "text";
interface Content {
  kind: Kind;
  size: number;
  seed: number;
}

/** Sizes from 0 to 1 MiB, most of them small, the edges always possible. */
const size = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom(0, 1, 1023, 1024, 1025, MiB) },
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 2048 }) },
  { weight: 4, arbitrary: fc.integer({ min: 2049, max: 128 * 1024 }) },
  { weight: 1, arbitrary: fc.integer({ min: 128 * 1024, max: MiB }) },
);

const content: fc.Arbitrary<Content> = fc.record({
  kind: fc.constantFrom<Kind>("random", "repetitive", "text"),
  size,
  seed: fc.nat(),
});

/** The message a content stands for: text for "text", bytes otherwise. */
function make({ kind, size, seed }: Content): string | Uint8Array<ArrayBuffer> {
  return kind === "text"
    ? wordText(size, seed)
    : kind === "random"
    ? randomBytes(size, seed)
    : repetitiveBytes(size, seed);
}

function bytesOf(message: string | Uint8Array): Uint8Array {
  return typeof message === "string" ? utf8(message) : message;
}

/** Asserts an event list is exactly one message equal to `message`. */
function assertMessage(
  events: { type: string; data?: unknown }[],
  message: string | Uint8Array,
): void {
  assert.equal(events.length, 1, JSON.stringify(events.map((e) => e.type)));
  const [event] = events;
  if (typeof message === "string") {
    assert.equal(event.type, "text");
    assert.ok(event.data === message, "the text differs");
  } else {
    assert.equal(event.type, "binary");
    assertBytes(event.data, message);
  }
}

// ---------------------------------------------------------------------------
// Properties of the core: client frames in, server frames out
// ---------------------------------------------------------------------------

Deno.test("Connection inflates any message a client compresses, in any fragments and cuts (RFC 7692 §6, §7.2.2)", () => {
  fc.assert(
    fc.property(
      content,
      fc.integer({ min: 9, max: 15 }),
      fc.integer({ min: 0, max: 9 }),
      fc.array(fc.nat(), { maxLength: 4 }),
      fc.nat(),
      (spec, windowBits, level, splits, cutSeed) => {
        const message = make(spec);
        const payload = clientDeflate(bytesOf(message), { windowBits, level });
        // Fragments: RSV1 and the opcode on the first frame only (§6).
        const offsets = [
          ...new Set(splits.map((s) => s % (payload.length + 1))),
        ]
          .sort((a, b) => a - b);
        const bounds = [0, ...offsets, payload.length];
        const frames: Uint8Array[] = [];
        for (let i = 0; i + 1 < bounds.length; i++) {
          const first = i === 0;
          frames.push(
            clientFrame(
              first
                ? (typeof message === "string" ? Text : Binary)
                : Continuation,
              payload.subarray(bounds[i], bounds[i + 1]),
              { fin: i + 2 === bounds.length, rsv: first ? RSV1 : 0 },
            ),
          );
        }
        const connection = deflateConnection();
        const events = [];
        for (
          const piece of cut(concat(...frames), prng(cutSeed), 64 * 1024)
        ) {
          connection.receive(piece);
          events.push(...connection.takeEvents());
        }
        assertMessage(events, message);
        assert.equal(connection.state, "open");
        assert.equal(connection.takeOutput().length, 0);
      },
    ),
    { numRuns: 60 },
  );
});

Deno.test("Connection compresses what reaches the threshold in the agreed window, and a client inflates it (RFC 7692 §7.1.2.1, §7.2.1)", () => {
  fc.assert(
    fc.property(
      content,
      fc.integer({ min: 9, max: 15 }),
      fc.integer({ min: 1, max: 9 }),
      fc.oneof(fc.constant(0), fc.constant(1024), fc.nat({ max: 4096 })),
      (spec, serverMaxWindowBits, level, threshold) => {
        const message = make(spec);
        const params = negotiated({ serverMaxWindowBits, level, threshold });
        const server = deflateConnection({}, params);
        if (typeof message === "string") server.sendText(message);
        else server.sendBinary(message);
        const output = concat(...server.takeOutput());
        const compressed = (output[0] & RSV1) !== 0;
        assert.equal(compressed, bytesOf(message).length >= threshold);
        // A client that allocated only the agreed window inflates it.
        const client = new Connection({
          role: "client",
          generateMaskKey: fixedMaskKey,
          perMessageDeflate: {
            ...deflateOptions(params),
            inflate: (data) =>
              new ClientInflater(false, serverMaxWindowBits).inflate(data),
          },
        });
        client.receive(output);
        assertMessage(client.takeEvents(), message);
      },
    ),
    { numRuns: 50 },
  );
});

Deno.test("ContextDeflater output inflates message by message in one client window of the agreed size (RFC 7692 §7.2.1)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        content.map((c) => ({ ...c, size: c.size % (64 * 1024) })),
        { minLength: 1, maxLength: 8 },
      ),
      fc.integer({ min: 9, max: 15 }),
      async (specs, serverMaxWindowBits) => {
        const params = negotiated({
          serverMaxWindowBits,
          serverNoContextTakeover: false,
        });
        const deflater = new ContextDeflater(params);
        const inflater = new ClientInflater(true, serverMaxWindowBits);
        try {
          // Queued all at once: each call still gets only its own bytes.
          const messages = specs.map((spec) => bytesOf(make(spec)));
          const payloads = await Promise.all(
            messages.map((m) => deflater.deflate(m)),
          );
          for (let i = 0; i < messages.length; i++) {
            assertBytes(inflater.inflate(payloads[i]), messages[i]);
          }
        } finally {
          deflater.close();
        }
      },
    ),
    { numRuns: 30 },
  );
});

Deno.test("deflateMessage output inflates on its own in a window of the agreed size (RFC 7692 §7.1.2.1)", () => {
  // A unit repeated with a period over 512 bytes: a 15-bit compressor
  // would refer further back than a 9-bit window holds.
  const unit = randomBytes(1000, 7);
  const data = new Uint8Array(20_000).map((_, i) => unit[i % unit.length]);
  for (let bits = 9; bits <= 15; bits++) {
    const payload = deflateMessage(
      data,
      negotiated({ serverMaxWindowBits: bits }),
    );
    assertBytes(new ClientInflater(false, bits).inflate(payload), data);
  }
  // The reference inflater does catch a window too large.
  const wide = deflateMessage(data, negotiated({ serverMaxWindowBits: 15 }));
  assert.throws(() => new ClientInflater(false, 9).inflate(wide), /too far/);
});

Deno.test("deflateMessage and ContextDeflater in the client role compress within the client's window, not the server's (RFC 7692 §7.1.2.2); 8 bits is refused with a hint", async () => {
  const unit = randomBytes(1000, 11);
  const data = new Uint8Array(20_000).map((_, i) => unit[i % unit.length]);
  // The server keeps 15 bits for itself and limits the client to 9.
  const params = {
    ...negotiated({ serverMaxWindowBits: 15 }),
    clientMaxWindowBits: 9,
  };
  const payload = deflateMessage(data, params, "client");
  assertBytes(new ClientInflater(false, 9).inflate(payload), data);
  const deflater = new ContextDeflater(params, "client");
  const first = await deflater.deflate(data);
  deflater.close();
  assertBytes(new ClientInflater(false, 9).inflate(first), data);
  for (
    const make of [
      () =>
        deflateMessage(data, { ...params, clientMaxWindowBits: 8 }, "client"),
      () =>
        new ContextDeflater({ ...params, clientMaxWindowBits: 8 }, "client"),
    ]
  ) {
    assert.throws(make, {
      name: "RangeError",
      message:
        /client's window must be 9 to 15 bits, got 8 \(zlib cannot compress within 8 bits: send uncompressed/,
    });
  }
});

// ---------------------------------------------------------------------------
// Sockets: npm:ws echo in both server modes
// ---------------------------------------------------------------------------

const MODES = [
  { name: "without context takeover", serverNoContextTakeover: true },
  { name: "with context takeover", serverNoContextTakeover: false },
] as const;

const ECHO_SIZES = [0, 1, 1023, 1024, 1025, 65_536, MiB];

for (const mode of MODES) {
  Deno.test(`serve() ${mode.name} echoes compressed text and binary of 0 B to 1 MiB to npm:ws`, async () => {
    const tracker = new SocketTracker();
    await using server = serve({
      ...LOCAL,
      perMessageDeflate: {
        serverNoContextTakeover: mode.serverNoContextTakeover,
      },
    }, tracker.wrap(echo));
    await using client = await NpmClient.connect(wsUrl(server.addr), {
      perMessageDeflate: true,
    });
    const socket = await tracker.socket(client.port);
    assert.equal(
      socket.perMessageDeflate?.serverNoContextTakeover,
      mode.serverNoContextTakeover,
    );
    for (const size of ECHO_SIZES) {
      for (const seed of [1, 2]) {
        // Twice each: the second goes through a warm context.
        for (
          const message of [
            wordText(size, seed),
            repetitiveBytes(size, seed),
            randomBytes(size, seed),
          ]
        ) {
          const reply = await client.roundTrip(message);
          if (typeof message === "string") {
            assert.ok(reply === message, `text of ${size}`);
          } else assertBytes(reply, message);
        }
      }
    }
    assert.deepEqual(await client.close(1000), { code: 1000, reason: "" });
    assert.equal(client.error, null);
  });

  Deno.test(`Socket.send() ${mode.name} then close() delivers the big compressed message before the close frame`, async () => {
    const big = wordText(MiB, 3);
    const tracker = new SocketTracker();
    await using server = serve(
      {
        ...LOCAL,
        perMessageDeflate: {
          serverNoContextTakeover: mode.serverNoContextTakeover,
        },
      },
      tracker.wrap(async (socket) => {
        for await (const _ of socket) {
          socket.send(big);
          await socket.close(1000, "done");
        }
      }),
    );
    await using client = await NpmClient.connect(wsUrl(server.addr), {
      perMessageDeflate: true,
    });
    client.send("go");
    assert.ok(await client.next() === big, "the big message arrives whole");
    assert.deepEqual(
      await withTimeout(client.closed, DEADLINE, "the close"),
      { code: 1000, reason: "done" },
    );
    const info = await tracker.closed(client.port);
    assert.deepEqual([info.code, info.wasClean], [1000, true]);
  });

  Deno.test(`Socket.send() ${mode.name} keeps the order of interleaved small, big and uncompressed messages (npm:ws)`, async () => {
    const messages: { message: string | Uint8Array; compress: boolean }[] = [];
    for (let i = 0; i < 30; i++) {
      const big = i % 3 === 1;
      const message: string | Uint8Array = i % 2 === 0
        ? (big ? wordText(40_000, i) : `small ${i}`)
        : (big ? repetitiveBytes(40_000, i) : Uint8Array.of(i));
      messages.push({ message, compress: i % 5 !== 4 });
    }
    await using server = serve({
      ...LOCAL,
      perMessageDeflate: {
        serverNoContextTakeover: mode.serverNoContextTakeover,
      },
    }, async (socket) => {
      for await (const _ of socket) {
        // All in one turn, none awaited.
        for (const { message, compress } of messages) {
          socket.send(message, { compress });
        }
      }
    });
    await using client = await NpmClient.connect(wsUrl(server.addr), {
      perMessageDeflate: true,
    });
    client.send("go");
    for (const { message } of messages) {
      const reply = await client.next();
      if (typeof message === "string") {
        assert.ok(reply === message, message.slice(0, 20));
      } else assertBytes(reply, message);
    }
  });
}

// ---------------------------------------------------------------------------
// Sockets: the wire, read by a raw client
// ---------------------------------------------------------------------------

/** Reads frames up to the server's close frame, answers it, waits for EOF. */
async function framesUntilClose(
  peer: RawPeer,
): Promise<{ frames: RawFrame[]; code: number }> {
  const { before, code } = await peer.readClose();
  await peer.write(rawFrame(OP.close, closePayload(code)));
  await peer.readToEof();
  return { frames: before, code };
}

/** A server whose handler sends a fixed list and closes. */
function sender(
  options: { serverNoContextTakeover: boolean; threshold?: number },
  send: (socket: Socket) => void,
) {
  return serve(
    { ...LOCAL, perMessageDeflate: options },
    async (socket) => {
      send(socket);
      await socket.close();
    },
  );
}

for (const mode of MODES) {
  Deno.test(`Socket.send() ${mode.name} compresses from the threshold up, and never with compress: false (RFC 7692 §6)`, async () => {
    const T = 100;
    const cases: [
      message: string | Uint8Array,
      compressed: boolean,
      compress?: boolean,
    ][] = [
      ["a".repeat(T - 1), false],
      ["a".repeat(T), true],
      // 2-byte characters: 99 and 100 bytes of UTF-8 in fewer units.
      ["é".repeat(49) + "a", false],
      ["é".repeat(50), true],
      [new Uint8Array(T - 1).fill(7), false],
      [new Uint8Array(T).fill(7), true],
      ["b".repeat(10 * T), false, false],
      [new Uint8Array(10 * T).fill(9), false, false],
      ["c".repeat(10 * T), true, true],
      ["", false],
    ];
    await using server = sender(
      { serverNoContextTakeover: mode.serverNoContextTakeover, threshold: T },
      (socket) => {
        for (const [message, , compress] of cases) {
          socket.send(
            message,
            compress === undefined ? undefined : { compress },
          );
        }
      },
    );
    const { peer, extensions } = await rawDeflateClient(server.addr);
    using _ = peer;
    assert.ok(extensions?.startsWith("permessage-deflate"));
    const { frames, code } = await framesUntilClose(peer);
    assert.equal(code, 1000);
    const inflater = new ClientInflater(!mode.serverNoContextTakeover);
    assert.deepEqual(
      frames.map((f) => f.rsv === RSV1),
      cases.map(([, compressed]) => compressed),
    );
    frames.forEach((f, i) => {
      const [message] = cases[i];
      assert.equal(f.opcode, typeof message === "string" ? OP.text : OP.binary);
      assert.ok(f.fin);
      assertBytes(messageOf(f, inflater), bytesOf(message));
    });
  });

  Deno.test(`Socket.send() ${mode.name} compresses at the default threshold of 1024 bytes`, async () => {
    await using server = sender(
      { serverNoContextTakeover: mode.serverNoContextTakeover },
      (socket) => {
        socket.send("x".repeat(1023));
        socket.send("x".repeat(1024));
      },
    );
    const { peer } = await rawDeflateClient(server.addr);
    using _ = peer;
    const { frames } = await framesUntilClose(peer);
    assert.deepEqual(frames.map((f) => f.rsv), [0, RSV1]);
  });
}

Deno.test("Socket.send() with context takeover refers back to earlier messages; without, each compresses alike (RFC 7692 §7.1.1.1)", async () => {
  const message = wordText(4096, 11);
  const sizes: Record<string, number[]> = {};
  for (const mode of MODES) {
    await using server = sender(
      { serverNoContextTakeover: mode.serverNoContextTakeover },
      (socket) => {
        socket.send(message);
        socket.send(message);
      },
    );
    const { peer, extensions } = await rawDeflateClient(server.addr);
    using _ = peer;
    assert.equal(
      /server_no_context_takeover/.test(extensions ?? ""),
      mode.serverNoContextTakeover,
      extensions ?? "no extension",
    );
    const { frames } = await framesUntilClose(peer);
    const inflater = new ClientInflater(!mode.serverNoContextTakeover);
    for (const f of frames) {
      assert.equal(decode(messageOf(f, inflater)), message);
    }
    sizes[mode.name] = frames.map((f) => f.payload.length);
    if (mode.serverNoContextTakeover) {
      assertBytes(frames[1].payload, frames[0].payload);
    }
  }
  const [first, second] = sizes["with context takeover"];
  assert.ok(second * 10 < first, `second ${second} vs first ${first} bytes`);
});

Deno.test("Socket.send() with context takeover keeps the wire order of interleaved messages, close frame last", async () => {
  const sent: (string | Uint8Array)[] = [];
  for (let i = 0; i < 24; i++) {
    sent.push(
      i % 4 === 1
        ? wordText(20_000, i)
        : i % 4 === 3
        ? repetitiveBytes(30_000, i)
        : `small ${i}`,
    );
  }
  await using server = sender(
    { serverNoContextTakeover: false },
    (socket) => {
      for (const message of sent) socket.send(message);
    },
  );
  const { peer } = await rawDeflateClient(server.addr);
  using _ = peer;
  const { frames, code } = await framesUntilClose(peer);
  assert.equal(code, 1000);
  assert.equal(frames.length, sent.length);
  const inflater = new ClientInflater(true);
  frames.forEach((f, i) => {
    const message = sent[i];
    assert.equal(f.rsv === RSV1, bytesOf(message).length >= 1024, `#${i}`);
    assertBytes(messageOf(f, inflater), bytesOf(message));
  });
});

// ---------------------------------------------------------------------------
// Fragmented compressed messages from a raw client
// ---------------------------------------------------------------------------

for (const mode of MODES) {
  Deno.test(`serve() ${mode.name} inflates a compressed message in fragments, RSV1 on the first, a ping between (RFC 7692 §6.1)`, async () => {
    await using server = serve({
      ...LOCAL,
      perMessageDeflate: {
        serverNoContextTakeover: mode.serverNoContextTakeover,
      },
    }, echo);
    const { peer } = await rawDeflateClient(server.addr);
    using _ = peer;
    const inflater = new ClientInflater(!mode.serverNoContextTakeover);
    for (const message of [wordText(200_000, 5), repetitiveBytes(150_000, 6)]) {
      const payload = clientDeflate(bytesOf(message));
      const q = Math.ceil(payload.length / 4);
      const opcode = typeof message === "string" ? OP.text : OP.binary;
      await peer.write(concat(
        rawFrame(opcode, payload.subarray(0, q), { fin: false, rsv: RSV1 }),
        rawFrame(OP.continuation, payload.subarray(q, 2 * q), { fin: false }),
        rawFrame(OP.ping, "between"),
        rawFrame(OP.continuation, payload.subarray(2 * q, 3 * q), {
          fin: false,
        }),
        rawFrame(OP.continuation, payload.subarray(3 * q)),
      ));
      // The pong may follow the echo: a pong waits for the next flush,
      // and the echo can be queued before it.
      const frames = [await peer.readFrame(), await peer.readFrame()];
      const pong = frames.find((f) => f.opcode === OP.pong);
      assert.equal(decode(pong?.payload ?? new Uint8Array(0)), "between");
      const reply = frames.find((f) => f.opcode !== OP.pong)!;
      assert.deepEqual([reply.fin, reply.rsv, reply.opcode], [
        true,
        RSV1,
        opcode,
      ]);
      assertBytes(messageOf(reply, inflater), bytesOf(message));
    }
    await peer.write(rawFrame(OP.close, closePayload(1000)));
    assert.equal((await peer.readClose()).code, 1000);
  });
}

Deno.test("serve() echoes npm:ws messages the client sends compressed and uncompressed on one connection", async () => {
  // npm:ws compresses from 1024 bytes on; smaller ones go out plain. The
  // server must take both kinds in any order.
  await using server = serve({ ...LOCAL, perMessageDeflate: true }, echo);
  await using client = await NpmClient.connect(wsUrl(server.addr), {
    perMessageDeflate: { threshold: 1024 },
  });
  const messages: Received[] = [];
  for (let i = 0; i < 40; i++) {
    messages.push(i % 2 ? wordText(i * 100, i) : repetitiveBytes(i * 90, i));
  }
  for (const m of messages) client.send(m);
  for (const m of messages) {
    const reply = await client.next();
    if (typeof m === "string") assert.ok(reply === m);
    else assertBytes(reply, m);
  }
});
