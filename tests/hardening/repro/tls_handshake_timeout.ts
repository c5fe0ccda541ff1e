/**
 * Minimal repro: `handshakeTimeout` does not end a client stuck in the TLS
 * handshake (its TCP connection stays open, holding a descriptor); good
 * clients are still served (step 3).
 *
 * ```sh
 * deno run -A tests/hardening/repro/tls_handshake_timeout.ts
 * ```
 *
 * Exit code 1 while the bug is present, 0 once fixed. Root cause, shown in
 * part 1: `TlsConn.close()` during a pending handshake interrupts the read
 * but leaves the TCP socket open (Deno 2.9.6), so the server's deadline
 * "closes" a connection that stays open, no longer counted by the server.
 *
 * @module
 */
import { serve } from "../../../mod.ts";

const cert = Deno.readTextFileSync(
  new URL("../../fixtures/cert.pem", import.meta.url),
);
const key = Deno.readTextFileSync(
  new URL("../../fixtures/key.pem", import.meta.url),
);
// The first 7 bytes of a ClientHello: a handshake record that never ends.
const PARTIAL_HELLO = new Uint8Array([
  0x16,
  0x03,
  0x01,
  0x00,
  0xc8,
  0x01,
  0x00,
]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether the server has closed `conn` (EOF or reset) within `ms`. */
async function closedWithin(conn: Deno.Conn, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    conn.read(new Uint8Array(64)).then(() => true, () => true),
    new Promise<boolean>((r) => timer = setTimeout(() => r(false), ms)),
  ]);
  clearTimeout(timer);
  return outcome;
}

// Part 1, Deno alone: close() mid-handshake does not close the socket.
{
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert,
    key,
  });
  const port = (listener.addr as Deno.NetAddr).port;
  const client = await Deno.connect({ hostname: "127.0.0.1", port });
  await client.write(PARTIAL_HELLO);
  const conn = await listener.accept();
  const read = conn.read(new Uint8Array(16)).catch((e) => e.name);
  await sleep(100);
  conn.close();
  console.log(`1. server read after close(): ${await read}`);
  console.log(
    `   client sees the close: ${await closedWithin(
      client,
      1000,
    )} (expected true)`,
  );
  client.close();
  listener.close();
}

// Part 2, Duplex: handshakeTimeout 200 ms, maxConnections 5, 10 stuck clients.
const server = serve({
  hostname: "127.0.0.1",
  port: 0,
  cert,
  key,
  handshakeTimeout: 200,
  maxConnections: 5,
}, () => {});
const stuck: Deno.Conn[] = [];
for (let i = 0; i < 10; i++) {
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  await conn.write(PARTIAL_HELLO);
  stuck.push(conn);
}
await sleep(1500); // seven handshake timeouts
let open = 0;
for (const conn of stuck) if (!await closedWithin(conn, 50)) open++;
console.log(`2. stuck clients still open after 1.5 s: ${open}/10 (expected 0)`);

const good = await Deno.connectTls({
  hostname: "localhost",
  port: server.addr.port,
  caCerts: [cert],
});
await good.write(new TextEncoder().encode(
  "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n" +
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
    "Sec-WebSocket-Version: 13\r\n\r\n",
));
const buffer = new Uint8Array(256);
const n = await good.read(buffer);
const status = new TextDecoder().decode(buffer.subarray(0, n ?? 0)).split(
  "\r\n",
)[0];
console.log(`3. a good client gets: ${status} (expected HTTP/1.1 101)`);
good.close();
for (const conn of stuck) conn.close();
await server.shutdown();
Deno.exit(open > 0 || !status.includes(" 101 ") ? 1 : 0);
