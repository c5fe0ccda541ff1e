import assert from "node:assert/strict";
import { WebSocket as WsClient } from "ws";

const ROOT = new URL("../../", import.meta.url);

/**
 * Starts an example on 127.0.0.1, waits for the port it prints, and stops it
 * at the end.
 */
async function startExample(file: string, pattern: RegExp, root = ROOT) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL(file, root).href,
      "--port",
      "0",
      "--hostname",
      "127.0.0.1",
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let output = "";
  const deadline = setTimeout(() => child.kill("SIGKILL"), 20_000);
  while (!pattern.test(output)) {
    const { value, done } = await reader.read();
    if (done) break;
    output += value;
  }
  clearTimeout(deadline);
  const match = pattern.exec(output);
  assert.ok(match, `${file} printed no URL: ${output}`);
  return {
    port: Number(match[1]),
    async stop() {
      child.kill("SIGINT");
      const rest = reader.read().then(async function drain(r): Promise<void> {
        if (!r.done) await reader.read().then(drain);
      });
      const status = await child.status;
      await rest.catch(() => {});
      await child.stderr.cancel();
      return status;
    },
  };
}

async function echoOnce(url: string, message: string): Promise<string> {
  const client = new WsClient(url);
  try {
    await new Promise((resolve, reject) => {
      client.once("open", resolve);
      client.once("error", reject);
    });
    const reply = new Promise<string>((resolve) =>
      client.once("message", (data: Uint8Array) => resolve(String(data)))
    );
    client.send(message);
    return await reply;
  } finally {
    const closed = new Promise((resolve) => client.once("close", resolve));
    client.close();
    await closed;
  }
}

/** The page at http://127.0.0.1:port/, which must be there. */
async function page(port: number): Promise<string> {
  using client = Deno.createHttpClient({});
  const response = await fetch(`http://127.0.0.1:${port}/`, { client });
  assert.equal(response.status, 200);
  return await response.text();
}

Deno.test("examples/echo.ts listens where --hostname says, prints that URL, echoes, and shuts down on SIGINT", async () => {
  const example = await startExample(
    "examples/echo.ts",
    /^Echo server on ws:\/\/127\.0\.0\.1:(\d+)$/m,
  );
  try {
    assert.equal(
      await echoOnce(`ws://127.0.0.1:${example.port}/`, "hello"),
      "hello",
    );
  } finally {
    const status = await example.stop();
    assert.equal(status.code, 0);
  }
});

Deno.test("examples/static.ts serves files and a WebSocket on one port, where --hostname says", async () => {
  const example = await startExample(
    "examples/static.ts",
    /^Serving .+ on http:\/\/127\.0\.0\.1:(\d+)\/$/m,
  );
  try {
    assert.match(await page(example.port), /<title>Duplex echo<\/title>/);
    assert.equal(
      await echoOnce(`ws://127.0.0.1:${example.port}/echo`, "hi"),
      "hi",
    );
  } finally {
    await example.stop();
  }
});

Deno.test("examples/chat/server.ts serves its page and chat where --hostname says", async () => {
  const example = await startExample(
    "examples/chat/server.ts",
    /^Chat on http:\/\/127\.0\.0\.1:(\d+)\/$/m,
  );
  try {
    assert.match(await page(example.port), /<title>Duplex chat<\/title>/);
    const reply = await echoOnce(
      `ws://127.0.0.1:${example.port}/`,
      JSON.stringify({ type: "say", text: "hi" }),
    );
    assert.deepEqual(JSON.parse(reply), {
      type: "error",
      message: "Join a room first",
    });
  } finally {
    assert.equal((await example.stop()).code, 0);
  }
});

Deno.test("examples/static.ts and examples/chat/server.ts serve their pages from a checkout whose path has a space and a non-ASCII letter", async () => {
  // Their folders come from import.meta.url: a URL's pathname would keep
  // "%20" and "%C3%BC", and name no folder.
  const base = await Deno.makeTempDir({ prefix: "duplex examples ü " });
  try {
    for (const entry of ["mod.ts", "src", "examples"]) {
      await new Deno.Command("cp", {
        args: ["-R", new URL(entry, ROOT).pathname, base],
      }).output();
    }
    const root = new URL(`file://${encodeURI(base)}/`);
    for (
      const [file, pattern, title] of [
        [
          "examples/static.ts",
          /^Serving .+ on http:\/\/127\.0\.0\.1:(\d+)\/$/m,
          "Duplex echo",
        ],
        [
          "examples/chat/server.ts",
          /^Chat on http:\/\/127\.0\.0\.1:(\d+)\/$/m,
          "Duplex chat",
        ],
      ] as const
    ) {
      const example = await startExample(file, pattern, root);
      try {
        assert.match(
          await page(example.port),
          new RegExp(`<title>${title}</title>`),
        );
      } finally {
        await example.stop();
      }
    }
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("examples reject a bad command line with exit code 2 and a message, not a stack trace", async () => {
  const cases: [string, string[], RegExp][] = [
    [
      "examples/echo.ts",
      ["--port="],
      /--port must be an integer from 0 to 65535, got ""/,
    ],
    // Not a silent 0.0.0.0 for a mistyped --hostname.
    ["examples/echo.ts", ["--host", "127.0.0.1"], /Unknown option '--host'/],
    ["examples/static.ts", ["--prot", "1"], /Unknown option '--prot'/],
    [
      "examples/static.ts",
      ["--root", "/nonexistent"],
      /"root" must be a directory, got "\/nonexistent"/,
    ],
    [
      "examples/chat/server.ts",
      ["--port=x"],
      /--port must be an integer from 0 to 65535, got "x"/,
    ],
    [
      "examples/echo.ts",
      ["--hostname="],
      /--hostname must be an IP address or host name, such as 127\.0\.0\.1 or ::, got ""/,
    ],
    [
      "examples/static.ts",
      ["--hostname", "999.1.1.1"],
      /--hostname must be an IP address or host name, such as 127\.0\.0\.1 or ::, got "999\.1\.1\.1"\nusage: static\.ts/,
    ],
    [
      "examples/chat/server.ts",
      ["--hostname", "not a host"],
      /--hostname must be an IP address or host name, such as 127\.0\.0\.1 or ::, got "not a host"/,
    ],
    // Not a silent 0.0.0.0, 8765, or an option ignored.
    [
      "examples/cluster.ts",
      ["--hostname"],
      /argument missing\nusage: cluster\.ts/,
    ],
    ["examples/cluster.ts", ["--port"], /argument missing/],
    ["examples/cluster.ts", ["--prot", "5"], /Unknown option '--prot'/],
    [
      "examples/cluster.ts",
      ["--hostname", "not a host"],
      /--hostname must be an IP address or host name/,
    ],
    [
      "examples/cluster.ts",
      ["--workers", "0"],
      /--workers must be an integer from 1 to 1024, got "0"/,
    ],
  ];
  await Promise.all(cases.map(async ([file, args, message]) => {
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL(file, ROOT).pathname, ...args],
      stdout: "null",
      stderr: "piped",
      // One that serves instead of refusing is stopped, and fails.
      signal: AbortSignal.timeout(20_000),
    }).output();
    const text = new TextDecoder().decode(stderr);
    assert.equal(code, 2, `${file} ${args.join(" ")}: ${text}`);
    assert.match(text, message);
    assert.doesNotMatch(text, /\n\s+at /, "no stack trace");
  }));
});

Deno.test("the server examples say in one line, with exit code 1, that their port is in use", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  await Promise.all(
    ["examples/echo.ts", "examples/static.ts", "examples/chat/server.ts"].map(
      async (file) => {
        const { code, stderr } = await new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            new URL(file, ROOT).pathname,
            "--port",
            String(port),
            "--hostname",
            "127.0.0.1",
          ],
          stdout: "null",
          stderr: "piped",
          signal: AbortSignal.timeout(20_000),
        }).output();
        const text = new TextDecoder().decode(stderr);
        assert.equal(code, 1, `${file}: ${text}`);
        assert.match(
          text,
          new RegExp(
            `^Cannot serve on 127\\.0\\.0\\.1:${port}: .+: stop what uses it, or pick another --port\n$`,
          ),
          file,
        );
      },
    ),
  );
});

Deno.test("every server example takes its port from PORT when --port is not given, and refuses a bad one", async () => {
  const examples: [string, string[], RegExp][] = [
    // No --hostname: every interface, and said so.
    ["examples/echo.ts", [], /ws:\/\/localhost:(\d+) \(all interfaces\)/],
    [
      "examples/static.ts",
      [],
      /http:\/\/localhost:(\d+)\/ \(all interfaces\)/,
    ],
    [
      "examples/chat/server.ts",
      [],
      /http:\/\/localhost:(\d+)\/ \(all interfaces\)/,
    ],
    [
      "examples/cluster.ts",
      ["--workers", "1", "--hostname", "127.0.0.1"],
      /cluster ready: 1 workers on port (\d+)/,
    ],
  ];
  for (const [file, args, pattern] of examples) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    listener.close();
    const command = (PORT: string, stdout: "piped" | "null") =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--unstable-net",
          new URL(file, ROOT).pathname,
          ...args,
        ],
        env: { PORT },
        stdout,
        stderr: stdout === "piped" ? "null" : "piped",
      });
    const child = command(String(port), "piped").spawn();
    const deadline = setTimeout(() => child.kill("SIGKILL"), 20_000);
    let output = "";
    try {
      for await (
        const text of child.stdout.pipeThrough(new TextDecoderStream())
      ) {
        output += text;
        if (pattern.test(output)) break;
      }
    } finally {
      child.kill("SIGINT");
      await child.status;
      clearTimeout(deadline);
    }
    assert.equal(pattern.exec(output)?.[1], String(port), `${file}: ${output}`);

    const bad = await command("http", "null").output();
    assert.equal(bad.code, 2, file);
    assert.match(
      new TextDecoder().decode(bad.stderr),
      // Named as the user gave it.
      /^PORT must be an integer from 0 to 65535, got "http"/,
      file,
    );
  }
});
