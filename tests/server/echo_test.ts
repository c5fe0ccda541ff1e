import assert from "node:assert/strict";
import { serve } from "../../mod.ts";
import {
  assertBytes,
  concat,
  DEADLINE,
  decode,
  DenoClient,
  echo,
  frame,
  LOCAL,
  NpmClient,
  OP,
  pattern,
  rawHandshake,
  type Received,
  SocketTracker,
  withTimeout,
  wsUrl,
} from "./_helpers.ts";
import { recordFrees } from "../protocol/_helpers.ts";

const SIZES = [0, 125, 126, 65535, 65536, 16 * 1024 * 1024];
const MAX_PAYLOAD = 16 * 1024 * 1024;

interface Client extends AsyncDisposable {
  send(message: Received): void;
  next(what?: string): Promise<Received>;
  roundTrip(message: Received): Promise<Received>;
}

const clients: [string, (url: string) => Promise<Client>][] = [
  ["npm:ws", (url) => NpmClient.connect(url)],
  ["Deno WebSocket", (url) => DenoClient.connect(url)],
];

for (const [name, connect] of clients) {
  Deno.test(`serve() echoes text with its type to ${name}`, async () => {
    await using server = serve(LOCAL, echo);
    await using client = await connect(wsUrl(server.addr));
    assert.equal(await client.roundTrip("hello"), "hello");
    assert.equal(await client.roundTrip(""), "");
    const unicode = "héllo wörld ✓ 🎉 ".repeat(5000);
    assert.equal(await client.roundTrip(unicode), unicode);
  });

  Deno.test(`serve() echoes binary with its type to ${name}`, async () => {
    await using server = serve(LOCAL, echo);
    await using client = await connect(wsUrl(server.addr));
    const reply = await client.roundTrip(new Uint8Array([0, 1, 2, 255]));
    assertBytes(reply, new Uint8Array([0, 1, 2, 255]));
    // Bytes that happen to be valid UTF-8 still come back as binary.
    assertBytes(
      await client.roundTrip(new TextEncoder().encode("text?")),
      new TextEncoder().encode("text?"),
    );
  });

  Deno.test(
    `serve() echoes payloads of 0, 125, 126, 65535, 65536 and 16 MiB to ${name}`,
    async () => {
      await using server = serve(
        { ...LOCAL, maxPayload: MAX_PAYLOAD },
        echo,
      );
      await using client = await connect(wsUrl(server.addr));
      for (const size of SIZES) {
        const sent = pattern(size, size);
        client.send(sent);
        const reply = await withTimeout(
          client.next(),
          20_000,
          `the echo of ${size} bytes`,
        );
        assertBytes(reply, sent);
      }
      for (const size of SIZES.slice(0, -1)) {
        const sent = "x".repeat(size);
        assert.equal(await client.roundTrip(sent), sent, `text of ${size}`);
      }
    },
  );

  Deno.test(
    `serve() echoes 1000 messages in flight in order to ${name}`,
    async () => {
      await using server = serve(LOCAL, echo);
      await using client = await connect(wsUrl(server.addr));
      const sent: Received[] = [];
      for (let i = 0; i < 1000; i++) {
        sent.push(i % 3 === 0 ? pattern(i, i) : `message ${i}`);
      }
      for (const message of sent) client.send(message);
      for (const [i, message] of sent.entries()) {
        const reply = await client.next(`echo ${i} of 1000`);
        if (typeof message === "string") assert.equal(reply, message);
        else assertBytes(reply, message);
      }
    },
  );
}

Deno.test(
  "serve() delivers frames pipelined in the handshake's TCP write",
  async () => {
    const tracker = new SocketTracker();
    await using server = serve(LOCAL, tracker.wrap(echo));
    using peer = await rawHandshake(
      server.addr,
      concat(
        frame(OP.text, "one"),
        frame(OP.binary, new Uint8Array([1, 2, 3])),
        frame(OP.text, "thr", { fin: false }),
        frame(OP.continuation, "ee"),
        frame(OP.ping, "p"),
      ),
    );
    const replies = [
      await peer.readFrame(),
      await peer.readFrame(),
      await peer.readFrame(),
      await peer.readFrame(),
    ];
    // The pong may come before or after the echoes: it is a control frame.
    const pong = replies.find((reply) => reply.opcode === OP.pong);
    assert.ok(pong, "the ping is answered");
    assert.equal(decode(pong.payload), "p");
    const data = replies.filter((reply) => reply.opcode !== OP.pong);
    assert.deepEqual(
      data.map((reply) => [reply.opcode, reply.fin]),
      [[OP.text, true], [OP.binary, true], [OP.text, true]],
    );
    assert.equal(decode(data[0].payload), "one");
    assertBytes(data[1].payload, new Uint8Array([1, 2, 3]));
    assert.equal(decode(data[2].payload), "three");
    await peer.write(frame(OP.close, new Uint8Array([0x03, 0xe8])));
    assert.equal((await peer.readClose()).code, 1000);
    await peer.readToEof();
    const info = await tracker.closed(peer.port);
    assert.deepEqual(info, { code: 1000, reason: "", wasClean: true });
  },
);

Deno.test(
  "serve() echoes a message pipelined with the handshake and its close frame",
  async () => {
    await using server = serve(LOCAL, echo);
    using peer = await rawHandshake(
      server.addr,
      concat(
        frame(OP.text, "last words"),
        frame(OP.close, new Uint8Array([0x03, 0xe8])),
      ),
    );
    const { code, before } = await peer.readClose();
    // The message arrived before the close; whether the echo made it out
    // before the close echo depends on the handler, so only the close is
    // asserted, plus that anything before it is the echo.
    assert.equal(code, 1000);
    for (const reply of before) {
      assert.equal(decode(reply.payload), "last words");
    }
    await peer.readToEof();
  },
);

Deno.test("serve() answers a ping from npm:ws with a pong", async () => {
  await using server = serve(LOCAL, echo);
  await using client = await NpmClient.connect(wsUrl(server.addr));
  client.ws.ping(new Uint8Array([1, 2, 3]));
  assertBytes(await client.nextPong(), new Uint8Array([1, 2, 3]));
  client.ws.ping(new TextEncoder().encode("x".repeat(125)));
  assertBytes(
    await client.nextPong(),
    new TextEncoder().encode("x".repeat(125)),
  );
  assert.equal(await client.roundTrip("still open"), "still open");
});

Deno.test({
  name: "serve() answers an empty ping from npm:ws with a pong",

  async fn() {
    await using server = serve(LOCAL, echo);
    await using client = await NpmClient.connect(wsUrl(server.addr));
    client.ws.ping();
    assertBytes(await client.nextPong(), new Uint8Array(0));
  },
});

Deno.test({
  name: "serve() answers an empty ping over raw TCP (RFC 6455 §5.5.2)",

  async fn() {
    await using server = serve(LOCAL, echo);
    using peer = await rawHandshake(server.addr, frame(OP.ping));
    const pong = await peer.readFrame();
    assert.equal(pong.opcode, OP.pong);
    assert.equal(pong.payload.length, 0);
  },
});

for (const [name, connect] of clients) {
  Deno.test(
    `Socket.ping() resolves when ${name} answers with its automatic pong`,
    async () => {
      const pinged = Promise.withResolvers<void>();
      await using server = serve(LOCAL, async (socket) => {
        try {
          await socket.ping(new Uint8Array([7]));
          await socket.ping();
          pinged.resolve();
        } catch (error) {
          pinged.reject(error);
        }
        await echo(socket);
      });
      await using client = await connect(wsUrl(server.addr));
      await withTimeout(pinged.promise, 5_000, "socket.ping() to resolve");
      assert.equal(await client.roundTrip("after ping"), "after ping");
    },
  );
}

Deno.test("serve() assembles a message npm:ws sends in fragments", async () => {
  await using server = serve(LOCAL, echo);
  await using client = await NpmClient.connect(wsUrl(server.addr));
  client.ws.send("frag", { fin: false });
  client.ws.send("men", { fin: false });
  client.ws.send("ted", { fin: true });
  assert.equal(await client.next(), "fragmented");
  const parts = [pattern(10, 1), pattern(70_000, 2), pattern(1, 3)];
  parts.forEach((part, i) =>
    client.ws.send(part, { binary: true, fin: i === parts.length - 1 })
  );
  assertBytes(await client.next(), concat(...parts));
});

Deno.test(
  "serve() delivers a large frame pipelined with the handshake",
  async () => {
    await using server = serve(LOCAL, echo);
    const big = pattern(100_000, 5);
    using peer = await rawHandshake(
      server.addr,
      concat(frame(OP.binary, big), frame(OP.text, "after")),
    );
    const first = await peer.readFrame();
    assert.equal(first.opcode, OP.binary);
    assertBytes(first.payload, big);
    const second = await peer.readFrame();
    assert.equal(decode(second.payload), "after");
  },
);

Deno.test(
  "Socket.send() leaves the caller's buffers whole once written: copied and referenced payloads go out again",
  async () => {
    const sent = Promise.withResolvers<Uint8Array[]>();
    await using server = serve(LOCAL, async (socket) => {
      const copied = pattern(20_000, 1); // copied next to its header
      const referenced = pattern(300_000, 2); // written from this buffer
      for (let round = 0; round < 2; round++) {
        await socket.send(copied);
        await socket.send(referenced);
      }
      sent.resolve([copied, referenced]);
      await socket.closed;
    });
    await using client = await NpmClient.connect(wsUrl(server.addr));
    for (let round = 0; round < 2; round++) {
      assertBytes(await client.next(), pattern(20_000, 1));
      assertBytes(await client.next(), pattern(300_000, 2));
    }
    const [copied, referenced] = await sent.promise;
    assertBytes(copied, pattern(20_000, 1));
    assertBytes(referenced, pattern(300_000, 2));
  },
);

Deno.test(
  "Socket.send() reuses written frame buffers without touching frames still in flight: 300 large messages arrive whole, in order, at npm:ws",
  async () => {
    const size = (i: number) => 17_000 + (i * 7919) % 60_000;
    await using server = serve(LOCAL, async (socket) => {
      // Waves of sends: some frames are queued while others are written.
      for (let i = 0; i < 300; i++) {
        const sent = socket.send(pattern(size(i), i));
        if (i % 3 === 2) await sent;
      }
      await socket.closed;
    });
    await using client = await NpmClient.connect(wsUrl(server.addr));
    for (let i = 0; i < 300; i++) {
      assertBytes(await client.next(), pattern(size(i), i));
    }
  },
);

Deno.test(
  "a socket frees the frame buffer it kept for reuse once the connection is closed",
  async () => {
    using frees = recordFrees();
    const closed = Promise.withResolvers<void>();
    await using server = serve(LOCAL, async (socket) => {
      await socket.send(pattern(70_000, 1)); // a frame of 70_010 bytes
      await socket.close(1000);
      await socket.closed;
      closed.resolve();
    });
    await using client = await NpmClient.connect(wsUrl(server.addr));
    assertBytes(await client.next(), pattern(70_000, 1));
    assert.equal((await client.closed).code, 1000);
    await closed.promise;
    assert.ok(frees.freed.includes(70_010), `freed: ${frees.freed}`);
  },
);

Deno.test("serve() serves 50 concurrent clients at once", async () => {
  await using server = serve(LOCAL, echo);
  const clients = await Promise.all(
    Array.from({ length: 50 }, () => NpmClient.connect(wsUrl(server.addr))),
  );
  try {
    assert.equal(server.connections, 50);
    await Promise.all(clients.map(async (client, c) => {
      for (let i = 0; i < 100; i++) client.send(`${c}:${i}`);
      for (let i = 0; i < 100; i++) {
        assert.equal(await client.next(), `${c}:${i}`);
      }
    }));
  } finally {
    await Promise.all(clients.map((client) => client[Symbol.asyncDispose]()));
  }
});

Deno.test(
  "serve() refuses a message far over maxPayload with a 1009 the client gets to read: it reads on briefly before closing, so no reset overtakes the close frame",
  async () => {
    await using server = serve({ ...LOCAL, maxPayload: 64 * 1024 }, echo);
    const outcomes: unknown[] = [];
    for (let trial = 0; trial < 4; trial++) {
      using peer = await rawHandshake(server.addr);
      // A client busy sending: a browser whose write fails with a reset
      // reports 1006 without reading the close frame that came first.
      const written = await peer.write(
        frame(OP.binary, pattern(8 * 1024 * 1024)),
      ).then(() => "written", (error) => String(error));
      const close = await withTimeout(peer.readClose(), DEADLINE, "the close");
      outcomes.push([written, close.code]);
    }
    assert.deepEqual(outcomes, Array(4).fill(["written", 1009]));
  },
);

Deno.test(
  "serve() refuses a message over maxPayload from npm:ws with 1009",
  async () => {
    await using server = serve({ ...LOCAL, maxPayload: 1024 }, echo);
    await using client = await NpmClient.connect(wsUrl(server.addr));
    assert.equal((await client.roundTrip(pattern(1024))).length, 1024);
    client.send(pattern(1025));
    const seen = await withTimeout(client.closed, 5_000, "close event");
    assert.equal(seen.code, 1009);
  },
);
