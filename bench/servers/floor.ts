// The floor under any WebSocket server on Deno: what a connection costs with
// nothing but the handshake and one read pending, for idle_10k and (but
// held) connect_c50: it answers a close frame with a close frame and ends.
// It does not echo, so the echo and broadcast scenarios do not apply.
//   held     the handshake, then no read at all (a connection nobody reads,
//            whose close is never answered)
//   read     then one `conn.read()` pending, into 16 bytes
//   streams  the same over `conn.readable`'s BYOB reader and
//            `conn.writable`'s writer, as this project's server reads and writes
// usage: deno run -A bench/servers/floor.ts MODE PORT
import { computeAcceptKey } from "../../src/protocol/handshake_response.ts";

const [mode, portArgument] = Deno.args;
if (!["held", "read", "streams"].includes(mode)) {
  throw new TypeError(
    `mode must be held, read or streams, got ${JSON.stringify(mode)}`,
  );
}
const port = Number(portArgument ?? 8080);
const encoder = new TextEncoder();
const decoder = new TextDecoder("latin1");
const CLOSE = new Uint8Array([0x88, 2, 0x03, 0xe8]);
const held = new Set<Deno.Conn>();

function switchingProtocols(request: string): Uint8Array | null {
  const key = /sec-websocket-key:\s*(\S+)/i.exec(request)?.[1];
  if (key === undefined) return null;
  return encoder.encode(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
      `Connection: Upgrade\r\nSec-WebSocket-Accept: ${
        computeAcceptKey(key)
      }\r\n\r\n`,
  );
}

/** True when `bytes` starts a close frame (masked or not). */
function isClose(bytes: Uint8Array): boolean {
  return (bytes[0] & 0x0f) === 0x8;
}

/** Reads the request in a frame of its own, so that its buffer is not kept. */
async function readRequest(conn: Deno.Conn): Promise<Uint8Array | null> {
  const request = new Uint8Array(4096);
  const n = await conn.read(request);
  return n ? switchingProtocols(decoder.decode(request.subarray(0, n))) : null;
}

async function overConnReads(conn: Deno.Conn) {
  const response = await readRequest(conn);
  if (!response) return;
  await conn.write(response);
  if (mode === "held") {
    held.add(conn);
    return;
  }
  const pending = new Uint8Array(16);
  for (let n; (n = await conn.read(pending)) !== null;) {
    if (n > 0 && isClose(pending)) return void await conn.write(CLOSE);
  }
}

/** {@linkcode readRequest} over a BYOB reader. */
async function readRequestFrom(
  reader: ReadableStreamBYOBReader,
): Promise<Uint8Array | null> {
  const { value } = await reader.read(new Uint8Array(4096));
  return value ? switchingProtocols(decoder.decode(value)) : null;
}

async function overStreams(conn: Deno.Conn) {
  const reader = conn.readable.getReader({ mode: "byob" });
  const writer = conn.writable.getWriter();
  const response = await readRequestFrom(reader);
  if (!response) return;
  await writer.write(response);
  for (let read; !(read = await reader.read(new Uint8Array(16))).done;) {
    if (read.value.length > 0 && isClose(read.value)) {
      return void await writer.write(CLOSE);
    }
  }
}

const listener = Deno.listen({ port, hostname: "127.0.0.1" });
console.log(`floor (${mode}) listening on 127.0.0.1:${port}`);
for await (const conn of listener) {
  const serveConnection = mode === "streams" ? overStreams : overConnReads;
  serveConnection(conn).catch(() => {}).finally(() => {
    if (held.has(conn)) return;
    try {
      conn.close();
    } catch { /* closed by a failed write */ }
  });
}
