/**
 * The client against a peer we did not write: npm:ws's WebSocketServer.
 * npm:ws fails unmasked client frames with 1002, so every working echo here
 * also proves the client masks.
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { WebSocketServer } from "ws";
import {
  ClientHandshakeError,
  connect,
  type Message,
  type Socket,
} from "../../mod.ts";
import { deadline } from "./_helpers.ts";

/** The part of npm:ws's server-side WebSocket these tests use (ws ships no types). */
interface WebSocket {
  on(event: string, listener: (...args: never[]) => void): void;
  send(data: unknown, options?: { binary?: boolean }): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
}

interface WsServer {
  url: string;
  closes: { code: number; reason: string }[];
  errors: Error[];
  connections: WebSocket[];
  [Symbol.asyncDispose](): Promise<void>;
}

async function wsServer(
  options: ConstructorParameters<typeof WebSocketServer>[0] = {},
  onConnection: (ws: WebSocket) => void = (ws) =>
    ws.on(
      "message",
      (data: Uint8Array, isBinary: boolean) =>
        ws.send(data, { binary: isBinary }),
    ),
): Promise<WsServer> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, ...options });
  await new Promise((resolve) => wss.once("listening", resolve));
  const closes: { code: number; reason: string }[] = [];
  const connections: WebSocket[] = [];
  const errors: Error[] = [];
  wss.on("connection", (ws: WebSocket) => {
    connections.push(ws);
    ws.on("error", (error: Error) => errors.push(error));
    ws.on(
      "close",
      (code: number, reason: Uint8Array) =>
        closes.push({ code, reason: new TextDecoder().decode(reason) }),
    );
    onConnection(ws);
  });
  const { port } = wss.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}`,
    closes,
    errors,
    connections,
    async [Symbol.asyncDispose]() {
      for (const ws of wss.clients as Set<WebSocket>) ws.terminate();
      await new Promise((resolve) => wss.close(resolve));
    },
  };
}

async function nextMessage(socket: Socket): Promise<Message> {
  const { value, done } = await deadline(
    socket[Symbol.asyncIterator]().next(),
    5_000,
    "a message",
  );
  assert.equal(done, false);
  return value as Message;
}

async function until(check: () => boolean, what: string): Promise<void> {
  await deadline(
    (async () => {
      while (!check()) await new Promise((resolve) => setTimeout(resolve, 5));
    })(),
    5_000,
    what,
  );
}

Deno.test("connect echoes text and binary through npm:ws (which requires masking)", async () => {
  await using server = await wsServer();
  const socket = await connect(server.url);
  const big = new Uint8Array(200_000).map((_, i) => i & 0xff);
  for (
    const message of [
      "hello",
      "ünïcødé",
      new Uint8Array([0, 1, 255]),
      big,
      "y".repeat(70_000),
    ]
  ) {
    await socket.send(message);
    assert.deepEqual(await nextMessage(socket), message);
  }
  const info = await deadline(socket.close(), 5_000, "close");
  assert.deepEqual(info, { code: 1000, reason: "", wasClean: true });
  await until(() => server.closes.length === 1, "the server's close event");
  assert.deepEqual(server.closes, [{ code: 1000, reason: "" }]);
  assert.deepEqual(server.errors, []);
});

Deno.test("connect({ streamMessages }) streams a message from npm:ws larger than it would hold whole, piece by piece, then iterates the next", async () => {
  const size = 24 * 1024 * 1024;
  const big = new Uint8Array(size).map((_, i) => (i * 7) & 0xff);
  await using server = await wsServer({}, (ws) => {
    ws.send(big, { binary: true });
    ws.send("after", { binary: false });
  });
  const socket = await connect(server.url, {
    streamMessages: true,
    maxPayload: 32 * 1024 * 1024,
  });
  assert.throws(() => socket[Symbol.asyncIterator](), TypeError);
  const streams = socket.streams()[Symbol.asyncIterator]();
  const first = await deadline(streams.next(), 5_000, "the first stream");
  assert.equal(first.done, false);
  assert.equal(first.value.type, "binary");
  let received = 0;
  let pieces = 0;
  let mismatches = 0;
  for await (
    const piece of first.value.readable as ReadableStream<Uint8Array>
  ) {
    for (let i = 0; i < piece.length; i += 4093) {
      if (piece[i] !== big[received + i]) mismatches++;
    }
    received += piece.length;
    pieces++;
  }
  assert.equal(received, size);
  assert.equal(mismatches, 0);
  assert.ok(pieces > 1, `arrived in ${pieces} piece(s)`);
  const second = await deadline(streams.next(), 5_000, "the second stream");
  assert.equal(second.value?.type, "text");
  assert.equal(
    (await Array.fromAsync(second.value!.readable as ReadableStream<string>))
      .join(""),
    "after",
  );
  await deadline(socket.close(), 5_000, "close");
});

Deno.test("connect sends a header value's bytes 0x80-0xFF as themselves, as npm:ws reads them (obs-text, not UTF-8)", async () => {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((resolve) => wss.once("listening", resolve));
  const seen = new Promise<string>((resolve) =>
    wss.once(
      "connection",
      (ws: WebSocket, request: { headers: Record<string, string> }) => {
        resolve(request.headers["x-name"]);
        ws.close(1000);
      },
    )
  );
  try {
    const socket = await connect(
      `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
      { headers: { "x-name": "caf\u00e9" } },
    );
    assert.equal(await deadline(seen, 5_000, "the request"), "caf\u00e9");
    await deadline(socket.closed, 5_000, "the close");
  } finally {
    await new Promise((resolve) => wss.close(resolve));
  }
});

Deno.test("connect negotiates a subprotocol with npm:ws", async () => {
  await using server = await wsServer({
    handleProtocols: (offered: Set<string>) => offered.has("v2") ? "v2" : false,
  });
  const chosen = await connect(server.url, { protocols: ["v1", "v2"] });
  assert.equal(chosen.protocol, "v2");
  assert.equal(chosen.headers.get("sec-websocket-protocol"), "v2");
  await deadline(chosen.close(), 5_000, "close");

  const none = await connect(server.url, { protocols: ["v3"] });
  assert.equal(none.protocol, "");
  await deadline(none.close(), 5_000, "close");
});

Deno.test("connect sees npm:ws close with its code and reason", async () => {
  await using server = await wsServer({}, (ws) => {
    ws.send("bye soon");
    ws.close(4002, "server done");
  });
  const socket = await connect(server.url);
  const received: Message[] = [];
  for await (const message of socket) received.push(message);
  assert.deepEqual(received, ["bye soon"]);
  assert.deepEqual(await deadline(socket.closed, 5_000, "close"), {
    code: 4002,
    reason: "server done",
    wasClean: true,
  });
});

Deno.test("connect gets npm:ws's handshake rejection as a status error", async () => {
  await using server = await wsServer({
    verifyClient: (
      _info: unknown,
      done: (ok: boolean, code?: number, message?: string) => void,
    ) => done(false, 403, "Forbidden"),
  });
  await assert.rejects(connect(server.url), (error) => {
    assert.ok(error instanceof ClientHandshakeError);
    assert.equal(error.code, "UNEXPECTED_STATUS");
    assert.equal(error.status, 403);
    assert.match(error.message, /answered 403 Forbidden instead of 101/);
    return true;
  });
});

Deno.test("connect pings npm:ws and gets its pong", async () => {
  await using server = await wsServer();
  const socket = await connect(server.url);
  await deadline(
    socket.ping(new TextEncoder().encode("are you there")),
    5_000,
    "pong",
  );
  await deadline(socket.close(), 5_000, "close");
});

Deno.test("npm:ws fails an unmasked client frame with 1002 (the control for the tests above)", async () => {
  await using server = await wsServer();
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: Number(new URL(server.url).port),
  });
  try {
    await conn.write(new TextEncoder().encode(
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    ));
    // An unmasked "hi".
    await conn.write(new Uint8Array([0x81, 0x02, 0x68, 0x69]));
    let received = new Uint8Array(0);
    const buffer = new Uint8Array(1024);
    await deadline(
      (async () => {
        for (;;) {
          const n = await conn.read(buffer);
          if (n === null) break;
          received = new Uint8Array([...received, ...buffer.subarray(0, n)]);
        }
      })(),
      5_000,
      "npm:ws closing",
    );
    const text = new TextDecoder("latin1").decode(received);
    const head = text.indexOf("\r\n\r\n") + 4;
    assert.ok(text.startsWith("HTTP/1.1 101"));
    // A close frame with 1002.
    assert.deepEqual([...received.subarray(head, head + 1)], [0x88]);
    assert.deepEqual([...received.subarray(head + 2, head + 4)], [0x03, 0xea]);
    assert.match(String(server.errors[0]), /MASK must be set/);
  } finally {
    conn.close();
  }
});

Deno.test("connect() to npm:ws: a client that never takes its messages still sees the server close after more than a queue's worth of them", async () => {
  await using server = await wsServer({}, (ws) => {
    for (let i = 0; i < 2000; i++) ws.send(`news ${i}`); // over 1024
    ws.close(4000, "done");
  });
  // Only awaits `closed`, as a client that merely sends would.
  const socket = await connect(server.url, { closeTimeout: 300 });
  const info = await deadline(socket.closed, 5_000, "closed");
  assert.deepEqual(info, { code: 4000, reason: "done", wasClean: true });
});
