import assert from "node:assert/strict";
import { WebSocketServer } from "ws";
import {
  ClientHandshakeError,
  connect,
  type ConnectOptions,
  inflateMessage,
  serve,
} from "../../mod.ts";
import { closePayload, deadline, frame, rawServer } from "./_helpers.ts";

// The default offer: a browser's and npm:ws's.
const OFFER = "permessage-deflate; client_max_window_bits";

Deno.test("connect({perMessageDeflate}) compresses both ways with this server (RFC 7692)", async () => {
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
  client: ConnectOptions["perMessageDeflate"] = true,
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
      perMessageDeflate: client,
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
  const [answer, why, settings] of [
    [
      "permessage-deflate",
      "without the server_no_context_takeover asked for",
      { serverNoContextTakeover: true },
    ],
    [
      "permessage-deflate; server_no_context_takeover; x_unknown",
      "with an unknown parameter",
      true,
    ],
    [
      "permessage-deflate; server_no_context_takeover, permessage-deflate; server_no_context_takeover",
      "twice",
      true,
    ],
  ] as const
) {
  Deno.test(`connect({perMessageDeflate}) fails a response answering the offer ${why} (RFC 7692 §7.1)`, async () => {
    const server = rawServer(async (peer) => {
      await peer.accept(`Sec-WebSocket-Extensions: ${answer}\r\n`);
      await peer.readEof();
    });
    try {
      const error = await connect(server.url, { perMessageDeflate: settings })
        .then(() => undefined, (error) => error);
      assert.ok(error instanceof ClientHandshakeError, String(error));
      assert.equal(error.code, "UNEXPECTED_EXTENSION");
    } finally {
      await server.close();
    }
  });
}

/**
 * Sends `text` from connect() with `perMessageDeflate` to a raw server that
 * accepts the offer; returns the frame as it arrived, inflated.
 */
async function sendThroughRawServer(
  perMessageDeflate: ConnectOptions["perMessageDeflate"],
  text: string,
): Promise<{ rsv1: boolean; length: number; text: string }> {
  let received: { rsv1: boolean; length: number; text: string } | undefined;
  const server = rawServer(async (peer) => {
    await peer.accept(
      "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n",
    );
    const { rsv, payload } = await peer.readFrame();
    const rsv1 = rsv === 0x40;
    received = {
      rsv1,
      length: payload.length,
      text: new TextDecoder().decode(
        rsv1 ? inflateMessage(payload, 1 << 20) : payload,
      ),
    };
    await peer.write(frame(0x8, closePayload(1000)));
    await peer.readFrame();
  });
  try {
    const socket = await connect(server.url, { perMessageDeflate });
    await socket.send(text);
    await deadline(socket.closed, 5_000, "the close");
  } finally {
    await server.close();
  }
  assert.deepEqual(server.errors, []);
  return received!;
}

// A small chat message, as JSON: 100 bytes.
const CHAT = JSON.stringify({
  type: "message",
  room: "general",
  from: "alice",
  text: "hello, hello, hello everyone",
}).padEnd(100, " ");

Deno.test("connect({perMessageDeflate: {threshold}}) compresses a 100-byte message at threshold 64, which the default 1 KiB leaves alone", async () => {
  assert.equal(new TextEncoder().encode(CHAT).length, 100);
  const small = await sendThroughRawServer({ threshold: 64 }, CHAT);
  assert.equal(small.rsv1, true);
  assert.equal(small.text, CHAT);
  assert.ok(small.length < 100, `${small.length} bytes`);
  assert.deepEqual(await sendThroughRawServer(true, CHAT), {
    rsv1: false,
    length: 100,
    text: CHAT,
  });
  // Below the threshold, still uncompressed.
  assert.equal(
    (await sendThroughRawServer({ threshold: 101 }, CHAT)).rsv1,
    false,
  );
});

Deno.test("connect({perMessageDeflate: {level}}) compresses with that zlib level: 0 stores the bytes as they are", async () => {
  const text = "level ".repeat(500);
  const stored = await sendThroughRawServer({ level: 0 }, text);
  assert.equal(stored.rsv1, true);
  assert.equal(stored.text, text);
  assert.ok(stored.length >= text.length, `${stored.length} bytes`);
  const deflated = await sendThroughRawServer({ level: 9 }, text);
  assert.equal(deflated.text, text);
  assert.ok(deflated.length < text.length / 10, `${deflated.length} bytes`);
});

Deno.test("connect({perMessageDeflate: {threshold}}) interoperates with npm:ws's server: a small compressed message echoes back", async () => {
  assert.match(
    await echoThroughNpmServer(true, CHAT, { threshold: 64, level: 9 }),
    /^permessage-deflate/,
  );
});

Deno.test("connect({perMessageDeflate}) checks its settings as serve() does", async () => {
  const mistakes: [unknown, Error][] = [
    [
      "yes",
      new TypeError(
        'Cannot connect: "perMessageDeflate" must be a boolean or an object, got string "yes"',
      ),
    ],
    [
      null,
      new TypeError(
        'Cannot connect: "perMessageDeflate" must be a boolean or an object, got null',
      ),
    ],
    [
      { threshold: -1 },
      new RangeError(
        'Cannot use permessage-deflate: "threshold" must be an integer from 0 to 9007199254740991, got -1',
      ),
    ],
    [
      { threshold: "64" },
      new TypeError(
        'Cannot use permessage-deflate: "threshold" must be an integer from 0 to 9007199254740991, got string "64"',
      ),
    ],
    [
      { level: 10 },
      new RangeError(
        'Cannot use permessage-deflate: "level" must be an integer from 0 to 9, got 10',
      ),
    ],
    [
      { noContextTakeover: true },
      new TypeError(
        'Cannot use permessage-deflate: unknown setting "noContextTakeover"; the settings are serverNoContextTakeover, clientNoContextTakeover, serverMaxWindowBits, clientMaxWindowBits, level, memLevel, threshold',
      ),
    ],
    [
      { serverNoContextTakeover: "yes" },
      new TypeError(
        'Cannot use permessage-deflate: "serverNoContextTakeover" must be a boolean, got string "yes"',
      ),
    ],
    [
      { clientNoContextTakeover: 1 },
      new TypeError(
        'Cannot use permessage-deflate: "clientNoContextTakeover" must be a boolean, got number 1',
      ),
    ],
    [
      { serverMaxWindowBits: 8 },
      new RangeError(
        'Cannot use permessage-deflate: "serverMaxWindowBits" must be an integer from 9 to 15, got 8',
      ),
    ],
    [
      { clientMaxWindowBits: 16 },
      new RangeError(
        'Cannot use permessage-deflate: "clientMaxWindowBits" must be an integer from 9 to 15, got 16',
      ),
    ],
    [
      { memLevel: 0 },
      new RangeError(
        'Cannot use permessage-deflate: "memLevel" must be an integer from 1 to 9, got 0',
      ),
    ],
  ];
  for (const [perMessageDeflate, error] of mistakes) {
    await assert.rejects(
      connect("ws://127.0.0.1:1/", {
        perMessageDeflate,
      } as ConnectOptions),
      error,
      JSON.stringify(perMessageDeflate),
    );
  }
});
