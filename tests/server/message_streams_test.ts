import assert from "node:assert/strict";
import {
  type CloseInfo,
  connect,
  ConnectionClosedError,
  type IncomingStream,
  serve,
  type Socket,
} from "../../mod.ts";
import {
  assertBytes,
  closePayload,
  concat,
  DEADLINE,
  delay,
  frame,
  LOCAL,
  NpmClient,
  OP,
  pattern,
  rawHandshake,
  SocketTracker,
  waitUntil,
  withTimeout,
  wsUrl,
} from "./_helpers.ts";

/** Reads a message stream to its end, returning its pieces. */
async function pieces(
  readable: ReadableStream<string> | ReadableStream<Uint8Array>,
): Promise<(string | Uint8Array)[]> {
  return await Array.fromAsync(readable as ReadableStream<string | Uint8Array>);
}

Deno.test("Socket.sendStream sends the pieces as fragments of one message, in order with other sends (RFC 6455 §5.4)", async () => {
  await using server = serve(LOCAL, async (socket) => {
    for await (const _ of socket) {
      socket.send("before");
      const streamed = socket.sendStream(
        (async function* () {
          for (let i = 0; i < 5; i++) {
            yield `part${i};`;
            await new Promise((resolve) => setTimeout(resolve, 1));
          }
        })(),
      );
      socket.send("after"); // waits for the streamed message to end
      await streamed;
      await socket.sendStream(ReadableStream.from([pattern(3), pattern(2, 7)]));
      await socket.sendStream([]);
      await socket.sendStream([], { binary: false });
    }
  });
  await using client = await NpmClient.connect(wsUrl(server.addr));
  client.send("go");
  assert.equal(await client.next(), "before");
  assert.equal(await client.next(), "part0;part1;part2;part3;part4;");
  assert.equal(await client.next(), "after");
  const binary = await client.next();
  assertBytes(binary, new Uint8Array([...pattern(3), ...pattern(2, 7)]));
  assertBytes(await client.next(), new Uint8Array(0));
  assert.equal(await client.next(), "");
});

Deno.test("Socket.sendStream sends what each piece held when it was yielded, though the source reuses its buffer for the next", async () => {
  await using server = serve(LOCAL, async (socket) => {
    // As a reader of a file would: one buffer, refilled for every piece.
    const buffer = new Uint8Array(300 * 1024); // above the copy limit, too
    const small = buffer.subarray(0, 4);
    await socket.sendStream((async function* () {
      for (let i = 1; i <= 3; i++) {
        small.fill(i);
        yield small;
      }
      buffer.fill(4);
      yield buffer;
      buffer.fill(5);
      yield buffer.buffer;
    })());
    await socket.closed;
  });
  using peer = await rawHandshake(server.addr);
  const payloads = [];
  for (let i = 0; i < 5; i++) payloads.push((await peer.readFrame()).payload);
  for (let i = 0; i < 3; i++) {
    assertBytes(payloads[i], new Uint8Array(4).fill(i + 1));
  }
  assertBytes(payloads[3], new Uint8Array(300 * 1024).fill(4));
  assertBytes(payloads[4], new Uint8Array(300 * 1024).fill(5));
});

Deno.test("Socket.sendStream puts each piece in its own frame, FIN only on the last", async () => {
  await using server = serve(LOCAL, async (socket) => {
    await socket.sendStream(["ab", "cd", "e"]);
    await socket.closed;
  });
  using peer = await rawHandshake(server.addr);
  const frames = [
    await peer.readFrame(),
    await peer.readFrame(),
    await peer.readFrame(),
  ];
  assert.deepEqual(
    frames.map((f) => [f.opcode, f.fin, new TextDecoder().decode(f.payload)]),
    [[OP.text, false, "ab"], [OP.continuation, false, "cd"], [
      OP.continuation,
      true,
      "e",
    ]],
  );
  await peer.write(frame(OP.close, closePayload(1000)));
  await peer.readClose();
});

Deno.test("Socket.sendStream rejects pieces of mixed kinds with a TypeError, and later sends still work", async () => {
  const outcome = Promise.withResolvers<unknown>();
  await using server = serve(LOCAL, async (socket) => {
    await socket.sendStream(["text", new Uint8Array(1)]).then(
      () => outcome.resolve("resolved"),
      (error) => outcome.resolve(error),
    );
    await socket.closed;
  });
  await using client = await NpmClient.connect(wsUrl(server.addr));
  const error = await withTimeout(outcome.promise, DEADLINE, "sendStream");
  assert.ok(error instanceof TypeError, String(error));
  assert.match(error.message, /all be strings or all bytes/);
  // The peer saw an unfinished message; the socket cannot be reused
  // meaningfully, but it is not left hanging: the client may close it.
  await client.close(1000);
});

Deno.test("Socket.sendStream whose source fails after the message started closes with 1011, so the peer discards the part it got; the server's other sockets are unaffected", async () => {
  const outcome = Promise.withResolvers<unknown>();
  const later = Promise.withResolvers<unknown>();
  await using server = serve(LOCAL, async (socket) => {
    if (socket.url.pathname === "/other") {
      socket.subscribe("news");
      await socket.closed;
      return;
    }
    socket.subscribe("news");
    async function* failing() {
      yield "first piece";
      yield "second piece";
      throw new Error("the source broke");
    }
    await socket.sendStream(failing()).then(
      () => outcome.resolve("resolved"),
      (error) => outcome.resolve(error),
    );
    await socket.send("after").catch((error) => later.resolve(error));
    await socket.closed;
  });
  await using client = await NpmClient.connect(wsUrl(server.addr));
  await using other = await NpmClient.connect(wsUrl(server.addr, "/other"));
  const error = await withTimeout(outcome.promise, DEADLINE, "sendStream");
  assert.match(String(error), /the source broke/);
  assert.ok(
    (await withTimeout(later.promise, DEADLINE, "a later send")) instanceof
      ConnectionClosedError,
  );
  const closed = await withTimeout(client.closed, DEADLINE, "the close");
  assert.equal(closed.code, 1011);
  assert.equal(closed.reason, "message stream failed");
  // A publish still reaches the other subscriber (the failed socket is not
  // in the way).
  await waitUntil(() => server.connections === 1, "the failed socket gone");
  server.publish("news", "still here");
  assert.equal(await other.next(), "still here");
});

Deno.test("Socket.close() cuts short a message still streaming out after half the close timeout: the close frame follows with its code, the source is canceled, and what was queued behind it is dropped", async () => {
  let pulls = 0;
  let canceled = false;
  const closing = Promise.withResolvers<void>();
  let queuedBehind: unknown;
  let elapsed = 0;
  await using server = serve(
    { ...LOCAL, closeTimeout: 600 },
    async (socket) => {
      const endless = new ReadableStream<string>({
        async pull(controller) {
          pulls++;
          if (pulls === 3) closing.resolve();
          await new Promise((resolve) => setTimeout(resolve, 20));
          controller.enqueue(`piece ${pulls}`);
        },
        cancel() {
          canceled = true;
        },
      }, { highWaterMark: 0 });
      const streaming = socket.sendStream(endless).catch((error) => error);
      queuedBehind = socket.send("queued behind the stream");
      await closing.promise;
      const start = performance.now();
      await socket.close(4001, "bye");
      elapsed = performance.now() - start;
      assert.ok(await streaming instanceof ConnectionClosedError);
    },
  );
  await using client = await NpmClient.connect(wsUrl(server.addr));
  const closed = await withTimeout(client.closed, DEADLINE, "the close");
  assert.equal(closed.code, 4001);
  assert.equal(closed.reason, "bye");
  const pullsAtClose = pulls;
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(pulls, pullsAtClose, "the source is no longer pulled");
  assert.ok(canceled);
  assert.ok(elapsed >= 290, `close() took ${elapsed} ms, not half of 600`);
  await queuedBehind;
  // npm:ws drops the unfinished message; "queued behind the stream" never
  // went out (the close event came with nothing before it).
});

Deno.test("Socket.close() lets a message still streaming out end, then sends what was queued behind it, then the close frame: nothing is lost", async () => {
  await using server = serve(LOCAL, async (socket) => {
    for await (const _ of socket) {
      const started = Promise.withResolvers<void>();
      socket.send("before");
      socket.sendStream(
        (async function* () {
          for (let i = 0; i < 5; i++) {
            yield `part${i};`;
            if (i === 1) started.resolve(); // the first piece went out
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        })(),
      ).catch(() => {});
      socket.send("after");
      await started.promise;
      await socket.close(4002, "done");
    }
  });
  await using client = await NpmClient.connect(wsUrl(server.addr));
  client.send("go");
  assert.equal(await client.next(), "before");
  assert.equal(await client.next(), "part0;part1;part2;part3;part4;");
  assert.equal(await client.next(), "after");
  const closed = await withTimeout(client.closed, DEADLINE, "the close");
  assert.equal(closed.code, 4002);
});

Deno.test("Socket.close() in the same turn as sendStream() of an endless source completes within the close timeout", async () => {
  let canceled = false;
  const outcome = Promise.withResolvers<CloseInfo>();
  await using server = serve({ ...LOCAL, closeTimeout: 400 }, (socket) => {
    let n = 0;
    const endless = new ReadableStream<string>({
      async pull(controller) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        controller.enqueue(`piece ${n++}`);
      },
      cancel: () => void (canceled = true),
    }, { highWaterMark: 0 });
    socket.sendStream(endless).catch(() => {});
    socket.close(4003, "now").then(outcome.resolve);
  });
  await using client = await NpmClient.connect(wsUrl(server.addr));
  const info = await withTimeout(outcome.promise, DEADLINE, "close()");
  assert.equal(info.code, 4003);
  assert.ok(info.wasClean);
  assert.equal(
    (await withTimeout(client.closed, DEADLINE, "the close")).code,
    4003,
  );
  assert.ok(canceled);
});

Deno.test("Server.shutdown() lets a message still streaming out end before the 1001, with what was queued behind it", async () => {
  const started = Promise.withResolvers<void>();
  await using server = serve(LOCAL, async (socket) => {
    socket.sendStream(
      (async function* () {
        for (let i = 0; i < 5; i++) {
          yield `part${i};`;
          if (i === 0) started.resolve();
          await new Promise((resolve) => setTimeout(resolve, 30));
        }
      })(),
    ).catch(() => {});
    socket.send("after");
    await socket.closed;
  });
  await using client = await NpmClient.connect(wsUrl(server.addr));
  await started.promise;
  await withTimeout(server.shutdown(), DEADLINE, "shutdown");
  assert.equal(await client.next(), "part0;part1;part2;part3;part4;");
  assert.equal(await client.next(), "after");
  assert.equal((await client.closed).code, 1001);
});

Deno.test("Server.shutdown() with a timeout shorter than closeTimeout cuts endless streams in time for a clean 1001", async () => {
  let sockets = 0;
  await using server = serve(LOCAL, async (socket) => {
    sockets++;
    let n = 0;
    socket.sendStream(
      new ReadableStream<string>({
        async pull(controller) {
          await new Promise((resolve) => setTimeout(resolve, 5));
          controller.enqueue(`tick ${n++};`);
        },
      }, { highWaterMark: 0 }),
    ).catch(() => {});
    await socket.closed;
  });
  const clients = await Promise.all(
    Array.from({ length: 5 }, () => NpmClient.connect(wsUrl(server.addr))),
  );
  await waitUntil(() => sockets === 5, "five sockets");
  await withTimeout(server.shutdown({ timeout: 1000 }), DEADLINE, "shutdown");
  for (const client of clients) {
    const closed = await withTimeout(client.closed, DEADLINE, "the close");
    assert.equal(closed.code, 1001);
    await client[Symbol.asyncDispose]();
  }
});

Deno.test("Socket.close() with streamGrace 0 cuts a message still streaming out at once; a bad streamGrace is a RangeError", async () => {
  const outcome = Promise.withResolvers<number>();
  await using server = serve(LOCAL, async (socket) => {
    assert.throws(() => socket.close(1000, "", { streamGrace: -1 }), {
      name: "RangeError",
      message:
        'Cannot close: "streamGrace" must be a number of milliseconds from 0 to 2147483647, got -1',
    });
    const started = Promise.withResolvers<void>();
    socket.sendStream(
      (async function* () {
        yield "first;";
        started.resolve();
        await new Promise((resolve) => setTimeout(resolve, 60_000));
        yield "never";
      })(),
    ).catch(() => {});
    await started.promise;
    const start = performance.now();
    await socket.close(4005, "now", { streamGrace: 0 });
    outcome.resolve(performance.now() - start);
  });
  await using client = await NpmClient.connect(wsUrl(server.addr));
  assert.equal(
    (await withTimeout(client.closed, DEADLINE, "close")).code,
    4005,
  );
  // Well under the default grace (half of 5000 ms).
  assert.ok(await outcome.promise < 2000);
});

Deno.test("Socket.close() waiting on a stream answers the peer's close when it arrives meanwhile: the peer gets its own code back", async () => {
  const started = Promise.withResolvers<void>();
  await using server = serve(
    { ...LOCAL, closeTimeout: 600 },
    async (socket) => {
      socket.sendStream(
        (async function* () {
          yield "first;";
          started.resolve();
          for (;;) {
            await new Promise((resolve) => setTimeout(resolve, 10));
            yield "more;";
          }
        })(),
      ).catch(() => {});
      await started.promise;
      await socket.close(4006, "ours");
    },
  );
  const peer = await rawHandshake(server.addr);
  await started.promise;
  await peer.write(frame(OP.close, closePayload(4007, "theirs")));
  const { code, reason } = await withTimeout(
    peer.readClose(),
    DEADLINE,
    "close",
  );
  assert.deepEqual([code, reason], [4007, "theirs"]);
  peer.close();
});

Deno.test("Socket.sendStream holds no piece once it is written: streaming 320 MiB keeps memory bounded", async () => {
  const PIECE = 1024 * 1024;
  const PIECES = 320;
  let peak = 0;
  await using server = serve(
    { ...LOCAL, closeTimeout: 200 },
    async (socket) => {
      const base = Deno.memoryUsage().external;
      await socket.sendStream(
        (async function* () {
          for (let i = 0; i < PIECES; i++) {
            peak = Math.max(peak, Deno.memoryUsage().external - base);
            yield new Uint8Array(PIECE).fill(i);
          }
        })(),
      );
      await socket.close();
    },
  );
  // A raw peer that counts and discards what arrives (a client assembling
  // the message would hold it all in this process too).
  using peer = await rawHandshake(server.addr);
  let received = 0;
  const buffer = new Uint8Array(256 * 1024);
  for (;;) {
    const n = await withTimeout(peer.conn.read(buffer), DEADLINE, "data");
    if (n === null) break;
    received += n;
  }
  // (The server cuts the peer off closeTimeout after its close frame, which
  // this peer never answers.)
  assert.ok(received > (PIECES - 20) * PIECE, `${received} bytes arrived`);
  // Each piece held until the stream ends would be all 320 MiB.
  assert.ok(peak < 160 * PIECE, `${peak} bytes held`);
});

Deno.test("Socket.sendStream takes ArrayBuffer pieces as bytes, and keeps a surrogate pair split between string pieces whole", async () => {
  await using server = serve(LOCAL, async (socket) => {
    await socket.sendStream([
      new Uint8Array([1, 2]).buffer,
      new Uint8Array([3]),
    ]);
    const smile = "😀";
    await socket.sendStream(["a", "b" + smile[0], smile[1] + "c", "d\uD83D"]);
    await socket.closed;
  });
  await using client = await NpmClient.connect(wsUrl(server.addr));
  assertBytes(await client.next(), new Uint8Array([1, 2, 3]));
  // A lone high surrogate at the very end becomes U+FFFD, as in send().
  assert.equal(await client.next(), "ab😀cd\uFFFD");
  await client.close(1000);
});

Deno.test("Socket.sendStream rejects with ConnectionClosedError on a closed socket, and cancels its source", async () => {
  const outcome = Promise.withResolvers<unknown>();
  let canceled: unknown;
  await using server = serve(LOCAL, async (socket) => {
    await socket.closed;
    const late = new ReadableStream<string>({
      cancel: (reason) => void (canceled = reason),
    });
    await socket.sendStream(late).catch((error) => outcome.resolve(error));
  });
  const client = await NpmClient.connect(wsUrl(server.addr));
  await client.close(1000);
  await client[Symbol.asyncDispose]();
  const error = await withTimeout(outcome.promise, DEADLINE, "sendStream");
  assert.ok(error instanceof ConnectionClosedError);
  assert.equal(canceled, error);
});

Deno.test("Socket.sendStream settles when the peer vanishes while its source waits for data: it rejects, the source is canceled and the handler ends", async () => {
  const tracker = new SocketTracker();
  let canceled = 0;
  const outcomes: unknown[] = [];
  await using server = serve(
    LOCAL,
    tracker.wrap(async (socket) => {
      // A live feed: two pieces (the first goes out), then nothing for a
      // long time.
      const feed = new ReadableStream<string>({
        start: (controller) => {
          controller.enqueue("first");
          controller.enqueue("second");
        },
        cancel: () => void canceled++,
      });
      // Queued behind the first: its turn comes after the socket ended.
      const queued = new ReadableStream<string>({
        cancel: () => void canceled++,
      });
      outcomes.push(
        ...await Promise.all([
          socket.sendStream(feed).catch((error) => error),
          socket.sendStream(queued).catch((error) => error),
        ]),
      );
    }),
  );
  const peer = await rawHandshake(server.addr);
  const socket = await tracker.socket(peer.port);
  const first = await withTimeout(
    peer.readFrame(),
    DEADLINE,
    "the first piece",
  );
  assert.equal(first.fin, false);
  peer.close(); // no close frame: the connection just ends
  assert.equal(
    (await withTimeout(socket.closed, DEADLINE, "closed")).code,
    1006,
  );
  await withTimeout(server.shutdown(), DEADLINE, "the handler's end");
  assert.equal(outcomes.length, 2);
  for (const outcome of outcomes) {
    assert.ok(outcome instanceof ConnectionClosedError, String(outcome));
  }
  assert.equal(canceled, 2);
});

Deno.test("serve({streamMessages}) delivers each message as a stream of its pieces, text decoded and binary as bytes", async () => {
  const received = Promise.withResolvers<[string, unknown[]][]>();
  await using server = serve(
    { ...LOCAL, streamMessages: true },
    async (socket) => {
      const result: [string, unknown[]][] = [];
      for await (const message of socket.streams()) {
        result.push([message.type, await pieces(message.readable)]);
        if (result.length === 2) break;
      }
      received.resolve(result);
    },
  );
  using peer = await rawHandshake(server.addr);
  // "héllo" split inside the two-byte "é", across three fragments.
  const text = new TextEncoder().encode("héllo");
  await peer.write(frame(OP.text, text.subarray(0, 2), { fin: false }));
  await peer.write(frame(OP.continuation, text.subarray(2, 4), { fin: false }));
  await peer.write(frame(OP.continuation, text.subarray(4)));
  await peer.write(frame(OP.binary, pattern(70_000)));
  const result = await withTimeout(received.promise, DEADLINE, "streams");
  assert.equal(result[0][0], "text");
  assert.equal((result[0][1] as string[]).join(""), "héllo");
  // (Pieces that wait for the handler merge: how many is not fixed.)
  assert.equal(result[1][0], "binary");
  const bytes = new Uint8Array(
    (result[1][1] as Uint8Array[]).flatMap((piece) => [...piece]),
  );
  assertBytes(bytes, pattern(70_000));
});

/**
 * Offers `server` 40 messages of 1 MB from a raw peer (writes stall once the
 * kernel buffers are full); returns how much the server had read half a
 * second after `reading` (its handler got a first piece).
 */
async function bytesReadOfFlood(
  server: { stats(): { bytesReceived: number }; addr: Deno.NetAddr },
  reading: Promise<void>,
): Promise<number> {
  using peer = await rawHandshake(server.addr);
  const message = frame(OP.binary, new Uint8Array(1_000_000).fill(7));
  const writing = (async () => {
    for (let i = 0; i < 40; i++) await peer.write(message);
  })().catch(() => {});
  await withTimeout(reading, DEADLINE, "the first piece");
  await delay(500);
  const read = server.stats().bytesReceived;
  peer.close();
  await writing;
  return read;
}

Deno.test("serve({streamMessages}) counts the unread pieces of every message, taken or queued, against receiveHighWaterMark: a slow reader holds back a flood of whole messages", async () => {
  const firstPiece = Promise.withResolvers<void>();
  await using server = serve(
    { ...LOCAL, streamMessages: true },
    async (socket) => {
      for await (const message of socket.streams()) {
        for await (const _ of message.readable) {
          firstPiece.resolve();
          await delay(60_000); // reads nothing more
        }
      }
    },
  );
  const read = await bytesReadOfFlood(server, firstPiece.promise);
  // Each queued stream counted as nothing let all 40 MB (and a GB more) in.
  assert.ok(read < 8_000_000, `${read} bytes read`);
});

Deno.test("serve({streamMessages}) after close() reads a message being streamed in no faster than the handler reads it", async () => {
  const closing = Promise.withResolvers<void>();
  await using server = serve(
    { ...LOCAL, streamMessages: true, closeTimeout: 3000 },
    async (socket) => {
      for await (const message of socket.streams()) {
        for await (const _ of message.readable) {
          if (socket.state === "open") {
            socket.close(1000, "enough").catch(() => {});
            closing.resolve();
          }
          await delay(200); // a slow reader, still reading
        }
      }
    },
  );
  using peer = await rawHandshake(server.addr);
  // One 100 MB message, sent as fast as the server takes it.
  const size = 100_000_000;
  const head = frame(OP.binary, new Uint8Array(0), { fin: false });
  const writing = (async () => {
    await peer.write(head);
    const chunk = frame(OP.continuation, new Uint8Array(1_000_000), {
      fin: false,
    });
    for (let sent = 0; sent < size; sent += 1_000_000) {
      await peer.write(chunk);
    }
  })().catch(() => {});
  await withTimeout(closing.promise, DEADLINE, "close()");
  await delay(2000);
  // At the handler's pace: 10 pieces (of at most 1 MiB) in 2 s.
  const read = server.stats().bytesReceived;
  assert.ok(read < 12_000_000, `${read} bytes read in two seconds`);
  peer.close();
  await writing;
});

Deno.test("serve({streamMessages}) holds back a flood for a handler that reads its streams concurrently and slowly", async () => {
  const reading = Promise.withResolvers<void>();
  await using server = serve(
    { ...LOCAL, streamMessages: true },
    async (socket) => {
      for await (const message of socket.streams()) {
        // Not awaited: the loop takes the next message at once.
        (async () => {
          for await (const _ of message.readable) {
            reading.resolve();
            await delay(60_000);
          }
        })().catch(() => {}); // errors when the connection ends
      }
    },
  );
  const read = await bytesReadOfFlood(server, reading.promise);
  assert.ok(read < 8_000_000, `${read} bytes read`);
});

Deno.test("serve({streamMessages}) keeps reading for a handler that skips some streams without reading or canceling them", async () => {
  await using server = serve(
    { ...LOCAL, streamMessages: true, receiveHighWaterMark: 64 * 1024 },
    async (socket) => {
      for await (const message of socket.streams()) {
        if (message.type === "binary") continue; // skipped, never read
        await socket.send((await pieces(message.readable)).join(""));
      }
    },
  );
  await using client = await NpmClient.connect(wsUrl(server.addr));
  const count = 300; // 300 KB skipped, far over receiveHighWaterMark
  for (let i = 0; i < count; i++) {
    client.send(new Uint8Array(1000));
    client.send(`text ${i}`);
  }
  for (let i = 0; i < count; i++) {
    assert.equal(await client.next(`echo ${i}`), `text ${i}`);
  }
});

Deno.test("serve({streamMessages}) does not stall a handler that skips a binary message still arriving and then reads the next one whole", async () => {
  await using server = serve(
    { ...LOCAL, streamMessages: true },
    async (socket) => {
      for await (const message of socket.streams()) {
        if (message.type === "binary") continue; // skipped while arriving
        const text = (await pieces(message.readable)).join("");
        await socket.send(`got ${text.length}`);
      }
    },
  );
  await using client = await NpmClient.connect(wsUrl(server.addr));
  for (let i = 0; i < 3; i++) {
    client.send(new Uint8Array(4_000_000));
    client.send("t".repeat(3_000_000));
  }
  for (let i = 0; i < 3; i++) {
    assert.equal(await client.next(`reply ${i}`), "got 3000000");
  }
});

Deno.test("serve({streamMessages}) does not stall a handler that takes streams piped into transforms it reads only later", async () => {
  await using server = serve(
    {
      ...LOCAL,
      streamMessages: true,
      receiveHighWaterMark: 64 * 1024,
      // How long no piece of them may be read before they are let go.
      closeTimeout: 1000,
    },
    async (socket) => {
      const batch: ReadableStream<string>[] = [];
      for await (const message of socket.streams()) {
        batch.push(
          (message.readable as ReadableStream<string>).pipeThrough(
            new TransformStream(),
          ),
        );
        if (batch.length === 2) break;
      }
      const texts = await Promise.all(
        batch.map((readable) => Array.fromAsync(readable)),
      );
      await socket.send(texts.map((pieces) => pieces.join("").length).join());
    },
  );
  using peer = await rawHandshake(server.addr);
  const piece = new TextEncoder().encode("x".repeat(100_000));
  for (let i = 0; i < 10; i++) {
    await peer.write(
      frame(i === 0 ? OP.text : OP.continuation, piece, { fin: i === 9 }),
    );
  }
  await peer.write(frame(OP.text, new TextEncoder().encode("y".repeat(1000))));
  const reply = await withTimeout(peer.readFrame(), DEADLINE, "the reply");
  assert.equal(new TextDecoder().decode(reply.payload), "1000000,1000");
});

Deno.test("serve({streamMessages}) lets go of a stream whose reader stopped after reading a little while reading was paused, so the next message comes", async () => {
  await using server = serve(
    {
      ...LOCAL,
      streamMessages: true,
      receiveHighWaterMark: 64 * 1024,
      closeTimeout: 600,
    },
    async (socket) => {
      let first = true;
      for await (const message of socket.streams()) {
        if (!first) {
          await socket.send(`next: ${message.type}`);
          continue;
        }
        first = false;
        // Reads two pieces, the second well after reading paused, then
        // never again (neither reads nor cancels).
        const reader = message.readable.getReader();
        (async () => {
          await reader.read();
          await delay(300);
          await reader.read();
        })().catch(() => {});
      }
    },
  );
  using peer = await rawHandshake(server.addr);
  const piece = new Uint8Array(100_000);
  for (let i = 0; i < 10; i++) {
    await peer.write(
      frame(i === 0 ? OP.binary : OP.continuation, piece, { fin: i === 9 }),
    );
  }
  await peer.write(frame(OP.text, "after"));
  const reply = await withTimeout(peer.readFrame(), DEADLINE, "the reply");
  assert.equal(new TextDecoder().decode(reply.payload), "next: text");
});

Deno.test("serve({streamMessages}) holds the peer back for a stream read slowly beside the loop (a piece a second and more), up to closeTimeout per piece", async () => {
  const MIB = 1024 * 1024;
  let read = 0;
  await using server = serve(
    {
      ...LOCAL,
      streamMessages: true,
      maxPayload: 2 ** 30,
      receiveHighWaterMark: 256 * 1024,
      closeTimeout: 4000,
    },
    async (socket) => {
      for await (const message of socket.streams()) {
        // Read beside the loop, which waits for the next message: a sink
        // that takes 1.3 s a piece.
        (async () => {
          for await (const piece of message.readable) {
            read += piece.length;
            await delay(1300);
          }
        })().catch(() => {});
      }
    },
  );
  using peer = await rawHandshake(server.addr);
  // One 256 MiB binary frame (masking key 0), written as fast as it goes.
  const header = new Uint8Array(14);
  header[0] = 0x82;
  header[1] = 0x80 | 127;
  new DataView(header.buffer).setBigUint64(2, 256n * BigInt(MIB));
  await peer.write(header);
  const writing = (async () => {
    const chunk = new Uint8Array(256 * 1024);
    try {
      for (;;) await peer.conn.write(chunk);
    } catch {
      // Closed at the end of the test.
    }
  })();
  await delay(3000);
  // The handler read a few pieces; the server took little more than
  // receiveHighWaterMark and a read (1 MiB) from the socket, not all the
  // peer could write in 3 s.
  assert.ok(read > 0, "the handler read pieces");
  const received = server.stats().bytesReceived;
  assert.ok(received < 8 * MIB, `the server read ${received} bytes`);
  peer.close();
  await writing;
});

Deno.test("serve({streamMessages}) errors a message cut by the peer's close frame at once, so that the handler comes back and the close is answered", async () => {
  const stateAtError = Promise.withResolvers<string>();
  await using server = serve(
    { ...LOCAL, streamMessages: true },
    async (socket) => {
      for await (const message of socket.streams()) {
        await pieces(message.readable).catch((error) => {
          assert.ok(error instanceof ConnectionClosedError);
          stateAtError.resolve(socket.state);
        });
      }
    },
  );
  using peer = await rawHandshake(server.addr);
  await peer.write(frame(OP.text, new TextEncoder().encode("hello")));
  await peer.write(
    frame(OP.text, new TextEncoder().encode("unfinished"), { fin: false }),
  );
  // RFC 6455 §5.4: a control frame may come between fragments.
  await peer.write(frame(OP.close, closePayload(4001, "bye")));
  // The stream errored while the closing handshake was still under way,
  // not once the socket had closed.
  assert.notEqual(
    await withTimeout(stateAtError.promise, DEADLINE, "the stream error"),
    "closed",
  );
  const { code } = await withTimeout(peer.readClose(), DEADLINE, "the close");
  assert.equal(code, 4001);
});

Deno.test("serve({streamMessages}) closes with 1008 'messages not read' a socket whose handler never takes its streams", async () => {
  await using server = serve(
    { ...LOCAL, streamMessages: true, closeTimeout: 500 },
    async (socket) => {
      await socket.closed; // never calls streams()
    },
  );
  await using client = await NpmClient.connect(wsUrl(server.addr));
  client.send(new Uint8Array(3_000_000));
  const closed = await withTimeout(client.closed, DEADLINE, "the close");
  assert.deepEqual([closed.code, closed.reason], [1008, "messages not read"]);
});

Deno.test("serve({streamMessages}) socket.readable is a TypeError, as iteration is: it would hand out streams typed as messages", async () => {
  const checked = Promise.withResolvers<unknown>();
  await using server = serve(
    { ...LOCAL, streamMessages: true },
    (socket) => {
      try {
        socket.readable;
        checked.resolve(null);
      } catch (error) {
        checked.resolve(error);
      }
    },
  );
  await using _client = await NpmClient.connect(wsUrl(server.addr));
  const error = await withTimeout(checked.promise, DEADLINE, "the check");
  assert.ok(error instanceof TypeError);
  assert.match(error.message, /iterate socket\.streams\(\)/);
});

Deno.test("serve({streamMessages}) fails invalid UTF-8 mid-stream with 1007 and errors the stream", async () => {
  const streamError = Promise.withResolvers<unknown>();
  const tracker = new SocketTracker();
  await using server = serve(
    { ...LOCAL, streamMessages: true },
    tracker.wrap(async (socket) => {
      for await (const message of socket.streams()) {
        await pieces(message.readable).catch(streamError.resolve);
      }
    }),
  );
  using peer = await rawHandshake(server.addr);
  await peer.write(frame(OP.text, new TextEncoder().encode("ok"), {
    fin: false,
  }));
  await peer.write(frame(OP.continuation, new Uint8Array([0xff]), {
    fin: false,
  }));
  const close = await peer.readClose();
  assert.equal(close.code, 1007);
  const error = await withTimeout(streamError.promise, DEADLINE, "the error");
  assert.ok(error instanceof ConnectionClosedError, String(error));
  assert.equal((await tracker.closed(peer.port)).code, 1007);
});

Deno.test("serve({streamMessages}) stops reading while a stream is not read, then delivers everything", async () => {
  const size = 4 * 1024 * 1024;
  const start = Promise.withResolvers<void>();
  const total = Promise.withResolvers<number>();
  await using server = serve(
    { ...LOCAL, streamMessages: true, receiveHighWaterMark: 64 * 1024 },
    async (socket) => {
      for await (const message of socket.streams()) {
        await start.promise;
        let bytes = 0;
        for await (
          const piece of message.readable as ReadableStream<Uint8Array>
        ) {
          bytes += piece.length;
        }
        total.resolve(bytes);
        break;
      }
    },
  );
  await using client = await NpmClient.connect(wsUrl(server.addr));
  client.send(pattern(size));
  // The server holds at most the stream's high-water mark plus one read.
  await new Promise((resolve) => setTimeout(resolve, 200));
  const held = server.stats().bytesReceived;
  assert.ok(held < size / 2, `the server read ${held} of ${size} bytes`);
  start.resolve();
  assert.equal(await withTimeout(total.promise, DEADLINE, "the message"), size);
});

/** A handler that cancels its first incoming stream and hands on the next. */
function cancelingTheFirst(next: PromiseWithResolvers<IncomingStream>) {
  return async (socket: Socket) => {
    let first = true;
    for await (const message of socket.streams()) {
      if (first) {
        first = false;
        await message.readable.cancel();
        continue;
      }
      next.resolve(message);
      await pieces(message.readable);
    }
  };
}

Deno.test("serve({streamMessages}): canceling a stream discards the rest of that message, the next one arrives", async () => {
  const next = Promise.withResolvers<IncomingStream>();
  await using server = serve(
    { ...LOCAL, streamMessages: true },
    cancelingTheFirst(next),
  );
  using peer = await rawHandshake(server.addr);
  await peer.write(frame(OP.binary, pattern(10), { fin: false }));
  await peer.write(frame(OP.continuation, pattern(10)));
  await peer.write(frame(OP.text, new TextEncoder().encode("second")));
  const message = await withTimeout(next.promise, DEADLINE, "the second");
  assert.equal(message.type, "text");
});

Deno.test("serve({streamMessages}): canceling a stream still arriving (larger than its buffer) does not stop reading; the next message arrives", async () => {
  const next = Promise.withResolvers<IncomingStream>();
  await using server = serve(
    { ...LOCAL, streamMessages: true, maxPayload: 16 * 1024 * 1024 },
    cancelingTheFirst(next),
  );
  await using client = await NpmClient.connect(wsUrl(server.addr));
  // Several times the stream's high-water mark: most of it arrives after
  // the cancel.
  client.send(pattern(4 * 1024 * 1024));
  client.send("second");
  const message = await withTimeout(next.promise, DEADLINE, "the second");
  assert.equal(message.type, "text");
});

Deno.test("Socket iteration and streams() are exclusive, each with a clear TypeError", async () => {
  const errors = Promise.withResolvers<unknown[]>();
  await using server = serve(LOCAL, (socket) => {
    const found: unknown[] = [];
    try {
      socket.streams();
    } catch (error) {
      found.push(error);
    }
    errors.resolve(found);
  });
  await using streaming = serve(
    { ...LOCAL, streamMessages: true },
    (socket) => {
      assert.throws(() => socket[Symbol.asyncIterator](), TypeError);
    },
  );
  await using client = await NpmClient.connect(wsUrl(server.addr));
  await using other = await NpmClient.connect(wsUrl(streaming.addr));
  const [error] = await withTimeout(errors.promise, DEADLINE, "the errors");
  assert.ok(error instanceof TypeError);
  assert.match((error as Error).message, /streamMessages/);
  await client.closed;
  await other.closed;
});

Deno.test("a reply sent while the peer's close frame waits behind a message streaming out is sent before the answering close frame, not accepted and dropped", async () => {
  const received: unknown[] = [];
  const go = Promise.withResolvers<void>();
  const closing = Promise.withResolvers<void>();
  await using server = serve(LOCAL, async (socket) => {
    const loop = (async () => {
      for await (const message of socket) received.push(message);
    })();
    await go.promise;
    closing.resolve();
    await socket.close(1000, "bye");
    await loop;
  });
  const client = await connect(`ws://127.0.0.1:${server.addr.port}/`);
  // The client's loop waits for messages: the close frame's answer is
  // owed at once, and waits for the stream.
  const loop = (async () => {
    for await (const _ of client) { /* none */ }
  })();
  const release = Promise.withResolvers<void>();
  const streaming = client.sendStream((async function* () {
    yield "a";
    await release.promise;
    yield "b";
  })());
  go.resolve();
  await withTimeout(closing.promise, DEADLINE, "the server closing");
  await delay(200); // the close frame has arrived
  assert.equal(client.state, "open", "open for replies");
  await client.send("reply");
  assert.equal(client.trySend("another"), "sent");
  release.resolve();
  await withTimeout(streaming, DEADLINE, "the stream");
  await withTimeout(loop, DEADLINE, "the client's loop");
  const info = await withTimeout(client.closed, DEADLINE, "closed");
  assert.equal(info.wasClean, true);
  await waitUntil(() => received.length === 3, "what the client sent");
  assert.deepEqual(received, ["ab", "reply", "another"]);
});

Deno.test("a sendStream() queued behind one that close() cuts short is cancelled without its source being pulled, and a failing source leaves no unhandled rejection", async () => {
  await using server = serve(LOCAL, async (socket) => {
    for await (const _ of socket) { /* read on */ }
  });
  const client = await connect(`ws://127.0.0.1:${server.addr.port}/`);
  let pulled = false;
  let returned = false;
  const first = client.sendStream((async function* () {
    yield "a";
    await new Promise(() => {}); // stalls for good
  })());
  const second = client.sendStream({
    [Symbol.asyncIterator]: () => ({
      next: () => {
        pulled = true;
        return Promise.reject(new Error("source failed"));
      },
      return: () => {
        returned = true;
        return Promise.resolve({ done: true as const, value: undefined });
      },
    }),
  });
  await withTimeout(
    client.close(1000, "", { streamGrace: 0 }),
    DEADLINE,
    "close()",
  );
  await assert.rejects(first, ConnectionClosedError);
  await assert.rejects(second, ConnectionClosedError);
  assert.equal(pulled, false, "the queued source was not pulled");
  assert.equal(returned, true, "the queued source was let go");
});

Deno.test("the answer to the peer's close frame comes within closeTimeout though the handler keeps starting streams that never end (a stream that starts after the cut is cut as it starts)", async () => {
  const failures: string[] = [];
  await using server = serve(
    { ...LOCAL, closeTimeout: 400 },
    async (socket) => {
      for await (const message of socket) {
        // A slow upstream: the first piece after a while, then no end.
        await socket.sendStream((async function* () {
          await delay(1000);
          for (let i = 0;; i++) {
            yield `piece ${i} of the reply to ${message}`;
            await delay(50);
          }
        })()).catch((error) => failures.push(`${message}: ${error.name}`));
      }
    },
  );
  await using client = await NpmClient.connect(wsUrl(server.addr));
  client.send("1");
  client.send("2");
  const seen = await client.close(1000);
  assert.equal(seen.code, 1000);
  assert.deepEqual(failures, [
    "1: ConnectionClosedError",
    "2: ConnectionClosedError",
  ]);
});

Deno.test("Duplex to Duplex with equal closeTimeouts: a close() while the peer streams a message whose source stalls completes cleanly, the answer cut at half the timeout", async () => {
  const closeTimeout = 1000;
  const outcome = Promise.withResolvers<CloseInfo>();
  await using server = serve({ ...LOCAL, closeTimeout }, async (socket) => {
    const loop = (async () => {
      for await (const _ of socket) { /* read on */ }
    })();
    await delay(100);
    outcome.resolve(await socket.close(4000, "server bye"));
    await loop;
  });
  const client = await connect(`ws://127.0.0.1:${server.addr.port}/`, {
    closeTimeout,
  });
  const loop = (async () => {
    for await (const _ of client) { /* read on */ }
  })();
  const streaming = client.sendStream((async function* () {
    yield "a";
    await new Promise(() => {}); // stalls for good
  })());
  await assert.rejects(streaming, ConnectionClosedError);
  await withTimeout(loop, DEADLINE, "the client's loop");
  const closed = await withTimeout(outcome.promise, DEADLINE, "close()");
  assert.deepEqual(closed, {
    code: 4000,
    reason: "server bye",
    wasClean: true,
  });
  assert.equal((await client.closed).wasClean, true);
});

Deno.test("what is queued behind a stream that the answer to the peer's close cuts before it began is dropped with it: the peer gets a prefix of what was sent, then the close frame", async () => {
  const outcomes = Promise.withResolvers<string[]>();
  await using server = serve(
    { ...LOCAL, closeTimeout: 1000 },
    async (socket) => {
      for await (const _ of socket) {
        const settled = (p: Promise<void>) =>
          p.then(() => "resolved", (error) => error.name);
        // 1: gives nothing, ever; 2: ready at once; 3: a plain message.
        const first = socket.sendStream((async function* () {
          await new Promise(() => {});
          yield "x";
        })());
        const second = socket.sendStream(["2a", "2b"]);
        // A reply ready after the peer's close frame has arrived.
        await delay(150);
        // (Below the high-water mark, send() resolves at once: the
        // socket is ready for more.)
        socket.send("3");
        outcomes.resolve(Promise.all([first, second].map(settled)));
      }
    },
  );
  using peer = await rawHandshake(server.addr);
  await peer.write(frame(OP.text, "go"));
  await delay(50);
  await peer.write(frame(OP.close, closePayload(1000)));
  const { code, before } = await withTimeout(
    peer.readClose(),
    DEADLINE,
    "the answer",
  );
  assert.equal(code, 1000);
  // Neither 2 nor 3 without 1.
  assert.deepEqual(before, []);
  assert.deepEqual(await outcomes.promise, [
    "ConnectionClosedError",
    "ConnectionClosedError",
  ]);
});

Deno.test("a peer that sends its close frame and then reads nothing, while a stream bigger than the socket buffers goes out to it, is let go after the close timeout without keepalive (the owed answer cannot be sent)", async () => {
  const closed = Promise.withResolvers<CloseInfo>();
  // Without keepalive: its write-stall check would let the peer go, after
  // pingInterval + pongTimeout.
  await using server = serve(
    { ...LOCAL, closeTimeout: 400, pingInterval: 0 },
    async (socket) => {
      socket.closed.then(closed.resolve);
      for await (const _ of socket) {
        const piece = new Uint8Array(1024 * 1024);
        socket.sendStream((function* () {
          for (let i = 0; i < 64; i++) yield piece;
        })()).catch(() => {});
      }
    },
  );
  using peer = await rawHandshake(server.addr);
  await peer.write(
    concat(
      frame(OP.text, "hi"),
      frame(OP.close, closePayload(1000)),
    ),
  );
  // Reads nothing more.
  const info = await withTimeout(closed.promise, DEADLINE, "closed");
  assert.equal(info.wasClean, false);
  assert.equal(server.stats().openConnections, 0);
});

Deno.test("ping() rejects once the socket is closing, close frame sent or still waiting behind a stream", async () => {
  const result = Promise.withResolvers<[string, string]>();
  await using server = serve(LOCAL, async (socket) => {
    socket.sendStream((async function* () {
      yield "a";
      await new Promise(() => {}); // stalls
    })()).catch(() => {});
    socket.close(1000).catch(() => {});
    const state = socket.state;
    result.resolve([
      state,
      await socket.ping().then(() => "resolved", (error) => error.name),
    ]);
  });
  await using _client = await NpmClient.connect(wsUrl(server.addr));
  assert.deepEqual(await result.promise, ["closing", "ConnectionClosedError"]);
});
