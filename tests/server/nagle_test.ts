// Nagle's algorithm holds a small write while earlier data is unacknowledged
// (up to the peer's delayed ACK, ~40 ms), so every write that carries frames
// or an HTTP response must go out with TCP_NODELAY set. The call is made
// before a socket's first write, not on accepting: a server connection that
// only answers a peer's close (which leaves with the FIN) never needs it.
import assert from "node:assert/strict";
import { serve } from "../../mod.ts";
import {
  closePayload,
  DEADLINE,
  delay,
  echo,
  frame,
  LOCAL,
  NpmClient,
  oneReadThenEnd,
  OP,
  rawHandshake,
  socketOver,
  waitUntil,
  withTimeout,
  wsUrl,
} from "./_helpers.ts";

/**
 * A socket over in-memory streams whose peer sends `incoming`, recording
 * the transport's `setNoDelay` calls and writes in order.
 */
function recordingSocket(
  incoming: Uint8Array,
  role: "server" | "client" = "server",
) {
  const log: string[] = [];
  const { readable, end } = oneReadThenEnd(incoming);
  const writable = new WritableStream<Uint8Array>({
    write(chunk) {
      log.push(`write ${chunk.length}`);
    },
  });
  const socket = socketOver(readable, writable, { role }, end, {
    setNoDelay: (noDelay = true) => void log.push(`setNoDelay ${noDelay}`),
  });
  return { socket, log, running: socket.run(), end };
}

Deno.test("nagle: a socket turns Nagle off once, before its first write", async () => {
  const peer = recordingSocket(
    new Uint8Array([...frame(OP.text, "one"), ...frame(OP.text, "two")]),
  );
  const writes = () => peer.log.filter((entry) => entry.startsWith("write"));
  const handled = (async () => {
    let count = 0;
    for await (const message of peer.socket) {
      await peer.socket.send(message);
      // The second echo goes out in a write of its own.
      if (++count === 1) await waitUntil(() => writes().length >= 1, "a write");
    }
  })();
  try {
    await waitUntil(() => writes().length >= 2, "two writes");
    assert.deepEqual(peer.log, ["setNoDelay true", "write 5", "write 5"]);
  } finally {
    peer.end();
    await peer.running;
    await handled;
  }
});

Deno.test("nagle: a server socket that only answers the peer's close leaves Nagle alone", async () => {
  const peer = recordingSocket(frame(OP.close, closePayload(1000)));
  for await (const _ of peer.socket) assert.fail("no message was sent");
  await peer.running;
  assert.equal((await peer.socket.closed).code, 1000);
  assert.deepEqual(peer.log, ["write 4"], "the close answer, and no call");
});

Deno.test("nagle: a client socket turns Nagle off even for its close answer", async () => {
  const closing = frame(OP.close, closePayload(1000), { mask: false });
  const peer = recordingSocket(closing, "client");
  const iterating = (async () => {
    for await (const _ of peer.socket) assert.fail("no message was sent");
  })();
  await waitUntil(() => peer.log.length >= 2, "the close answer");
  peer.end(); // the server closes the TCP connection
  await peer.running;
  await iterating;
  assert.equal(peer.log[0], "setNoDelay true");
  assert.match(peer.log[1], /^write 8$/, "a masked close frame");
});

/**
 * Counts `setNoDelay` calls on the server's side of TCP connections to
 * `port` while `body` runs (the method is patched on the prototype that
 * every `Deno.TcpConn` shares, then put back).
 */
async function countNoDelay(
  port: () => number,
  body: () => Promise<void>,
): Promise<number> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dialing = Deno.connect({
    hostname: "127.0.0.1",
    port: listener.addr.port,
  });
  const accepted = await listener.accept();
  (await dialing).close();
  accepted.close();
  listener.close();
  const prototype = Object.getPrototypeOf(accepted);
  const original = prototype.setNoDelay;
  let calls = 0;
  prototype.setNoDelay = function (this: Deno.TcpConn, noDelay?: boolean) {
    if ((this.localAddr as Deno.NetAddr).port === port()) calls++;
    return original.call(this, noDelay);
  };
  try {
    await body();
  } finally {
    prototype.setNoDelay = original;
  }
  return calls;
}

Deno.test("nagle: the server turns Nagle off for a WebSocket that sends, and for plain HTTP, not for one that only closes (npm:ws)", async () => {
  await using server = serve({
    ...LOCAL,
    fetch: () => new Response("plain"),
  }, echo);
  const port = () => server.addr.port;
  const echoing = await countNoDelay(port, async () => {
    await using client = await NpmClient.connect(wsUrl(server.addr));
    assert.equal(await client.roundTrip("hello"), "hello");
  });
  assert.equal(echoing, 1);
  const closing = await countNoDelay(port, async () => {
    const client = await NpmClient.connect(wsUrl(server.addr));
    assert.equal((await client.close(1000)).code, 1000);
    await waitUntil(
      () => server.stats().transportConnections === 0,
      "the close",
    );
  });
  assert.equal(closing, 0);
  const plain = await countNoDelay(port, async () => {
    const response = await fetch(`http://127.0.0.1:${port()}/`);
    assert.equal(await response.text(), "plain");
  });
  assert.equal(plain, 1);
});

Deno.test("nagle: shutdown() between reading a plain request's head and serving it does not crash the server (setNoDelay on a closed connection)", async () => {
  // The WebSocket's "stop" and eight plain heads arrive in one turn: the
  // handler starts shutdown, which closes the connections still reading,
  // and then their heads come back from the read.
  for (let round = 0; round < 5; round++) {
    const server = serve({
      ...LOCAL,
      fetch: () => new Response("ok"),
      logger: () => {},
    }, async (socket) => {
      for await (const message of socket) {
        if (message === "stop") server.shutdown({ timeout: 300 });
      }
    });
    await using stopper = await rawHandshake(server.addr);
    const plain: Deno.Conn[] = [];
    try {
      for (let i = 0; i < 8; i++) {
        plain.push(await Deno.connect({ ...server.addr, transport: "tcp" }));
      }
      await delay(20); // accepted, reading
      const head = new TextEncoder().encode(
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
      );
      await Promise.allSettled([
        stopper.write(frame(OP.text, "stop")),
        ...plain.map((conn) => conn.write(head)),
      ]);
      await withTimeout(server.finished, DEADLINE, "shutdown");
    } finally {
      for (const conn of plain) conn.close();
      await server.shutdown();
    }
  }
});
