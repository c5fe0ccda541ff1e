import assert from "node:assert/strict";
import { NpmClient } from "../server/_helpers.ts";
import { ExampleProcess } from "./_process.ts";

const SCRIPT = new URL("../../examples/cluster.ts", import.meta.url).pathname;
const WORKERS = 3;
// SO_REUSEPORT spreads connections by a hash of their addresses; with this
// many tries, all landing on one worker of three is practically impossible.
const MAX_CLIENTS = 40;

interface Welcomed {
  client: NpmClient;
  worker: number;
}

Deno.test("examples/cluster.ts: a message sent through one worker reaches clients on the other workers", async () => {
  await using cluster = new ExampleProcess(
    ["-A", "--unstable-net"],
    SCRIPT,
    ["--port", "0", "--workers", String(WORKERS), "--hostname", "127.0.0.1"],
  );
  const [, port] = await cluster.waitForLine(
    /^cluster ready: 3 workers on port (\d+)$/,
  );
  assert.equal(
    cluster.lines.filter((line) => line.includes("listening on")).length,
    WORKERS,
  );

  const clients: Welcomed[] = [];
  try {
    const workers = () => new Set(clients.map(({ worker }) => worker));
    while (workers().size < 2 && clients.length < MAX_CLIENTS) {
      const client = await NpmClient.connect(`ws://127.0.0.1:${port}/`);
      const welcome = JSON.parse(await client.next("the welcome") as string);
      assert.equal(welcome.type, "welcome");
      clients.push({ client, worker: welcome.worker });
    }
    assert.ok(
      workers().size >= 2,
      `${clients.length} connections all landed on worker ${[...workers()]}`,
    );

    const sender = clients.at(-1)!;
    sender.client.send("hello, cluster");
    const expected = {
      type: "message",
      worker: sender.worker,
      text: "hello, cluster",
    };
    for (const { client } of clients) {
      assert.deepEqual(
        JSON.parse(await client.next("the chat line") as string),
        expected,
      );
    }
    assert.ok(
      clients.some(({ worker }) => worker !== sender.worker),
      "some receivers are on another worker",
    );
  } finally {
    // A graceful shutdown closes every client with 1001.
    const status = await cluster.stop("SIGTERM");
    for (const { client } of clients) {
      assert.equal((await client.close()).code, 1001);
    }
    assert.equal(status.code, 0, cluster.stderr);
  }
  assert.ok(cluster.lines.includes("Closed."));
});

Deno.test("examples/cluster.ts: --port 0 puts every worker on one free port, and a second cluster on that port is refused", async () => {
  await using cluster = new ExampleProcess(
    ["-A", "--unstable-net"],
    SCRIPT,
    ["--port", "0", "--workers", "2", "--hostname", "127.0.0.1"],
  );
  const [, port] = await cluster.waitForLine(
    /^cluster ready: 2 workers on port (\d+)$/,
  );
  assert.notEqual(port, "0");
  assert.deepEqual(
    cluster.lines.filter((line) => line.includes("listening on")).map((line) =>
      line.replace(/^worker \d+ /, "")
    ),
    Array(2).fill(`listening on ws://127.0.0.1:${port}`),
  );

  // An IPv6 address goes in brackets.
  await using ipv6 = new ExampleProcess(
    ["-A", "--unstable-net"],
    SCRIPT,
    ["--port", "0", "--workers", "1", "--hostname", "::1"],
  );
  const [, port6] = await ipv6.waitForLine(
    /^cluster ready: 1 workers on port (\d+)$/,
  );
  assert.ok(
    ipv6.lines.includes(`worker 0 listening on ws://[::1]:${port6}`),
    ipv6.lines.join("\n"),
  );
  assert.equal((await ipv6.stop("SIGTERM")).code, 0, ipv6.stderr);

  // Without the check, the second cluster would bind with reusePort too and
  // take half of the new connections into a chat of its own.
  await using second = new ExampleProcess(
    ["-A", "--unstable-net"],
    SCRIPT,
    ["--port", port, "--workers", "1", "--hostname", "127.0.0.1"],
  );
  const status = await second.exited();
  assert.equal(status.code, 1);
  assert.match(second.stderr, new RegExp(`Port ${port} is in use`));
  assert.equal(second.lines.length, 0);
  assert.equal((await cluster.stop("SIGTERM")).code, 0, cluster.stderr);
});
