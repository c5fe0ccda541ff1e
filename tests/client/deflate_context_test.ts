/**
 * The client's permessage-deflate context takeover on the wire (RFC 7692
 * §7.1.1, §7.2): against npm:ws's server in each of its configurations,
 * against this project's server, and against a raw server that checks the
 * frames. Context takeover shows in bytes: a message sent again right
 * after itself costs a few bytes with it, as much as the first without.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { WebSocketServer } from "ws";
import {
  type ClientDeflateOptions,
  connect,
  type ConnectOptions,
  inflateMessage,
  type PerMessageDeflateOptions,
  type PerMessageDeflateParams,
  serve,
  type Socket,
} from "../../mod.ts";
import { contextCompress } from "../deflate/_helpers.ts";
import {
  closePayload,
  countingRelay,
  deadline,
  frame,
  jsonUpdate as update,
  rawServer,
} from "./_helpers.ts";

const utf8 = new TextEncoder();

// What each test sends after the identical pair: similar updates, and a
// binary message of incompressible bytes.
const MORE: (string | Uint8Array)[] = [
  ...Array.from({ length: 20 }, (_, i) => update(i + 2)),
  crypto.getRandomValues(new Uint8Array(3000)),
  update(99),
];

/** Bytes that crossed the relay for one message's echo, each way. */
interface Cost {
  up: number;
  down: number;
}

/**
 * Sends `update(1)` twice, then {@linkcode MORE}, through a counting relay
 * to an echo server on `port`; checks that every echo comes back
 * byte-exact; returns what the two identical messages cost each way, and
 * the parameters agreed.
 */
async function echoThrough(
  port: number,
  perMessageDeflate: ConnectOptions["perMessageDeflate"] = true,
): Promise<{ first: Cost; second: Cost; params: PerMessageDeflateParams }> {
  await using relay = countingRelay(port);
  const socket = await connect(`ws://127.0.0.1:${relay.port}/`, {
    perMessageDeflate,
  });
  const messages = socket[Symbol.asyncIterator]();
  const costs: Cost[] = [];
  try {
    for (const message of [update(1), update(1), ...MORE]) {
      const before = { up: relay.up, down: relay.down };
      await socket.send(message);
      const { value } = await deadline(messages.next(), 5_000, "the echo");
      assert.deepEqual(value, message);
      costs.push({ up: relay.up - before.up, down: relay.down - before.down });
    }
    const params = socket.perMessageDeflate;
    assert.ok(params !== undefined, "permessage-deflate was agreed");
    const { code } = await socket.close();
    assert.equal(code, 1000);
    return { first: costs[0], second: costs[1], params };
  } finally {
    await closeQuietly(socket);
  }
}

async function closeQuietly(socket: Socket): Promise<void> {
  if (socket.state !== "closed") await socket.close().catch(() => {});
}

/** Context taken over: the repeat costs under a quarter of the first. */
function assertTakenOver(first: number, second: number, way: string): void {
  assert.ok(
    second < first / 4,
    `${way}: the repeat took ${second} bytes, the first ${first}`,
  );
}

/** No context: the repeat costs what the first did. */
function assertAlone(first: number, second: number, way: string): void {
  assert.ok(
    second >= first * 0.9,
    `${way}: the repeat took ${second} bytes, the first ${first}`,
  );
}

/** An npm:ws echo server with `perMessageDeflate`; its port. */
async function npmServer(
  perMessageDeflate: unknown,
): Promise<{ port: number; [Symbol.asyncDispose](): Promise<void> }> {
  const wss = new WebSocketServer({
    host: "127.0.0.1",
    port: 0,
    perMessageDeflate,
  });
  await new Promise((resolve) => wss.once("listening", resolve));
  wss.on("connection", (ws: {
    on(event: string, listener: (...args: never[]) => void): void;
    send(data: unknown, options: { binary: boolean }): void;
  }) => {
    ws.on("error", () => {});
    ws.on(
      "message",
      (data: Uint8Array, binary: boolean) => ws.send(data, { binary }),
    );
  });
  return {
    port: (wss.address() as AddressInfo).port,
    async [Symbol.asyncDispose]() {
      for (const ws of wss.clients as Set<{ terminate(): void }>) {
        ws.terminate();
      }
      await new Promise((resolve) => wss.close(resolve));
    },
  };
}

Deno.test("connect({perMessageDeflate: true}) takes over context both ways with npm:ws's default deflate: a repeated message costs a fraction each way (RFC 7692 §7.1.1)", async () => {
  await using server = await npmServer(true);
  const { first, second, params } = await echoThrough(server.port);
  assert.equal(params.serverNoContextTakeover, false);
  assert.equal(params.clientNoContextTakeover, false);
  assertTakenOver(first.up, second.up, "client to server");
  assertTakenOver(first.down, second.down, "server to client");
});

Deno.test("connect() against npm:ws with serverNoContextTakeover: the server's messages stand alone, the client's still take over", async () => {
  await using server = await npmServer({ serverNoContextTakeover: true });
  const { first, second, params } = await echoThrough(server.port);
  assert.equal(params.serverNoContextTakeover, true);
  assertTakenOver(first.up, second.up, "client to server");
  assertAlone(first.down, second.down, "server to client");
});

Deno.test("connect() obeys npm:ws's client_no_context_takeover: it compresses each message on its own (RFC 7692 §7.1.1.2)", async () => {
  await using server = await npmServer({ clientNoContextTakeover: true });
  const { first, second, params } = await echoThrough(server.port);
  assert.equal(params.clientNoContextTakeover, true);
  assertAlone(first.up, second.up, "client to server");
  assertTakenOver(first.down, second.down, "server to client");
});

Deno.test("connect() keeps to npm:ws's 10-bit windows both ways, taken unasked for the server's (RFC 7692 §7.1.2)", async () => {
  // npm:ws inflates in a 10-bit window: a client compressing in 15 bits
  // would refer back too far, and npm:ws would close with 1007.
  await using server = await npmServer({
    serverMaxWindowBits: 10,
    clientMaxWindowBits: 10,
  });
  const { params } = await echoThrough(server.port);
  assert.equal(params.serverMaxWindowBits, 10);
  assert.equal(params.clientMaxWindowBits, 10);
  assert.equal(params.serverNoContextTakeover, false);
  assert.equal(params.clientNoContextTakeover, false);
});

Deno.test("connect() with both *NoContextTakeover settings: npm:ws agrees, and each message stands alone each way", async () => {
  await using server = await npmServer(true);
  const { first, second, params } = await echoThrough(server.port, {
    serverNoContextTakeover: true,
    clientNoContextTakeover: true,
  });
  assert.equal(params.serverNoContextTakeover, true);
  assert.equal(params.clientNoContextTakeover, true);
  assertAlone(first.up, second.up, "client to server");
  assertAlone(first.down, second.down, "server to client");
});

Deno.test("connect() with 9-bit windows of its own: npm:ws agrees to both, and every message round-trips within them", async () => {
  await using server = await npmServer(true);
  const settings: ClientDeflateOptions = {
    serverMaxWindowBits: 9,
    clientMaxWindowBits: 9,
  };
  const { params } = await echoThrough(server.port, settings);
  assert.equal(params.serverMaxWindowBits, 9);
  assert.equal(params.clientMaxWindowBits, 9);
});

/** This project's echo server with `perMessageDeflate`. */
function duplexServer(perMessageDeflate: boolean | PerMessageDeflateOptions) {
  return serve(
    { hostname: "127.0.0.1", port: 0, perMessageDeflate },
    async (socket) => {
      for await (const message of socket) await socket.send(message);
    },
  );
}

Deno.test("connect() with this server keeping its context (serverNoContextTakeover: false): the server's messages take over, the client's stand alone as it asks", async () => {
  await using server = duplexServer({ serverNoContextTakeover: false });
  const { first, second, params } = await echoThrough(server.addr.port);
  assert.equal(params.serverNoContextTakeover, false);
  assert.equal(params.clientNoContextTakeover, true);
  assertAlone(first.up, second.up, "client to server");
  assertTakenOver(first.down, second.down, "server to client");
});

Deno.test("connect() with this server's defaults: each message stands alone each way", async () => {
  await using server = duplexServer(true);
  const { first, second, params } = await echoThrough(server.addr.port);
  assert.equal(params.serverNoContextTakeover, true);
  assert.equal(params.clientNoContextTakeover, true);
  assertAlone(first.up, second.up, "client to server");
  assertAlone(first.down, second.down, "server to client");
});

Deno.test("connect() limiting this server's window to 10 bits: the server answers 10 and compresses within it, with context", async () => {
  await using server = duplexServer({ serverNoContextTakeover: false });
  const { first, second, params } = await echoThrough(server.addr.port, {
    serverMaxWindowBits: 10,
  });
  assert.equal(params.serverMaxWindowBits, 10);
  assert.equal(params.serverNoContextTakeover, false);
  // A 2 KiB message does not fit a 1 KiB window: the repeat gains less.
  assert.ok(second.down < first.down, `${second.down} of ${first.down}`);
});

Deno.test("connect() inflates a server's messages with its window kept from message to message when the answer lacks server_no_context_takeover (RFC 7692 §7.2.2)", async () => {
  const messages = [update(1), update(1), update(2)].map((m) => utf8.encode(m));
  const payloads = await contextCompress(messages);
  // The repeat refers back to the first: alone, it cannot be inflated.
  assert.throws(() => inflateMessage(payloads[1], 1 << 20));
  const server = rawServer(async (peer) => {
    await peer.accept("Sec-WebSocket-Extensions: permessage-deflate\r\n");
    for (const payload of payloads) {
      await peer.write(compressedFrame(payload));
    }
    await peer.write(frame(0x8, closePayload(1000)));
    await peer.readFrame();
  });
  try {
    const socket = await connect(server.url, { perMessageDeflate: true });
    const received = [];
    for await (const message of socket) received.push(message);
    assert.deepEqual(received, [update(1), update(1), update(2)]);
    assert.equal((await socket.closed).code, 1000);
  } finally {
    await server.close();
  }
  assert.deepEqual(server.errors, []);
});

Deno.test("connect() compresses each message on its own once a server answers client_no_context_takeover it was not offered (RFC 7692 §7.1.1.2)", async () => {
  const payloads: Uint8Array[] = [];
  const server = rawServer(async (peer) => {
    const request = await peer.accept(
      "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n",
    );
    assert.equal(
      request.get("sec-websocket-extensions"),
      "permessage-deflate; client_max_window_bits",
    );
    for (let i = 0; i < 2; i++) {
      const { rsv, payload } = await peer.readFrame();
      assert.equal(rsv, 0x40, "compressed");
      payloads.push(payload);
    }
    await peer.write(frame(0x8, closePayload(1000)));
    await peer.readFrame();
  });
  try {
    const socket = await connect(server.url, { perMessageDeflate: true });
    await socket.send(update(1));
    await socket.send(update(1));
    await deadline(socket.closed, 5_000, "the close");
  } finally {
    await server.close();
  }
  assert.deepEqual(server.errors, []);
  // Each inflates alone, to the message.
  for (const payload of payloads) {
    assert.equal(
      new TextDecoder().decode(inflateMessage(payload, 1 << 20)),
      update(1),
    );
  }
  assert.deepEqual(payloads[1], payloads[0]);
});

/** An unmasked, final text frame with RSV1 set, of any length. */
function compressedFrame(payload: Uint8Array): Uint8Array {
  const header = payload.length < 126
    ? [0xc1, payload.length]
    : [0xc1, 126, payload.length >> 8, payload.length & 0xff];
  assert.ok(payload.length < 65536);
  const bytes = new Uint8Array(header.length + payload.length);
  bytes.set(header);
  bytes.set(payload, header.length);
  return bytes;
}
