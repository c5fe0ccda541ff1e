/**
 * Shared pieces of the permessage-deflate tests (RFC 7692): a client-side
 * compressor and inflater written against `node:zlib` (the peer's half, not
 * ours), a server-role {@linkcode Connection} built the way `Socket` builds
 * one, and a raw TCP client that offers the extension and reads frames
 * itself. Frame builders, raw peers and deadlines come from the existing
 * protocol and server helpers.
 *
 * @module
 */
import assert from "node:assert/strict";
import zlib from "node:zlib";
import {
  Connection,
  type ConnectionOptions,
  deflateMessage,
  inflateMessage,
  negotiatePerMessageDeflate,
  type PerMessageDeflateOptions,
  type PerMessageDeflateParams,
} from "../../mod.ts";
import { concat, prng } from "../protocol/_helpers.ts";
import { type RawFrame, type RawPeer, rawUpgrade } from "../server/_helpers.ts";

const { Z_SYNC_FLUSH } = zlib.constants;

/** RSV1, the "compressed message" bit of the first header byte (RFC 7692 §6). */
export const RSV1 = 0x40;

/** The `00 00 ff ff` tail a sender removes and a receiver appends (§7.2.1). */
export const TAIL: Uint8Array<ArrayBuffer> = Uint8Array.of(0, 0, 0xff, 0xff);

/** Chromium's and npm:ws's offer: the extension, window limit allowed. */
export const OFFER = "permessage-deflate; client_max_window_bits";

/** The parameters the server agrees to for {@linkcode OFFER}. */
export function negotiated(
  options: PerMessageDeflateOptions = {},
  offer = OFFER,
): PerMessageDeflateParams {
  const result = negotiatePerMessageDeflate(offer, options);
  assert.ok(result !== null, `the offer ${offer} is accepted`);
  return result.params;
}

/**
 * A server-role connection with permessage-deflate, wired as `Socket` wires
 * it: the bounded inflater and, without context takeover, the stateless
 * compressor.
 */
export function deflateConnection(
  options: Partial<ConnectionOptions> = {},
  params: PerMessageDeflateParams = negotiated(),
): Connection {
  return new Connection({
    role: "server",
    ...options,
    perMessageDeflate: deflateOptions(params),
  });
}

/** The `perMessageDeflate` connection option for `params`. */
export function deflateOptions(
  params: PerMessageDeflateParams = negotiated(),
): NonNullable<ConnectionOptions["perMessageDeflate"]> {
  return {
    inflate: inflateMessage,
    deflate: (data) => deflateMessage(data, params),
    threshold: params.threshold,
  };
}

/** Options a client uses to compress (the peer's zlib, not our codec). */
export interface ClientDeflateOptions {
  /** @default {15} */
  windowBits?: number;
  /** @default {6} */
  level?: number;
}

/**
 * Compresses one message as a client without context takeover does
 * (RFC 7692 §7.2.1): raw DEFLATE, sync flush, tail removed.
 */
export function clientDeflate(
  data: Uint8Array,
  options: ClientDeflateOptions = {},
): Uint8Array<ArrayBuffer> {
  const out = zlib.deflateRawSync(data, {
    finishFlush: Z_SYNC_FLUSH,
    windowBits: options.windowBits ?? 15,
    level: options.level ?? 6,
  });
  assert.deepEqual([...out.subarray(-4)], [...TAIL], "a sync flush tail");
  return new Uint8Array(out.subarray(0, -4));
}

/**
 * A client's inflater (RFC 7692 §7.2.2). With context takeover it keeps the
 * whole compressed history and inflates it again for each message: slow,
 * but obviously right, which is what a reference should be.
 */
export class ClientInflater {
  readonly #takeover: boolean;
  readonly #windowBits: number;
  #history = new Uint8Array(0);
  #produced = 0;

  /**
   * @param takeover Whether the server keeps its window between messages.
   * @param windowBits The window the client allocates: the agreed
   * `server_max_window_bits`. Data referring further back fails.
   */
  constructor(takeover: boolean, windowBits = 15) {
    this.#takeover = takeover;
    this.#windowBits = windowBits;
  }

  /** Inflates one message's payload. */
  inflate(payload: Uint8Array): Uint8Array<ArrayBuffer> {
    const input = concat(this.#takeover ? this.#history : [], payload, TAIL);
    const out = zlib.inflateRawSync(input, {
      finishFlush: Z_SYNC_FLUSH,
      windowBits: this.#windowBits,
    });
    if (!this.#takeover) return new Uint8Array(out);
    this.#history = input;
    const message = new Uint8Array(out.subarray(this.#produced));
    this.#produced = out.length;
    return message;
  }
}

/**
 * Compresses `messages` as a sender with context takeover does, written
 * against node:zlib (the peer's compressor, not ours): one raw deflate
 * stream, sync-flushed at each message end, the tail removed (RFC 7692
 * §7.2.1).
 *
 * @param settings The window's bits (at level 6), or node:zlib's options.
 */
export async function contextCompress(
  messages: Uint8Array[],
  settings: number | zlib.ZlibOptions = 15,
): Promise<Uint8Array<ArrayBuffer>[]> {
  const stream = zlib.createDeflateRaw(
    typeof settings === "number"
      ? { windowBits: settings, level: 6 }
      : settings,
  );
  const chunks: Uint8Array[] = [];
  stream.on("data", (chunk: Uint8Array) => chunks.push(chunk));
  const payloads: Uint8Array<ArrayBuffer>[] = [];
  try {
    for (const message of messages) {
      stream.write(message);
      await new Promise<void>((resolve) =>
        stream.flush(Z_SYNC_FLUSH, () => resolve())
      );
      const out = concat(...chunks.splice(0));
      assert.deepEqual([...out.subarray(-4)], [...TAIL], "a sync flush tail");
      payloads.push(out.slice(0, -4));
    }
  } finally {
    stream.close();
  }
  return payloads;
}

/** Incompressible bytes from a seed. */
export function randomBytes(
  length: number,
  seed: number,
): Uint8Array<ArrayBuffer> {
  const random = prng(seed);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (random() * 256) | 0;
  return out;
}

/** A short random unit repeated to `length` bytes: compresses very well. */
export function repetitiveBytes(
  length: number,
  seed: number,
): Uint8Array<ArrayBuffer> {
  const unit = randomBytes(1 + (seed % 61), seed);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = unit[i % unit.length];
  return out;
}

const WORDS = [
  "hello",
  "wörld",
  "ünïcödé",
  "日本語",
  "🎉",
  "deflate",
  "window",
  '"quoted"',
  "{json:1}",
  "\n",
];

/**
 * Text of words in a seeded order, at most `units` UTF-16 units long and
 * within a word of it; never splits a surrogate pair.
 */
export function wordText(units: number, seed: number): string {
  const random = prng(seed);
  const parts: string[] = [];
  let length = 0;
  for (;;) {
    const word = WORDS[(random() * WORDS.length) | 0];
    if (length + word.length + 1 > units) break;
    parts.push(word, " ");
    length += word.length + 1;
  }
  return parts.join("");
}

/**
 * Performs a handshake on a raw connection offering `offer`, checks the 101,
 * and returns the peer and the `Sec-WebSocket-Extensions` it got (`null`
 * when the server answered none).
 */
export async function rawDeflateClient(
  addr: Deno.NetAddr,
  offer: string | null = OFFER,
): Promise<{ peer: RawPeer; extensions: string | null }> {
  const { peer, response } = await rawUpgrade(
    addr,
    offer === null ? [] : [["Sec-WebSocket-Extensions", offer]],
  );
  assert.equal(response.status, 101, response.statusLine);
  return { peer, extensions: response.headers.get("sec-websocket-extensions") };
}

/** A server frame's message, inflated when RSV1 says it is compressed. */
export function messageOf(
  frame: RawFrame,
  inflater: ClientInflater,
): Uint8Array<ArrayBuffer> {
  return frame.rsv === RSV1
    ? inflater.inflate(frame.payload)
    : new Uint8Array(frame.payload);
}

/** Debian's Chromium, driven by npm:playwright-core (never downloaded). */
export const CHROMIUM = "/usr/bin/chromium";

/** `true` when {@linkcode CHROMIUM} exists. */
export const HAVE_CHROMIUM: boolean = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();
