// A fault inside this module while it processes a peer's input (a bug, not
// the peer's doing) must not pass for the peer going away: the connection
// closes with 1011, the error reaches the logger, and the server serves on.
import assert from "node:assert/strict";
import { WebSocketServer } from "ws";
import {
  CLOSE_REASON,
  type CloseInfo,
  connect,
  Connection,
  ConnectionClosedError,
  serve,
  type ServerLogEvent,
  type Socket,
} from "../../mod.ts";
import {
  DEADLINE,
  echo,
  LOCAL,
  NpmClient,
  Queue,
  waitUntil,
  withTimeout,
  wsUrl,
} from "./_helpers.ts";

/** Makes `Connection.prototype.receive` throw while `on` is set. */
function injectFault(): { on: boolean; error: Error } & Disposable {
  const original = Connection.prototype.receive;
  const fault = {
    on: false,
    error: new TypeError("injected fault"),
    [Symbol.dispose]: () => void (Connection.prototype.receive = original),
  };
  Connection.prototype.receive = function (this: Connection, ...args) {
    if (fault.on) throw fault.error;
    return original.apply(this, args);
  };
  return fault;
}

Deno.test("internal error: the connection closes with 1011, the logger gets the error, others go on", async () => {
  using fault = injectFault();
  const events: ServerLogEvent[] = [];
  const closes = new Queue<CloseInfo>();
  const server = serve({
    ...LOCAL,
    onListen() {},
    logger: (event) => void events.push(event),
  }, async (socket) => {
    socket.closed.then((info) => closes.push(info));
    for await (const message of socket) await socket.send(message);
  });
  try {
    await using first = await NpmClient.connect(wsUrl(server.addr, "/first"));
    assert.equal(await first.roundTrip("before"), "before");
    fault.on = true;
    first.send("this one breaks the server");
    assert.deepEqual(await closes.take("the server socket's close"), {
      code: 1011,
      reason: CLOSE_REASON.InternalError,
      wasClean: false,
    });
    fault.on = false;
    // No close frame went through the broken state: the transport closed.
    assert.equal(
      (await withTimeout(first.closed, DEADLINE, "close")).code,
      1006,
    );
    const reported = events.filter((event) => event.type === "internal-error");
    assert.equal(reported.length, 1);
    assert.equal(reported[0].error, fault.error);
    assert.equal(reported[0].url, wsUrl(server.addr, "/first"));
    assert.equal(reported[0].remoteAddr.port, first.port);

    await using second = await NpmClient.connect(wsUrl(server.addr));
    assert.equal(await second.roundTrip("after"), "after");
  } finally {
    await server.shutdown();
  }
});

Deno.test("internal error: the failed socket refuses sends, pings and closes without going back into its core", async () => {
  using fault = injectFault();
  const failed = Promise.withResolvers<Socket>();
  // The handler stays until the end: its return would close the socket.
  const release = Promise.withResolvers<void>();
  const server = serve({
    ...LOCAL,
    onListen() {},
    logger() {},
  }, async (socket) => {
    for await (const _ of socket);
    failed.resolve(socket);
    await release.promise;
  });
  try {
    await using client = await NpmClient.connect(wsUrl(server.addr));
    fault.on = true;
    client.send("breaks it");
    const socket = await withTimeout(failed.promise, DEADLINE, "the end");
    fault.on = false;
    assert.equal(socket.state, "closed");
    const sent = server.stats().messagesSent;
    assert.equal(socket.trySend("after"), "closed");
    await assert.rejects(socket.send("after"), ConnectionClosedError);
    await assert.rejects(socket.ping(), ConnectionClosedError);
    assert.equal(server.stats().messagesSent, sent);
    assert.equal((await socket.close(1000)).code, 1011);
  } finally {
    release.resolve();
    await server.shutdown();
  }
});

Deno.test("a logger that throws does not take the server down: the internal error and the close are still handled", async () => {
  using fault = injectFault();
  const types: string[] = [];
  const printed: unknown[][] = [];
  const consoleError = console.error;
  console.error = (...args: unknown[]) => void printed.push(args);
  const server = serve({
    ...LOCAL,
    onListen() {},
    logger(event) {
      types.push(event.type);
      throw new Error("the logger broke");
    },
  }, echo);
  try {
    const first = await NpmClient.connect(wsUrl(server.addr));
    fault.on = true;
    first.send("breaks it");
    await withTimeout(first.closed, DEADLINE, "the close");
    fault.on = false;
    await using second = await NpmClient.connect(wsUrl(server.addr));
    assert.equal(await second.roundTrip("still serving"), "still serving");
    assert.ok(types.includes("internal-error"), types.join());
    assert.ok(
      printed.some(([line]) =>
        line === 'duplex: the logger failed on "internal-error":'
      ),
    );
  } finally {
    await server.shutdown();
    console.error = consoleError;
  }
});

Deno.test("a logger whose promise rejects (an async logger), or that throws what cannot be shown (a revoked Proxy), does not take the process down: it is printed and the server serves on", async () => {
  const printed: string[] = [];
  const consoleError = console.error;
  // As the real console formats (and fails to format) its arguments.
  console.error = (...args: unknown[]) =>
    void printed.push(
      args.map((arg) => typeof arg === "string" ? arg : Deno.inspect(arg))
        .join(" "),
    );
  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  const server = serve({
    ...LOCAL,
    // deno-lint-ignore require-await
    async logger(event) {
      if (event.type === "open") throw new Error("log sink down");
    },
  }, echo);
  const other = serve({
    ...LOCAL,
    logger(event) {
      if (event.type === "open") throw revoked.proxy;
    },
  }, echo);
  try {
    for (const each of [server, other]) {
      await using client = await NpmClient.connect(wsUrl(each.addr));
      assert.equal(await client.roundTrip("still serving"), "still serving");
    }
    await waitUntil(() => printed.length === 2, "both printed");
    printed.sort();
    assert.match(
      printed[0],
      /^duplex: the logger failed on "open": Error: log sink down\n/,
    );
    assert.match(
      printed[1],
      /^duplex: the logger failed on "open": a value that cannot be shown \(TypeError: .*revoked.*\)$/,
    );
  } finally {
    await server.shutdown();
    await other.shutdown();
    console.error = consoleError;
  }
});

Deno.test("internal error: a client without a logger prints the error and closes with 1011", async () => {
  using fault = injectFault();
  const peer = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  // deno-lint-ignore no-explicit-any
  peer.on("connection", (ws: any) => ws.send("hello"));
  await new Promise((resolve) => peer.once("listening", resolve));
  const printed: unknown[][] = [];
  const consoleError = console.error;
  console.error = (...args: unknown[]) => void printed.push(args);
  try {
    fault.on = true;
    const socket = await connect(`ws://127.0.0.1:${peer.address().port}`);
    const info = await withTimeout(socket.closed, DEADLINE, "the close");
    fault.on = false;
    assert.equal(info.code, 1011);
    assert.equal(info.reason, CLOSE_REASON.InternalError);
    assert.deepEqual(printed, [["duplex: internal error:", fault.error]]);
  } finally {
    console.error = consoleError;
    fault.on = false;
    await new Promise((resolve) => peer.close(resolve));
  }
});
