import assert from "node:assert/strict";
import { type CloseInfo, serve } from "../../mod.ts";
import {
  DEADLINE,
  deadline,
  runCli,
  runPipeline,
  spawnCli,
} from "./_helpers.ts";
import { delay } from "../server/_helpers.ts";
import { closePayload, frame, rawServer } from "../client/_helpers.ts";

/** Echoes text; "bin" gets three bytes back; "quit" closes with 1000 "bye". */
function testServer() {
  return serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
    for await (const message of socket) {
      if (message === "bin") await socket.send(new Uint8Array([1, 2, 255]));
      else if (message === "quit") await socket.close(1000, "bye");
      else await socket.send(message);
    }
  });
}

Deno.test("duplex listen sends stdin lines and prints what arrives", async () => {
  await using server = testServer();
  await using cli = spawnCli(["listen", `ws://127.0.0.1:${server.addr.port}`]);
  await cli.waitFor(/^Connected to ws:\/\/127\.0\.0\.1:\d+\/\./m, "stderr");
  await cli.write("hello there\n");
  await cli.waitFor(/^hello there\n/m);
  await cli.write("bin\n");
  await cli.waitFor(/^\[binary, 3 bytes\] 01 02 ff\n/m);
  // stdin ends: the client closes with 1000 and exits with 0.
  const { code, stdout, stderr } = await cli.finished();
  assert.equal(code, 0, stderr);
  assert.equal(stdout, "hello there\n[binary, 3 bytes] 01 02 ff\n");
  assert.match(stderr, /Closed: 1000 \(normal closure\)\.\n$/);
});

Deno.test("duplex listen exits when the server closes, with stdin still open", async () => {
  await using server = testServer();
  await using cli = spawnCli(["listen", `ws://127.0.0.1:${server.addr.port}`]);
  await cli.waitFor(/^Connected/m, "stderr");
  await cli.write("quit\n");
  await cli.waitFor(/Closed: 1000 \(normal closure\): bye\./, "stderr");
  const { code } = await cli.finished();
  assert.equal(code, 0);
});

Deno.test("duplex listen --json prints one parseable event per line", async () => {
  await using server = testServer();
  const url = `ws://127.0.0.1:${server.addr.port}/feed`;
  await using cli = spawnCli(["listen", url, "--json"]);
  await cli.waitFor(/"type":"open"/);
  await cli.write("ünïcode\n");
  await cli.waitFor(/"kind":"text"/);
  await cli.write("bin\n");
  await cli.waitFor(/"kind":"binary"/);
  await cli.write("quit\n");
  // The server's close, before finished() ends stdin (which closes too).
  await cli.waitFor(/"type":"close"/);
  const { code, stdout } = await cli.finished();
  assert.equal(code, 0);
  const events = stdout.trimEnd().split("\n").map((line) => JSON.parse(line));
  assert.deepEqual(events, [
    { type: "open", url, protocol: "" },
    { type: "message", kind: "text", data: "ünïcode" },
    { type: "message", kind: "binary", size: 3, base64: "AQL/" },
    { type: "close", code: 1000, reason: "bye", wasClean: true },
  ]);
});

Deno.test("duplex listen --json reports a rejected handshake as an error event", async () => {
  await using server = serve({
    port: 0,
    hostname: "127.0.0.1",
    origins: ["https://good.example"],
  }, () => {});
  await using cli = spawnCli([
    "listen",
    `ws://127.0.0.1:${server.addr.port}`,
    "--json",
    "--header",
    "Origin: https://evil.example",
  ]);
  const { code, stdout } = await cli.finished();
  assert.equal(code, 1);
  const [event, ...rest] = stdout.trimEnd().split("\n").map((line) =>
    JSON.parse(line)
  );
  assert.deepEqual(rest, []);
  assert.equal(event.type, "error");
  assert.match(
    event.message,
    /^Cannot connect to ws:\/\/127\.0\.0\.1:\d+\/: the server answered 403 Forbidden instead of 101 Switching Protocols/,
  );
});

Deno.test("duplex listen exits with 1 when the server closes with an error code", async () => {
  await using server = serve(
    { port: 0, hostname: "127.0.0.1" },
    async (socket) => {
      await socket.close(4000, "go away");
    },
  );
  await using cli = spawnCli([
    "listen",
    `ws://127.0.0.1:${server.addr.port}`,
    "--json",
  ]);
  const { code, stdout } = await cli.finished();
  assert.equal(code, 1);
  const events = stdout.trimEnd().split("\n").map((line) => JSON.parse(line));
  assert.deepEqual(events.at(-1), {
    type: "close",
    code: 4000,
    reason: "go away",
    wasClean: true,
  });
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.test(`duplex listen closes with 1000 on ${signal} and exits with 0`, async () => {
    let serverSaw: Promise<unknown> = Promise.resolve();
    await using server = serve(
      { port: 0, hostname: "127.0.0.1" },
      async (socket) => {
        serverSaw = socket.closed;
        for await (const _ of socket) { /* drain */ }
      },
    );
    await using cli = spawnCli([
      "listen",
      `ws://127.0.0.1:${server.addr.port}`,
    ]);
    await cli.waitFor(/^Connected/m, "stderr");
    cli.signal(signal);
    const { code, stderr } = await cli.finished();
    assert.equal(code, 0, stderr);
    assert.deepEqual(await serverSaw, {
      code: 1000,
      reason: "",
      wasClean: true,
    });
  });
}

Deno.test("duplex listen whose output is closed early (| head -1) closes the connection cleanly and exits 0, without a crash", async () => {
  const closed = Promise.withResolvers<CloseInfo>();
  await using server = serve(
    { port: 0, hostname: "127.0.0.1" },
    async (socket) => {
      socket.closed.then(closed.resolve);
      // Lines keep coming after head has left.
      for (let i = 0; socket.state === "open"; i++) {
        await socket.send(`line ${i}`).catch(() => {});
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    },
  );
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      // stdin stays open for a while; head takes one line and leaves.
      `sleep 2 | "${Deno.execPath()}" run -A "${
        new URL("../../src/cli/main.ts", import.meta.url).pathname
      }" listen ws://127.0.0.1:${server.addr.port} | head -1`,
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const output = await deadline(child.output(), DEADLINE, "the pipeline");
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(
    new TextDecoder().decode(output.stdout).split("\n")[0],
    "line 0",
  );
  assert.doesNotMatch(stderr, /Uncaught|BrokenPipe/);
  assert.equal(
    (await deadline(closed.promise, DEADLINE, "the close")).code,
    1000,
  );
});

Deno.test("duplex listen --json whose reader left before the first line closes the connection cleanly and exits 0", async () => {
  const closed = Promise.withResolvers<CloseInfo>();
  await using server = serve({ port: 0, hostname: "127.0.0.1" }, (socket) => {
    socket.closed.then(closed.resolve);
  });
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      // The reader closes the pipe at once: the "open" line meets it.
      `sleep 2 | "${Deno.execPath()}" run -A "${
        new URL("../../src/cli/main.ts", import.meta.url).pathname
      }" listen ws://127.0.0.1:${server.addr.port} --json | { exec 0<&-; sleep 3; }`,
    ],
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const output = await deadline(child.output(), DEADLINE, "the pipeline");
  assert.doesNotMatch(new TextDecoder().decode(output.stderr), /Uncaught/);
  assert.equal(
    (await deadline(closed.promise, DEADLINE, "the close")).code,
    1000,
  );
});

Deno.test("duplex listen stopped by SIGTERM during the handshake says so and exits with 1, not by the signal", async () => {
  // Accepts TCP connections and never answers the handshake.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) accepted.push(conn);
  })();
  try {
    const { port } = listener.addr as Deno.NetAddr;
    await using cli = spawnCli(["listen", `ws://127.0.0.1:${port}`]);
    await deadline(
      (async () => {
        while (accepted.length === 0) await delay(10);
      })(),
      DEADLINE,
      "the CLI to connect",
    );
    cli.signal("SIGTERM");
    const { code, stderr } = await cli.finished();
    assert.equal(code, 1, stderr);
    assert.match(stderr, /stopped before the connection opened/);
  } finally {
    listener.close();
    await accepting;
    for (const conn of accepted) conn.close();
  }
});

Deno.test("duplex listen: a second Ctrl-C while the server does not answer the close ends it at once, with 130", async () => {
  const server = rawServer(async (peer) => {
    await peer.accept();
    await peer.readFrame(); // our close, never answered
    await delay(1_000);
  });
  try {
    await using cli = spawnCli(["listen", server.url]);
    await cli.waitFor(/^Connected/m, "stderr");
    cli.signal("SIGINT");
    await delay(200); // the close frame is on its way; its answer never comes
    cli.signal("SIGINT");
    const { code } = await cli.finished();
    assert.equal(code, 130);
  } finally {
    await server.close();
  }
});

Deno.test("duplex listen whose stdin cannot be read (a directory) says so, closes with 1000 and exits with 2", async () => {
  await using server = testServer();
  const directory = await Deno.makeTempDir();
  try {
    const url = `ws://127.0.0.1:${server.addr.port}`;
    const { code, stderr } = await runPipeline(
      `listen ${url} < "${directory}"`,
    );
    assert.equal(code, 2, stderr);
    assert.match(
      stderr,
      /\nduplex listen: cannot read stdin: Is a directory .*; closing\nClosed: 1000 \(normal closure\)\.\n$/,
    );
    const json = await runPipeline(`listen ${url} --json < "${directory}"`);
    assert.equal(json.code, 2, json.stderr);
    const events = json.stdout.trim().split("\n").map((line) =>
      JSON.parse(line)
    );
    assert.deepEqual(events.map((event) => event.type), [
      "open",
      "error",
      "close",
    ]);
    assert.match(events[1].message, /^cannot read stdin: Is a directory/);
    assert.equal(events[2].code, 1000);
    // Failing once the reader of the output has gone too: quietly.
    const late = await new Deno.Command("bash", {
      args: [
        "-c",
        `"${Deno.execPath()}" run -A "${
          new URL("./_listen_late_stdin_error.ts", import.meta.url).pathname
        }" ${url} | sleep 0.5`,
      ],
      stdout: "null",
      stderr: "piped",
      signal: AbortSignal.timeout(DEADLINE),
    }).output();
    const lateText = new TextDecoder().decode(late.stderr);
    assert.doesNotMatch(lateText, /Uncaught|BrokenPipe/);
    assert.match(lateText, /^exit 0$/m);
  } finally {
    await Deno.remove(directory);
  }
});

/** Sends a text message in 4,097 one-letter frames, then 5,000 letters in one frame. */
function largeMessagesServer() {
  return serve({ port: 0, hostname: "127.0.0.1" }, async (socket) => {
    await socket.sendStream(Array.from({ length: 4097 }, () => "a"));
    await socket.send("b".repeat(5000));
    for await (const _ of socket);
  });
}

Deno.test("duplex listen --max-fragments and --max-payload set what it accepts; past them it closes with 1009 and exits 1", async () => {
  await using server = largeMessagesServer();
  const url = `ws://127.0.0.1:${server.addr.port}`;
  // connect()'s default: a message in more than 4,096 frames is refused.
  const refused = await runCli(["listen", url]);
  assert.equal(refused.code, 1, refused.stderr);
  assert.equal(refused.stdout, "");
  assert.match(refused.stderr, /Closed: 1009 /);

  const roomy = spawnCli([
    "listen",
    url,
    "--max-fragments",
    "4097",
    "--max-payload",
    "5000",
  ]);
  await using _roomy = roomy;
  await roomy.waitFor(/^b{5000}\n/m);
  const taken = await roomy.finished();
  assert.equal(taken.code, 0, taken.stderr);
  assert.equal(taken.stdout, `${"a".repeat(4097)}\n${"b".repeat(5000)}\n`);

  const tight = await runCli([
    "listen",
    url,
    "--max-fragments=4097",
    "--max-payload=4999",
  ]);
  assert.equal(tight.code, 1, tight.stderr);
  assert.equal(tight.stdout, `${"a".repeat(4097)}\n`);
  assert.match(tight.stderr, /Closed: 1009 /);
});

Deno.test("duplex listen says which of --max-payload and --max-fragments is wrong, and exits 2", async () => {
  for (
    const [flag, value, message] of [
      [
        "--max-payload",
        "-1",
        "--max-payload must be a positive integer, got -1",
      ],
      [
        "--max-payload",
        "lots",
        '--max-payload must be a number of bytes such as 100, 64KiB or 1MiB, got "lots"',
      ],
      [
        "--max-fragments",
        "1.5",
        "--max-fragments must be a positive integer, got 1.5",
      ],
    ]
  ) {
    const { code, stderr } = await runCli([
      "listen",
      "ws://127.0.0.1:9/",
      flag,
      value,
    ]);
    assert.equal(code, 2, stderr);
    assert.match(
      stderr,
      new RegExp(`^duplex listen: ${RegExp.escape(message)}\n`),
    );
  }
});

Deno.test("duplex listen shows a server's close reason with control characters as a JSON string, so it cannot drive the terminal", async () => {
  const server = rawServer(async (peer) => {
    await peer.accept();
    await peer.write(frame(0x8, closePayload(1000, "\x1b[2Jbye\nok")));
    await peer.readFrame(); // the close reply
  });
  try {
    const { code, stderr } = await runCli(["listen", server.url]);
    assert.equal(code, 0, stderr);
    assert.match(
      stderr,
      /\nClosed: 1000 \(normal closure\): "\\u001b\[2Jbye\\nok"\.\n$/,
    );
  } finally {
    await server.close();
  }
  assert.deepEqual(server.errors, []);
});
