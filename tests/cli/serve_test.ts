import assert from "node:assert/strict";
import { connect, type Message, type Socket } from "../../mod.ts";
import { deadline, spawnCli } from "./_helpers.ts";

const LISTENING = /^Listening on (wss?):\/\/127\.0\.0\.1:(\d+) \((.*)\)$/m;

async function nextMessage(socket: Socket): Promise<Message> {
  const { value, done } = await deadline(
    socket[Symbol.asyncIterator]().next(),
    5_000,
    "a message",
  );
  assert.equal(done, false);
  return value as Message;
}

Deno.test("duplex serve --port 0 --echo prints its URL, echoes, and stops on SIGTERM", async () => {
  await using cli = spawnCli([
    "serve",
    "--port",
    "0",
    "--hostname",
    "127.0.0.1",
    "--echo",
  ]);
  const [, scheme, port, mode] = await cli.waitFor(LISTENING);
  assert.equal(scheme, "ws");
  assert.equal(mode, "echo");
  const socket = await connect(`ws://127.0.0.1:${port}/`);
  await socket.send("ping?");
  assert.equal(await nextMessage(socket), "ping?");
  await socket.send(new Uint8Array([9, 8, 7]));
  assert.deepEqual(await nextMessage(socket), new Uint8Array([9, 8, 7]));
  assert.equal((await deadline(socket.close(), 5_000, "close")).code, 1000);
  await cli.waitFor(/^close +127\.0\.0\.1:\d+ 1000$/m, "stderr");

  cli.signal("SIGTERM");
  const { code, stderr } = await cli.finished();
  assert.equal(code, 0, stderr);
  assert.match(stderr, /^open +127\.0\.0\.1:\d+ ws:\/\/127\.0\.0\.1:\d+\/$/m);
  assert.match(stderr, /Server stopped\.\n$/);
});

Deno.test("duplex serve closes open connections with 1001 on SIGINT and exits with 0", async () => {
  await using cli = spawnCli([
    "serve",
    "--port",
    "0",
    "--hostname",
    "127.0.0.1",
    "--quiet",
  ]);
  const [, , port] = await cli.waitFor(LISTENING);
  const socket = await connect(`ws://127.0.0.1:${port}`);
  cli.signal("SIGINT");
  const info = await deadline(socket.closed, 5_000, "the server's close");
  assert.equal(info.code, 1001);
  const { code, stderr } = await cli.finished();
  assert.equal(code, 0);
  assert.equal(stderr, "", "--quiet logs nothing");
});

Deno.test("duplex serve --broadcast sends each message to every client", async () => {
  await using cli = spawnCli([
    "serve",
    "--port",
    "0",
    "--hostname",
    "127.0.0.1",
    "--broadcast",
  ]);
  const [, , port, mode] = await cli.waitFor(LISTENING);
  assert.equal(mode, "broadcast");
  const alice = await connect(`ws://127.0.0.1:${port}`);
  const bob = await connect(`ws://127.0.0.1:${port}`);
  // Both are registered once the server logged both opens.
  await cli.waitFor(/^open[^\n]*\n(?:[^\n]*\n)*open/m, "stderr");
  await alice.send("hi all");
  assert.equal(await nextMessage(bob), "hi all");
  assert.equal(await nextMessage(alice), "hi all");
  await Promise.all([alice.close(), bob.close()]);
  cli.signal("SIGTERM");
  assert.equal((await cli.finished()).code, 0);
});

Deno.test("duplex serve --cert --key serves wss://", async () => {
  const certFile = new URL("../fixtures/cert.pem", import.meta.url).pathname;
  const keyFile = new URL("../fixtures/key.pem", import.meta.url).pathname;
  await using cli = spawnCli([
    "serve",
    "--port",
    "0",
    "--hostname",
    "127.0.0.1",
    "--cert",
    certFile,
    "--key",
    keyFile,
  ]);
  const [, scheme, port] = await cli.waitFor(LISTENING);
  assert.equal(scheme, "wss");
  const socket = await connect(`wss://localhost:${port}`, {
    caCerts: [await Deno.readTextFile(certFile)],
  });
  await socket.send("secret");
  assert.equal(await nextMessage(socket), "secret");
  await socket.close();
  cli.signal("SIGTERM");
  assert.equal((await cli.finished()).code, 0);
});

Deno.test({
  name:
    "duplex serve --static serves files over HTTP next to the WebSocket echo",
}, async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/index.html`, "<h1>duplex</h1>");
    await using cli = spawnCli([
      "serve",
      "--port",
      "0",
      "--hostname",
      "127.0.0.1",
      "--static",
      dir,
    ]);
    const [, , port, mode] = await cli.waitFor(LISTENING);
    assert.equal(
      mode,
      `echo, static files from ${dir} at http://127.0.0.1:${port}/`,
    );
    const page = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(page.status, 200);
    assert.equal(await page.text(), "<h1>duplex</h1>");
    const missing = await fetch(`http://127.0.0.1:${port}/nope.js`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    const socket = await connect(`ws://127.0.0.1:${port}/`);
    await socket.send("still echoes");
    assert.equal(await nextMessage(socket), "still echoes");
    await socket.close();
    cli.signal("SIGTERM");
    assert.equal((await cli.finished()).code, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("duplex serve exits with 1 when the port is taken", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const { port } = listener.addr as Deno.NetAddr;
    await using cli = spawnCli([
      "serve",
      "--port",
      String(port),
      "--hostname",
      "127.0.0.1",
    ]);
    const { code, stderr } = await cli.finished();
    assert.equal(code, 1);
    assert.match(
      stderr,
      new RegExp(
        `^duplex serve: cannot listen on 127\\.0\\.0\\.1:${port}: the address is in use\\. Pick another --port \\(0 picks a free one\\)\\.`,
      ),
    );
  } finally {
    listener.close();
  }
});
