import assert from "node:assert/strict";
import { type CloseInfo, type Message, serve } from "../../mod.ts";
import {
  DEADLINE,
  deadline,
  runCli,
  runPipeline,
  spawnCli,
} from "./_helpers.ts";
import { main } from "../../src/cli/main.ts";
import { rawServer } from "../client/_helpers.ts";

/** A server that records what each connection received and how it closed. */
function recordingServer() {
  const connections: { messages: Message[]; closed: Promise<CloseInfo> }[] = [];
  const server = serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
    const record = { messages: [] as Message[], closed: socket.closed };
    connections.push(record);
    for await (const message of socket) record.messages.push(message);
  });
  return {
    server,
    url: `ws://127.0.0.1:${server.addr.port}/inbox`,
    connections,
    async received(): Promise<Message[]> {
      assert.equal(connections.length, 1);
      const info = await deadline(connections[0].closed, DEADLINE, "close");
      assert.deepEqual(info, { code: 1000, reason: "", wasClean: true });
      return connections[0].messages;
    },
  };
}

Deno.test("duplex send sends each argument as a text message and closes with 1000", async () => {
  const recorder = recordingServer();
  await using _ = recorder.server;
  const { code, stdout, stderr } = await runCli([
    "send",
    recorder.url,
    "hello",
    "wörld",
    "",
  ]);
  assert.equal(code, 0, stderr);
  assert.equal(stdout, "");
  assert.equal(stderr, "");
  assert.deepEqual(await recorder.received(), ["hello", "wörld", ""]);
});

Deno.test("duplex send takes an http: URL for ws:, as connect() does", async () => {
  const recorder = recordingServer();
  await using _ = recorder.server;
  const url = recorder.url.replace(/^ws:/, "http:");
  const { code, stderr } = await runCli(["send", url, "hello"]);
  assert.equal(code, 0, stderr);
  assert.deepEqual(await recorder.received(), ["hello"]);
});

Deno.test("duplex send --binary sends the arguments' UTF-8 bytes", async () => {
  const recorder = recordingServer();
  await using _ = recorder.server;
  const { code } = await runCli(["send", recorder.url, "--binary", "hi", "é"]);
  assert.equal(code, 0);
  assert.deepEqual(await recorder.received(), [
    new Uint8Array([0x68, 0x69]),
    new Uint8Array([0xc3, 0xa9]),
  ]);
});

Deno.test("duplex send sends stdin line by line, or whole with --binary", async () => {
  {
    const recorder = recordingServer();
    await using _ = recorder.server;
    const { code } = await runCli(["send", recorder.url], {
      stdin: "first line\r\nsecond line\n\nlast, no newline",
    });
    assert.equal(code, 0);
    assert.deepEqual(await recorder.received(), [
      "first line",
      "second line",
      "",
      "last, no newline",
    ]);
  }
  {
    const recorder = recordingServer();
    await using _ = recorder.server;
    const bytes = new Uint8Array(100_000).map((_, i) => (i * 7) & 0xff);
    const { code } = await runCli(["send", recorder.url, "--binary"], {
      stdin: bytes,
    });
    assert.equal(code, 0);
    assert.deepEqual(await recorder.received(), [bytes]);
  }
});

Deno.test("duplex send --file sends a file as one message", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/note.txt`, "line 1\nline 2\n");
    await Deno.writeFile(`${dir}/blob.bin`, new Uint8Array([0xff, 0xfe, 0]));
    {
      const recorder = recordingServer();
      await using _ = recorder.server;
      const { code } = await runCli([
        "send",
        recorder.url,
        "--file",
        `${dir}/note.txt`,
      ]);
      assert.equal(code, 0);
      assert.deepEqual(await recorder.received(), ["line 1\nline 2\n"]);
    }
    {
      const recorder = recordingServer();
      await using _ = recorder.server;
      const { code } = await runCli([
        "send",
        recorder.url,
        "--file",
        `${dir}/blob.bin`,
        "--binary",
      ]);
      assert.equal(code, 0);
      assert.deepEqual(await recorder.received(), [
        new Uint8Array([0xff, 0xfe, 0]),
      ]);
    }
    // Not UTF-8 and no --binary: a usage error before connecting.
    const { code, stderr } = await runCli([
      "send",
      "ws://127.0.0.1:1",
      "--file",
      `${dir}/blob.bin`,
    ]);
    assert.equal(code, 2);
    assert.match(
      stderr,
      /is not UTF-8 text; add --binary to send it as a binary message/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("duplex send takes a reply in more frames than connect()'s default 4096 (a server that streams its answer)", async () => {
  await using server = serve(
    { port: 0, hostname: "127.0.0.1" },
    async (socket) => {
      for await (const _ of socket) {
        await socket.sendStream(
          Array.from({ length: 5000 }, () => new Uint8Array([1])),
        );
      }
    },
  );
  const { code, stderr } = await runCli([
    "send",
    `ws://127.0.0.1:${server.addr.port}`,
    "hello",
  ]);
  assert.equal(code, 0, stderr);
  assert.equal(stderr, "");
});

Deno.test("duplex send exits with 1 when the server closes with an error code", async () => {
  await using server = serve(
    { port: 0, hostname: "127.0.0.1" },
    async (socket) => {
      await socket.close(4003, "not allowed");
    },
  );
  const { code, stderr } = await runCli([
    "send",
    `ws://127.0.0.1:${server.addr.port}`,
    "hello",
  ]);
  assert.equal(code, 1);
  assert.match(stderr, /^duplex send: .*4003: not allowed/);
});

Deno.test("duplex send passes subprotocols and headers", async () => {
  let seen: { protocol: string; auth: string | null } | undefined;
  await using server = serve({
    port: 0,
    hostname: "127.0.0.1",
    protocols: ["v2"],
  }, async (socket) => {
    seen = {
      protocol: socket.protocol,
      auth: socket.headers.get("authorization"),
    };
    for await (const _ of socket) { /* drain */ }
  });
  const { code, stderr } = await runCli([
    "send",
    `ws://127.0.0.1:${server.addr.port}`,
    "--protocol",
    "v1",
    "--protocol",
    "v2",
    "--header",
    "Authorization: Bearer abc",
    "x",
  ]);
  assert.equal(code, 0, stderr);
  assert.deepEqual(seen, { protocol: "v2", auth: "Bearer abc" });
});

Deno.test("duplex send reading stdin ends as soon as the server closes, without waiting for the next line", async () => {
  await using server = serve(
    { port: 0, hostname: "127.0.0.1" },
    async (socket) => {
      for await (const _ of socket) {
        await socket.close(1011, "going down");
      }
    },
  );
  await using cli = spawnCli(["send", `ws://127.0.0.1:${server.addr.port}`]);
  // One line, and stdin stays open (as with `tail -f`).
  await cli.write("first\n");
  const status = await deadline(cli.child.status, DEADLINE, "send to exit");
  assert.equal(status.code, 1);
  await cli.waitFor(/1011 \(internal error\): going down/, "stderr");
});

Deno.test("duplex send reading stdin exits with 1 when the server closes cleanly before the input ended: the rest was not sent", async () => {
  await using server = serve(
    { port: 0, hostname: "127.0.0.1" },
    async (socket) => {
      for await (const _ of socket) await socket.close(1001, "restarting");
    },
  );
  await using cli = spawnCli(["send", `ws://127.0.0.1:${server.addr.port}`]);
  await cli.write("first\n"); // and stdin stays open: more is to come
  const status = await deadline(cli.child.status, DEADLINE, "send to exit");
  assert.equal(status.code, 1);
  await cli.waitFor(/after 1 message; the rest were not sent/, "stderr");
});

Deno.test("duplex send --binary stopped by a signal while it reads stdin says so and exits with 1", async () => {
  const recording = recordingServer();
  await using _ = recording.server;
  await using cli = spawnCli(["send", recording.url, "--binary"]);
  await cli.write("part of the input"); // stdin stays open
  await new Promise((resolve) => setTimeout(resolve, 300));
  cli.signal("SIGTERM");
  // It exits on the signal alone. (finished() ends its stdin too: were
  // that first, the input would be whole, and it would connect to send it.)
  await deadline(cli.child.status, DEADLINE, "the CLI to stop");
  const { code, stderr } = await cli.finished();
  assert.equal(code, 1, stderr);
  assert.match(stderr, /stopped before the connection opened/);
  assert.equal(recording.connections.length, 0);
});

Deno.test("duplex send stops reading stdin on SIGTERM, closes with 1000 and exits with 0", async () => {
  const recording = recordingServer();
  const { url, connections } = recording;
  await using _ = recording.server;
  await using cli = spawnCli(["send", url]);
  // stdin stays open, as with `journalctl -f | duplex send`.
  await cli.write("first\n");
  // The line has arrived once the server recorded it.
  await deadline(
    (async () => {
      while (connections[0]?.messages.length !== 1) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })(),
    DEADLINE,
    "the first line",
  );
  cli.signal("SIGTERM");
  const { code, stderr } = await cli.finished();
  assert.equal(code, 0, stderr);
  assert.deepEqual(await recording.received(), ["first"]);
});

Deno.test("duplex send reading stdin holds no line once it is sent: 400 lines of 1 MiB keep the heap bounded", async () => {
  const LINE = 1024 * 1024;
  const LINES = 400;
  let received = 0;
  await using server = serve(
    { port: 0, hostname: "127.0.0.1" },
    async (socket) => {
      for await (const message of socket) {
        received += (message as string).length;
      }
    },
  );
  const line = new TextEncoder().encode("x".repeat(LINE - 1) + "\n");
  let sent = 0;
  let base = 0;
  let peak = 0;
  const stdin = new ReadableStream<Uint8Array>({
    start() {
      base = Deno.memoryUsage().heapUsed;
    },
    pull(controller) {
      peak = Math.max(peak, Deno.memoryUsage().heapUsed - base);
      if (sent++ === LINES) controller.close();
      else controller.enqueue(line.slice());
    },
  }, { highWaterMark: 0 });
  const code = await deadline(
    main(["send", `ws://127.0.0.1:${server.addr.port}`], { stdin }),
    30_000,
    "send to end",
  );
  assert.equal(code, 0);
  assert.equal(received, LINES * (LINE - 1));
  // Each line held until the input ends would be 400 MiB of strings.
  assert.ok(peak < 200 * LINE, `${peak} bytes of heap held`);
});

Deno.test("duplex send --file of 20 MB to an echo server exits with 0: the echo it discards is not held to a size limit", async () => {
  const received = Promise.withResolvers<number>();
  await using server = serve(
    { port: 0, hostname: "127.0.0.1", maxPayload: 32 * 1024 * 1024 },
    async (socket) => {
      for await (const message of socket) {
        received.resolve(message.length);
        await socket.send(message);
      }
    },
  );
  const file = await Deno.makeTempFile();
  try {
    await Deno.writeFile(file, new Uint8Array(20_000_000));
    const { code, stderr } = await runCli([
      "send",
      `ws://127.0.0.1:${server.addr.port}`,
      "--file",
      file,
      "--binary",
    ]);
    assert.equal(code, 0, stderr);
    assert.equal(stderr, "");
    assert.equal(await received.promise, 20_000_000);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("duplex send refuses a stdin line that is not UTF-8 (as --file does) after sending the lines before it, with exit code 2", async () => {
  const recorder = recordingServer();
  await using _ = recorder.server;
  const { code, stderr } = await runCli(["send", recorder.url], {
    stdin: new Uint8Array([
      ...new TextEncoder().encode("ok\n"),
      0xff,
      0xfe,
      ...new TextEncoder().encode("\nnot sent\n"),
    ]),
  });
  assert.equal(code, 2);
  assert.equal(
    stderr,
    "duplex send: line 2 is not UTF-8 text on stdin (1 line sent before it); add --binary to send all of stdin as one binary message\n",
  );
  assert.deepEqual(await recorder.received(), ["ok"]);
});

Deno.test("duplex send whose stdin cannot be read (a directory) says so and exits with 2, lines or --binary", async () => {
  const { server, connections } = recordingServer();
  const directory = await Deno.makeTempDir();
  try {
    const url = `ws://127.0.0.1:${server.addr.port}/`;
    const lines = await runPipeline(`send ${url} < "${directory}"`);
    assert.equal(lines.code, 2, lines.stderr);
    assert.match(
      lines.stderr,
      /^duplex send: cannot read stdin: Is a directory .*\(0 lines sent before it\)\n$/,
    );
    const binary = await runPipeline(`send ${url} --binary < "${directory}"`);
    assert.equal(binary.code, 2, binary.stderr);
    assert.match(
      binary.stderr,
      /^duplex send: cannot read stdin: Is a directory/,
    );
    assert.doesNotMatch(binary.stderr, /\n\s+at /, "no stack trace");
    // Lines are read once connected: that connection closed with 1000.
    assert.equal(connections.length, 1);
    assert.equal((await connections[0].closed).code, 1000);
  } finally {
    await Deno.remove(directory);
    await server.shutdown();
  }
});

Deno.test("duplex send says the connection failed, not that the server closed it, when the server broke the protocol", async () => {
  const server = rawServer(async (peer) => {
    await peer.accept();
    // A text frame with RSV1 set, no extension negotiated.
    await peer.write(new Uint8Array([0xc1, 0x01, 0x78]));
    await peer.readFrame(); // the client's 1002
  });
  try {
    // Waiting for stdin's next line when it happens.
    await using cli = spawnCli(["send", server.url]);
    await cli.waitFor(/the rest were not sent/, "stderr");
    const { code, stderr } = await cli.finished();
    assert.equal(code, 1, stderr);
    assert.match(
      stderr,
      /^duplex send: the connection failed with 1002 \(protocol error\): Frame has reserved bits 0x40 set without a negotiated extension, after 0 messages; the rest were not sent\.\n$/,
    );
  } finally {
    await server.close();
  }
});
