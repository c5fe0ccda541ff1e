import assert from "node:assert/strict";
import { WebSocketServer } from "ws";
import {
  ClientHandshakeError,
  connect,
  inflateMessage,
  serve,
} from "../../mod.ts";
import { closePayload, deadline, frame, rawServer } from "./_helpers.ts";

const OFFER =
  "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits";

Deno.test("connect({perMessageDeflate}) offers no context takeover either way and compresses both ways with this server (RFC 7692)", async () => {
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, perMessageDeflate: true },
    async (socket) => {
      for await (const message of socket) await socket.send(message);
    },
  );
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`, {
    perMessageDeflate: true,
  });
  assert.equal(socket.perMessageDeflate?.serverNoContextTakeover, true);
  const text = "duplex ".repeat(2000);
  const bytes = new Uint8Array(50_000).fill(3);
  await socket.send(text);
  await socket.send(bytes);
  await socket.send("small");
  const received = [];
  for await (const message of socket) {
    received.push(message);
    if (received.length === 3) break;
  }
  assert.equal(received[0], text);
  assert.deepEqual(received[1], bytes);
  assert.equal(received[2], "small");
  // 64 KB of repetitive payload crossed the wire in a few hundred bytes.
  assert.ok(server.stats().bytesReceived < 2_000);
  await socket.close();
});

/**
 * Echoes `text` from connect() through npm:ws's server with its
 * `perMessageDeflate` setting; returns the extensions it answered.
 */
async function echoThroughNpmServer(
  perMessageDeflate: unknown,
  text: string,
): Promise<string> {
  const wss = new WebSocketServer({
    port: 0,
    host: "127.0.0.1",
    perMessageDeflate,
  });
  await new Promise((resolve) => wss.on("listening", resolve));
  wss.on("connection", (ws: {
    on(
      event: "message",
      listener: (data: unknown, binary: boolean) => void,
    ): void;
    send(data: unknown, options: { binary: boolean }): void;
  }) => ws.on("message", (data, binary) => ws.send(data, { binary })));
  try {
    const port = (wss.address() as { port: number }).port;
    const socket = await connect(`ws://127.0.0.1:${port}/`, {
      perMessageDeflate: true,
    });
    await socket.send(text);
    const { value } = await socket[Symbol.asyncIterator]().next();
    assert.equal(value, text);
    await socket.close();
    return socket.headers.get("sec-websocket-extensions") ?? "";
  } finally {
    await new Promise((resolve) => wss.close(resolve));
  }
}

Deno.test("connect({perMessageDeflate}) interoperates with npm:ws's server with deflate on", async () => {
  assert.match(
    await echoThroughNpmServer(true, "interop ".repeat(1000)),
    /^permessage-deflate/,
  );
});

Deno.test("connect({perMessageDeflate}) accepts a client window of 8 bits (RFC 7692 §7.1.2.2) and then sends uncompressed, with this server and npm:ws", async () => {
  const text = "eight bits ".repeat(1000);
  // This server, asking clients for 8 bits.
  {
    await using server = serve(
      {
        hostname: "127.0.0.1",
        port: 0,
        perMessageDeflate: { clientMaxWindowBits: 8 },
      },
      async (socket) => {
        for await (const message of socket) await socket.send(message);
      },
    );
    const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`, {
      perMessageDeflate: true,
    });
    assert.equal(socket.perMessageDeflate?.clientMaxWindowBits, 8);
    await socket.send(text);
    const { value } = await socket[Symbol.asyncIterator]().next();
    assert.equal(value, text);
    // It arrived uncompressed; the echo came back compressed.
    assert.ok(server.stats().bytesReceived > text.length);
    assert.ok(server.stats().bytesSent < text.length / 4);
    await socket.close();
  }
  // npm:ws, asking the same.
  assert.match(
    await echoThroughNpmServer({ clientMaxWindowBits: 8 }, text),
    /client_max_window_bits=8/,
  );
});

Deno.test("connect({perMessageDeflate}) sends RSV1 frames a server can inflate, and leaves small ones alone", async () => {
  let offered: string | null = null;
  let frames: { rsv1: boolean; text: string }[] = [];
  const server = rawServer(async (peer) => {
    const request = await peer.accept(
      "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n",
    );
    offered = request.get("sec-websocket-extensions");
    for (let i = 0; i < 2; i++) {
      const received = await peer.readFrame();
      const rsv1 = received.rsv === 0x40;
      const payload = rsv1
        ? inflateMessage(received.payload, 1 << 20)
        : received.payload;
      frames.push({ rsv1, text: new TextDecoder().decode(payload) });
    }
    await peer.write(frame(0x8, closePayload(1000)));
    await peer.readFrame();
  });
  try {
    const socket = await connect(server.url, { perMessageDeflate: true });
    await socket.send("x".repeat(4096));
    await socket.send("tiny");
    await deadline(socket.closed, 5_000, "the close");
  } finally {
    await server.close();
  }
  assert.deepEqual(server.errors, []);
  assert.equal(offered, OFFER);
  frames = frames.map((f) => ({ ...f, text: f.text.slice(0, 8) }));
  assert.deepEqual(frames, [
    { rsv1: true, text: "xxxxxxxx" },
    { rsv1: false, text: "tiny" },
  ]);
});

for (
  const [answer, why] of [
    ["permessage-deflate", "without the server_no_context_takeover asked for"],
    [
      "permessage-deflate; server_no_context_takeover; x_unknown",
      "with an unknown parameter",
    ],
    [
      "permessage-deflate; server_no_context_takeover, permessage-deflate; server_no_context_takeover",
      "twice",
    ],
  ]
) {
  Deno.test(`connect({perMessageDeflate}) fails a response answering the offer ${why} (RFC 7692 §7.1)`, async () => {
    const server = rawServer(async (peer) => {
      await peer.accept(`Sec-WebSocket-Extensions: ${answer}\r\n`);
      await peer.readEof();
    });
    try {
      const error = await connect(server.url, { perMessageDeflate: true })
        .then(() => undefined, (error) => error);
      assert.ok(error instanceof ClientHandshakeError, String(error));
      assert.equal(error.code, "UNEXPECTED_EXTENSION");
    } finally {
      await server.close();
    }
  });
}
