/**
 * Test helpers for the client: deadlines, and a raw TCP "server" that lets a
 * test script the handshake response and inspect frames byte by byte.
 *
 * @module
 */
import { computeAcceptKey } from "../../mod.ts";
import { withTimeout } from "../server/_helpers.ts";

/** Rejects when `promise` takes longer than `ms` (the timer is always cleared). */
export function deadline<T>(
  promise: Promise<T>,
  ms = 5_000,
  what = "operation",
): Promise<T> {
  return withTimeout(promise, ms, what);
}

const latin1 = new TextDecoder("latin1");
const encoder = new TextEncoder();

/** A connection accepted by {@linkcode rawServer}, read with a buffer. */
export class RawPeer {
  readonly conn: Deno.Conn;
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #buffered = new Uint8Array(0);

  constructor(conn: Deno.Conn) {
    this.conn = conn;
    this.#reader = conn.readable.getReader();
  }

  /** Reads exactly `n` bytes; rejects at end of stream. */
  async read(n: number): Promise<Uint8Array> {
    while (this.#buffered.length < n) {
      const { value, done } = await this.#reader.read();
      if (done) {
        throw new Error(
          `end of stream with ${this.#buffered.length}/${n} bytes`,
        );
      }
      const joined = new Uint8Array(this.#buffered.length + value.length);
      joined.set(this.#buffered);
      joined.set(value, this.#buffered.length);
      this.#buffered = joined;
    }
    const out = this.#buffered.slice(0, n);
    this.#buffered = this.#buffered.slice(n);
    return out;
  }

  /** Resolves `true` when the peer closes its side with nothing left unread. */
  async readEof(): Promise<boolean> {
    if (this.#buffered.length > 0) return false;
    try {
      const { done } = await this.#reader.read();
      return done;
    } catch {
      return true;
    }
  }

  /** Reads the request head; returns its lines. */
  async readHead(): Promise<{ lines: string[]; headers: Headers }> {
    let text = "";
    while (!text.endsWith("\r\n\r\n")) {
      text += latin1.decode(await this.read(1));
    }
    const lines = text.slice(0, -4).split("\r\n");
    const headers = new Headers();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      headers.append(line.slice(0, colon), line.slice(colon + 1).trim());
    }
    return { lines, headers };
  }

  /** Reads one frame; returns its parts with the payload unmasked. */
  async readFrame(): Promise<{
    fin: boolean;
    rsv: number;
    opcode: number;
    masked: boolean;
    maskKey: Uint8Array;
    payload: Uint8Array;
  }> {
    const [b0, b1] = await this.read(2);
    let length = b1 & 0x7f;
    if (length === 126) {
      const ext = await this.read(2);
      length = (ext[0] << 8) | ext[1];
    } else if (length === 127) {
      const ext = await this.read(8);
      length = Number(new DataView(ext.buffer).getBigUint64(0));
    }
    const masked = (b1 & 0x80) !== 0;
    const maskKey = masked ? await this.read(4) : new Uint8Array(4);
    const payload = await this.read(length);
    for (let i = 0; i < payload.length; i++) payload[i] ^= maskKey[i & 3];
    return {
      fin: (b0 & 0x80) !== 0,
      rsv: b0 & 0x70,
      opcode: b0 & 0x0f,
      masked,
      maskKey,
      payload,
    };
  }

  /** Writes text (latin1) or bytes. */
  async write(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string"
      ? Uint8Array.from(data, (c) => c.charCodeAt(0))
      : data;
    let written = 0;
    while (written < bytes.length) {
      written += await this.conn.write(bytes.subarray(written));
    }
  }

  /** Answers the handshake with a correct 101 plus `extra` header lines. */
  async accept(extra = ""): Promise<Headers> {
    const { headers } = await this.readHead();
    const accept = computeAcceptKey(headers.get("sec-websocket-key")!);
    await this.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
        `Connection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n${extra}\r\n`,
    );
    return headers;
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }
}

/** An unmasked server frame. */
export function frame(
  opcode: number,
  payload: Uint8Array | string = "",
): Uint8Array {
  const data = typeof payload === "string" ? encoder.encode(payload) : payload;
  if (data.length > 125) throw new Error("test frames are small");
  return new Uint8Array([0x80 | opcode, data.length, ...data]);
}

/** A close frame payload. */
export function closePayload(code: number, reason = ""): Uint8Array {
  return new Uint8Array([code >> 8, code & 0xff, ...encoder.encode(reason)]);
}

/**
 * Listens on 127.0.0.1 port 0 and runs `script` for each accepted
 * connection; `close()` stops listening and waits for the scripts.
 */
export function rawServer(
  script: (peer: RawPeer) => Promise<void>,
): { url: string; port: number; errors: unknown[]; close(): Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const tasks: Promise<void>[] = [];
  const errors: unknown[] = [];
  const peers: RawPeer[] = [];
  const loop = (async () => {
    try {
      for await (const conn of listener) {
        const peer = new RawPeer(conn);
        peers.push(peer);
        tasks.push(
          script(peer).catch((error) => {
            errors.push(error);
          }).finally(() => peer.close()),
        );
      }
    } catch {
      // Closed.
    }
  })();
  return {
    url: `ws://127.0.0.1:${port}`,
    port,
    errors,
    async close() {
      listener.close();
      await loop;
      await deadline(Promise.all(tasks), 5_000, "raw server scripts");
    },
  };
}

/**
 * A TCP relay on 127.0.0.1 port 0 to `port`, counting the bytes that pass
 * each way: `up` from the client to the server, `down` back. Once a reply
 * has arrived, what caused it has passed, so counts taken then are exact.
 */
export function countingRelay(port: number): {
  port: number;
  up: number;
  down: number;
  [Symbol.asyncDispose](): Promise<void>;
} {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const pipes: Promise<void>[] = [];
  const relay = {
    port: (listener.addr as Deno.NetAddr).port,
    up: 0,
    down: 0,
    async [Symbol.asyncDispose]() {
      listener.close();
      await loop;
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      }
      await deadline(Promise.all(pipes), 5_000, "the relay's pipes");
    },
  };
  const pipe = async (
    from: Deno.Conn,
    to: Deno.Conn,
    count: (n: number) => void,
  ) => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buffer);
        if (n === null) break;
        count(n);
        for (let written = 0; written < n;) {
          written += await to.write(buffer.subarray(written, n));
        }
      }
      await to.closeWrite();
    } catch {
      // One side closed or reset: the relay ends with it.
    }
  };
  const loop = (async () => {
    try {
      for await (const client of listener) {
        const server = await Deno.connect({ hostname: "127.0.0.1", port });
        conns.push(client, server);
        pipes.push(
          pipe(client, server, (n) => relay.up += n),
          pipe(server, client, (n) => relay.down += n),
        );
      }
    } catch {
      // Closed.
    }
  })();
  return relay;
}

/**
 * A JSON update of about 2 KiB (over the default 1 KiB compression
 * threshold), like the one before it but for a few values: what context
 * takeover compresses best.
 */
export function jsonUpdate(seq: number): string {
  return JSON.stringify({
    type: "update",
    seq,
    rows: Array.from({ length: 40 }, (_, id) => ({
      id,
      name: `row ${id}`,
      value: (seq * 31 + id * 7) % 100,
    })),
  });
}
