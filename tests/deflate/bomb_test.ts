import assert from "node:assert/strict";
import zlib from "node:zlib";
import { PROTOCOL_ERROR_CODE, serve } from "../../mod.ts";
import { concat } from "../protocol/_helpers.ts";
import {
  assertBytes,
  DEADLINE,
  delay,
  echo,
  frame as rawFrame,
  LOCAL,
  NpmClient,
  OP,
  type Received,
  SocketTracker,
  withTimeout,
  wsUrl,
} from "../server/_helpers.ts";
import {
  randomBytes,
  rawDeflateClient,
  repetitiveBytes,
  RSV1,
  TAIL,
  wordText,
} from "./_helpers.ts";

const MiB = 1024 * 1024;
const MAX_PAYLOAD = MiB;
// Growth we tolerate while a 50 MiB bomb is refused at 1 MiB: the 1 MiB
// bound, zlib's state and the runtime's noise, with room to spare.
const SLACK = 20 * MiB;

const MODES = [
  { name: "without context takeover", serverNoContextTakeover: true },
  { name: "with context takeover", serverNoContextTakeover: false },
] as const;

/**
 * `mib` MiB of zeros as one compressed message payload (~1 KiB per MiB):
 * independently compressed 1 MiB blocks, each ending in a sync flush, so
 * their concatenation is one raw DEFLATE stream; the last tail is removed
 * as a sender does (RFC 7692 §7.2.1). Built without allocating `mib` MiB.
 */
function bomb(mib: number): Uint8Array<ArrayBuffer> {
  const block = zlib.deflateRawSync(new Uint8Array(MiB), {
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
    level: 9,
  });
  const stream = concat(...Array.from({ length: mib }, () => block));
  assert.deepEqual(stream.subarray(-4), TAIL);
  return stream.slice(0, -4);
}

/** This process's resident set size, in bytes. */
function rss(): number {
  return Deno.memoryUsage().rss;
}

/**
 * Resets the kernel's peak-RSS mark of this process (Linux: `VmHWM`, reset
 * by writing 5 to `/proc/self/clear_refs`) and returns a function reading
 * the peak since; `null` where that is not available.
 */
function peakMeter(): (() => number) | null {
  const read = () => {
    const status = Deno.readTextFileSync("/proc/self/status");
    return Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1]) * 1024;
  };
  try {
    Deno.writeTextFileSync("/proc/self/clear_refs", "5");
    const peak = read();
    return Number.isFinite(peak) ? read : null;
  } catch {
    return null;
  }
}

Deno.test("bomb() inflates to 50 MiB from about 50 KiB", () => {
  const payload = bomb(50);
  assert.ok(payload.length < 64 * 1024, `${payload.length} bytes`);
  const out = zlib.inflateRawSync(concat(payload, TAIL), {
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
  });
  assert.equal(out.length, 50 * MiB);
});

for (const mode of MODES) {
  Deno.test(`serve() ${mode.name} refuses a 50 MiB decompression bomb with 1009 at maxPayload 1 MiB, in bounded memory, and serves others (RFC 7692 §8.1)`, async () => {
    const tracker = new SocketTracker();
    await using server = serve({
      ...LOCAL,
      maxPayload: MAX_PAYLOAD,
      perMessageDeflate: {
        serverNoContextTakeover: mode.serverNoContextTakeover,
      },
    }, tracker.wrap(echo));
    // A bystander connected before the bomb.
    await using before = await NpmClient.connect(wsUrl(server.addr), {
      perMessageDeflate: true,
    });
    const payload = bomb(50);
    const attacks = [
      // One frame.
      rawFrame(OP.binary, payload, { rsv: RSV1 }),
      // The same in 50 fragments, RSV1 on the first.
      concat(
        ...Array.from({ length: 50 }, (_, i) =>
          rawFrame(
            i === 0 ? OP.text : OP.continuation,
            payload.subarray(
              Math.floor(payload.length * i / 50),
              Math.floor(payload.length * (i + 1) / 50),
            ),
            { fin: i === 49, rsv: i === 0 ? RSV1 : 0 },
          )),
      ),
    ];
    for (const attack of attacks) {
      const { peer } = await rawDeflateClient(server.addr);
      using _ = peer;
      const peak = peakMeter();
      const start = rss();
      const startPeak = peak?.();
      await peer.write(attack);
      const close = await peer.readClose();
      assert.deepEqual([close.code, close.reason, close.before], [
        1009,
        PROTOCOL_ERROR_CODE.MessageTooBig,
        [],
      ]);
      const info = await tracker.closed(peer.port);
      assert.equal(info.code, 1009);
      const grown = rss() - start;
      assert.ok(grown < SLACK, `RSS grew by ${(grown / MiB).toFixed(1)} MiB`);
      if (peak !== null) {
        const peaked = peak() - startPeak!;
        assert.ok(
          peaked < SLACK,
          `peak RSS grew by ${(peaked / MiB).toFixed(1)} MiB`,
        );
      }
    }
    // Others are still served: the bystander, and a newcomer.
    await using after = await NpmClient.connect(wsUrl(server.addr), {
      perMessageDeflate: true,
    });
    for (const client of [before, after]) {
      const message = wordText(256 * 1024, 4);
      assert.ok(await client.roundTrip(message) === message);
    }
  });
}

Deno.test("serve() fails a compressed frame declared past maxPayload with 1009 before its payload arrives (RFC 6455 §10.4)", async () => {
  await using server = serve({
    ...LOCAL,
    maxPayload: MAX_PAYLOAD,
    perMessageDeflate: true,
  }, echo);
  const { peer } = await rawDeflateClient(server.addr);
  using _ = peer;
  // Only the header of a 2 MiB compressed frame: the server must not wait
  // for (or make room for) its payload.
  const header = rawFrame(OP.binary, new Uint8Array(0), {
    rsv: RSV1,
    declaredLength: 2 * MiB,
  });
  await peer.write(header);
  const close = await peer.readClose();
  assert.deepEqual([close.code, close.reason], [
    1009,
    PROTOCOL_ERROR_CODE.MessageTooBig,
  ]);
});

Deno.test("serve() counts compressed fragments against maxPayload and fails the one that crosses it with 1009", async () => {
  await using server = serve({
    ...LOCAL,
    maxPayload: MAX_PAYLOAD,
    perMessageDeflate: true,
  }, echo);
  const { peer } = await rawDeflateClient(server.addr);
  using _ = peer;
  const first = randomBytes(600 * 1024, 1);
  await peer.write(concat(
    rawFrame(OP.binary, first, { fin: false, rsv: RSV1 }),
    // Header only: 600 KiB more would cross 1 MiB.
    rawFrame(OP.continuation, new Uint8Array(0), {
      declaredLength: 600 * 1024,
    }),
  ));
  const close = await peer.readClose();
  assert.equal(close.code, 1009);
});

Deno.test("serve() takes a compressed message of exactly maxPayload and refuses one byte more with 1009", async () => {
  const tracker = new SocketTracker();
  await using server = serve({
    ...LOCAL,
    maxPayload: MAX_PAYLOAD,
    perMessageDeflate: true,
  }, tracker.wrap(echo));
  await using client = await NpmClient.connect(wsUrl(server.addr), {
    perMessageDeflate: true,
  });
  const fits = repetitiveBytes(MAX_PAYLOAD, 3);
  assertBytes(await client.roundTrip(fits), fits);
  client.send(repetitiveBytes(MAX_PAYLOAD + 1, 3));
  const closed = await withTimeout(client.closed, DEADLINE, "the close");
  assert.equal(closed.code, 1009);
  assert.equal((await tracker.closed(client.port)).code, 1009);
});

for (const mode of MODES) {
  Deno.test(`serve() ${mode.name} answers every compressed message of 24 concurrent npm:ws clients, in order`, async () => {
    await using server = serve({
      ...LOCAL,
      perMessageDeflate: {
        serverNoContextTakeover: mode.serverNoContextTakeover,
      },
    }, echo);
    const url = wsUrl(server.addr);
    const clients = await Promise.all(
      Array.from(
        { length: 24 },
        () => NpmClient.connect(url, { perMessageDeflate: true }),
      ),
    );
    try {
      await Promise.all(clients.map(async (client, c) => {
        const messages: Received[] = Array.from(
          { length: 8 },
          (_, i) =>
            i % 2 === 0
              ? wordText(8_000 + i * 4_000, c * 8 + i)
              : repetitiveBytes(8_000 + i * 4_000, c * 8 + i),
        );
        for (const message of messages) client.send(message);
        for (const message of messages) {
          const reply = await client.next(`echo on client ${c}`);
          if (typeof message === "string") assert.ok(reply === message);
          else assertBytes(reply, message);
        }
      }));
    } finally {
      await Promise.all(clients.map((client) => client[Symbol.asyncDispose]()));
    }
  });
}

Deno.test("serve() with context takeover still compresses for others after 20 peers leave with compressions queued", async () => {
  // A compression cut short by the socket's end must still free its slot
  // in the limiter that all context-takeover sockets share.
  const big = randomBytes(256 * 1024, 9);
  const tracker = new SocketTracker();
  await using server = serve(
    {
      ...LOCAL,
      perMessageDeflate: { serverNoContextTakeover: false },
    },
    tracker.wrap(async (socket) => {
      if (socket.url.pathname === "/echo") return await echo(socket);
      for await (const _ of socket) {
        for (let i = 0; i < 4; i++) socket.send(big).catch(() => {});
      }
    }),
  );
  for (let i = 0; i < 20; i++) {
    const { peer } = await rawDeflateClient(server.addr);
    // "go", and gone: the server reads both at once.
    await peer.write(rawFrame(OP.text, "go"));
    peer.close();
    assert.equal((await tracker.closed(peer.port)).code, 1006);
  }
  await using client = await NpmClient.connect(wsUrl(server.addr, "/echo"), {
    perMessageDeflate: true,
  });
  for (const message of [wordText(100_000, 1), repetitiveBytes(300_000, 2)]) {
    const reply = await client.roundTrip(message);
    if (typeof message === "string") assert.ok(reply === message);
    else assertBytes(reply, message);
  }
});

Deno.test("serve() inflates no further than its receive queue can take: sixteen 1 MiB bombs in one read stop the parse once a queue's worth is inflated", async () => {
  let taken = 0;
  await using server = serve(
    { ...LOCAL, perMessageDeflate: true },
    async (socket) => {
      for await (const message of socket) {
        taken++;
        if (message === "stop") break; // takes nothing more: the queue fills
      }
      await socket.closed;
    },
  );
  const { peer } = await rawDeflateClient(server.addr);
  using _ = peer;
  // Filler first, so that reads have grown to 256 KiB; then, in the same
  // write and so in one read, the marker and sixteen bombs (16 MiB inflated
  // from about 16 KiB), which used to be inflated whole before the queue
  // was looked at.
  const filler = rawFrame(OP.binary, randomBytes(64 * 1024, 2));
  const one = rawFrame(OP.binary, bomb(1), { rsv: RSV1 });
  await peer.write(concat(
    ...Array.from({ length: 8 }, () => filler),
    rawFrame(OP.text, "stop"),
    ...Array.from({ length: 16 }, () => one),
  ));
  await withTimeout(
    (async () => {
      while (taken < 9) await delay(5);
    })(),
    DEADLINE,
    "the filler and the marker",
  );
  await delay(100);
  const parsed = server.stats().messagesReceived - taken;
  // receiveHighWaterMark (1 MiB) holds one bomb; the parse stops after it
  // (or a second, when the first came out of an earlier read).
  assert.ok(parsed >= 1 && parsed <= 2, `${parsed} bombs inflated`);
});
