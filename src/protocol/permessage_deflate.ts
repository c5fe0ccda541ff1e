/**
 * Negotiation of the permessage-deflate extension (RFC 7692 §5, §7.1): pure
 * functions over header values, no compression here.
 *
 * @module
 */
import { describe, shown } from "./_describe.ts";

/**
 * Server-side settings for permessage-deflate (`serve()`'s
 * `perMessageDeflate`): what the server answers to a client's offer (RFC
 * 7692 §7.1) and how it compresses.
 *
 * The defaults keep no state between messages either way: the server
 * compresses each message on its own and asks clients to do the same
 * (`client_no_context_takeover`), so a connection costs no compression
 * memory and a published message is compressed once. Context takeover
 * compresses streams of similar messages far better, at a price per
 * connection: `serverNoContextTakeover: false` for the server's messages
 * (a compressor, about 256 KiB at 15 window bits and memLevel 8),
 * `clientNoContextTakeover: false` for the clients' (their window, 32 KiB
 * at most).
 *
 * @example Letting clients take over context
 * ```ts
 * import { connect, serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const tick = JSON.stringify({ type: "tick", symbol: "ACME", price: 101.25 });
 * await using server = serve(
 *   { port: 0, hostname: "127.0.0.1", perMessageDeflate: { clientNoContextTakeover: false } },
 *   async (socket) => {
 *     // The server keeps the client's window (here 2^15 bytes at most).
 *     assert.equal(socket.perMessageDeflate?.clientNoContextTakeover, false);
 *     for await (const message of socket) {
 *       assert.equal(message, tick);
 *       await socket.send("ok");
 *     }
 *   },
 * );
 * // connect(), as browsers and npm:ws, takes over context when allowed.
 * const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`, {
 *   perMessageDeflate: { threshold: 16 },
 * });
 * assert.equal(socket.perMessageDeflate?.clientNoContextTakeover, false);
 * await socket.send(tick);
 * await socket.send(tick); // a few bytes: it refers back to the first
 * let replies = 0;
 * for await (const message of socket) {
 *   assert.equal(message, "ok");
 *   if (++replies === 2) break;
 * }
 * assert.equal(replies, 2);
 * await socket.close();
 * ```
 */
export interface PerMessageDeflateOptions {
  /**
   * Compress each message on its own (RFC 7692 §7.1.1.1). `true` keeps no
   * compressor state per connection: one shared compressor serves every
   * socket and a published message is compressed once. `false` keeps a
   * compressor per connection, for better ratios at about 256 KiB of memory
   * each, from the connection's first compressed message on.
   * @default {true}
   */
  serverNoContextTakeover?: boolean;
  /**
   * Ask clients to compress each message on its own: the answer carries
   * `client_no_context_takeover` (RFC 7692 §7.1.1.2), and the server keeps
   * nothing of a client's messages. With `false` the answer leaves it out
   * (unless the client offered it: then the client will not take over, and
   * the answer says so; or unless `clientMaxWindowBits` is below 15 and the
   * client's offer does not let the server limit its window), so a client
   * may refer back to its earlier
   * messages, as browsers and npm:ws do when allowed: a stream of similar
   * messages from the client shrinks far more. The server then keeps each
   * such client's window: the last `2^clientMaxWindowBits` bytes it
   * inflated (32 KiB at 15 bits, 512 bytes at 8 or 9), from the
   * connection's first compressed message on; `clientMaxWindowBits`
   * lowers it for clients that let the server limit their window.
   * @default {true}
   */
  clientNoContextTakeover?: boolean;
  /**
   * The largest LZ77 window the server compresses with, 9-15 (RFC 7692
   * §7.1.2.1); smaller saves memory and ratio. A client's lower limit wins;
   * an offer limiting it to 8 is declined (zlib cannot deflate with 8).
   * @default {15}
   */
  serverMaxWindowBits?: number;
  /**
   * When set (8-15) and the client allows it, asks the client to compress
   * with at most this window (RFC 7692 §7.1.2.2). With
   * `clientNoContextTakeover: false` it also bounds the window the server
   * keeps per connection: a client whose offer does not allow it (no
   * `client_max_window_bits`) is asked for `client_no_context_takeover`
   * instead when this is below 15, so that no larger window is kept. 8
   * fails clients whose zlib cannot compress with a 256-byte window
   * (Python's `websockets`); 9 is the practical floor.
   */
  clientMaxWindowBits?: number;
  /**
   * The zlib compression level, 0 (none) to 9 (best).
   * @default {6}
   */
  level?: number;
  /**
   * The zlib memory level of a compressor, 1-9: memory against speed.
   * @default {8}
   */
  memLevel?: number;
  /**
   * Messages smaller than this many bytes are sent uncompressed.
   * @default {1024}
   */
  threshold?: number;
}

// The settings' names, the same for a server and a client.
const DEFLATE_SETTINGS = [
  "serverNoContextTakeover",
  "clientNoContextTakeover",
  "serverMaxWindowBits",
  "clientMaxWindowBits",
  "level",
  "memLevel",
  "threshold",
];

/**
 * Client-side settings for permessage-deflate (`connect()`), named as the
 * server's ({@linkcode PerMessageDeflateOptions}): what the client offers
 * (RFC 7692 §7.1) and how it compresses.
 *
 * The defaults offer what browsers and npm:ws offer,
 * `permessage-deflate; client_max_window_bits`: context takeover both ways
 * unless the server asks otherwise, the best ratio for streams of similar
 * messages. It costs memory per connection, from the first compressed
 * message each way on: a compressor (about 256 KiB at 15 window bits and
 * memLevel 8) and the server's window (32 KiB at most). A client holds few
 * connections, so that is the default; the server, which holds many,
 * defaults the other way. A load generator opening thousands of
 * connections should set both `serverNoContextTakeover` and
 * `clientNoContextTakeover` (then no state is kept between messages), or
 * smaller windows.
 *
 * @example Context takeover from a server that keeps its context
 * ```ts
 * import { connect, serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * await using server = serve(
 *   { port: 0, hostname: "127.0.0.1", perMessageDeflate: { serverNoContextTakeover: false } },
 *   async (socket) => {
 *     for await (const message of socket) await socket.send(message);
 *   },
 * );
 * const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`, {
 *   perMessageDeflate: { threshold: 64 },
 * });
 * // The server keeps its context; it asks the client to keep none.
 * assert.equal(socket.perMessageDeflate?.serverNoContextTakeover, false);
 * assert.equal(socket.perMessageDeflate?.clientNoContextTakeover, true);
 * const tick = JSON.stringify({ type: "tick", symbol: "ACME", price: 101.25 });
 * await socket.send(tick);
 * await socket.send(tick);
 * let echoes = 0;
 * for await (const message of socket) {
 *   assert.equal(message, tick);
 *   if (++echoes === 2) break;
 * }
 * await socket.close();
 * ```
 */
export interface ClientDeflateOptions {
  /**
   * Ask the server to compress each message on its own: the offer carries
   * `server_no_context_takeover` (RFC 7692 §7.1.1.1), and a server that
   * accepts the extension without it fails the handshake. The client then
   * keeps nothing of the server's messages. With `false` the server may
   * refer back to its earlier messages, and the client keeps the server's
   * window for that: the last `2^serverMaxWindowBits` bytes it inflated
   * (32 KiB at most). A server may compress each message on its own
   * anyway, and say so.
   * @default {false}
   */
  serverNoContextTakeover?: boolean;
  /**
   * Compress each message on its own, and say so in the offer
   * (`client_no_context_takeover`, RFC 7692 §7.1.1.2): no compressor is
   * kept. With `false` one compressor per connection, created by the first
   * compressed message, carries on from message to message: about 256 KiB
   * at 15 window bits and memLevel 8 (zlib takes `2^(windowBits + 2) +
   * 2^(memLevel + 9)` bytes). A server that answers
   * `client_no_context_takeover` (Duplex's does by default; npm:ws's with its
   * `clientNoContextTakeover`) is obeyed either way.
   * @default {false}
   */
  clientNoContextTakeover?: boolean;
  /**
   * Limit the window the server compresses with to this many bits, 9-15:
   * the offer carries `server_max_window_bits` (RFC 7692 §7.1.2.1), and a
   * server that accepts the extension must answer it with this value or a
   * smaller one, else the handshake fails. The window the client keeps
   * shrinks to `2^bits` bytes. 8 is not offered: zlib cannot compress
   * within 8 bits, so servers built on it decline such an offer (Duplex's
   * server does).
   * @default {undefined} not offered: the server chooses, up to 15
   */
  serverMaxWindowBits?: number;
  /**
   * The largest window the client compresses with, 9-15: the offer carries
   * `client_max_window_bits=N` (RFC 7692 §7.1.2.2). A smaller window takes
   * less memory (see `clientNoContextTakeover`) and compresses less well.
   * Unset, `client_max_window_bits` is offered with no value: the server
   * may limit the client's window, as it may lower this one.
   * @default {undefined} 15, and the server may limit it
   */
  clientMaxWindowBits?: number;
  /**
   * The zlib compression level, 0 (none) to 9 (best).
   * @default {6}
   */
  level?: number;
  /**
   * The zlib memory level of the compressor, 1-9: memory against speed.
   * @default {8}
   */
  memLevel?: number;
  /**
   * Messages smaller than this many bytes are sent uncompressed. With
   * context takeover a small message that repeats much of an earlier one
   * shrinks well, so a stream of small similar messages (chat or ticker
   * JSON) gains from a lower threshold, such as 64; each message compressed
   * on its own gains less: a 100-byte JSON message by 10-25%.
   * @default {1024}
   */
  threshold?: number;
}

/**
 * What one negotiation agreed on, as the server applies it.
 *
 * @example The history each side keeps between messages
 * ```ts
 * import { negotiatePerMessageDeflate, type PerMessageDeflateParams } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * // A side that takes over context keeps its last 2^windowBits bytes.
 * const windowBytes = (p: PerMessageDeflateParams) =>
 *   (p.serverNoContextTakeover ? 0 : 1 << p.serverMaxWindowBits) +
 *   (p.clientNoContextTakeover ? 0 : 1 << p.clientMaxWindowBits);
 * const agreed = negotiatePerMessageDeflate("permessage-deflate; client_max_window_bits", {
 *   clientNoContextTakeover: false,
 *   clientMaxWindowBits: 12,
 * });
 * assert.equal(windowBytes(agreed!.params), 4096);
 * ```
 */
export interface PerMessageDeflateParams {
  /** The server compresses each message on its own. */
  serverNoContextTakeover: boolean;
  /**
   * The client compresses each message on its own: a Duplex server asked
   * for it (its `clientNoContextTakeover`, `true` by default), or the
   * client offered it.
   */
  clientNoContextTakeover: boolean;
  /** The server's LZ77 window, 9-15. */
  serverMaxWindowBits: number;
  /** The client's LZ77 window, 8-15 (15 when not limited). */
  clientMaxWindowBits: number;
  /** The zlib level. */
  level: number;
  /** The zlib memory level. */
  memLevel: number;
  /** The compression threshold in bytes. */
  threshold: number;
}

/**
 * One extension of a `Sec-WebSocket-Extensions` list.
 *
 * @example Looking through a client's offer
 * ```ts
 * import { type ExtensionOffer, parseExtensions } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const param = (offer: ExtensionOffer, name: string) => offer.params.find(([n]) => n === name)?.[1];
 * const offers = parseExtensions("permessage-deflate; client_max_window_bits; server_max_window_bits=10, x-webkit-deflate-frame");
 * const deflate = offers?.find((offer) => offer.name === "permessage-deflate");
 * assert.equal(param(deflate!, "client_max_window_bits"), true); // present, without a value
 * assert.equal(param(deflate!, "server_max_window_bits"), "10");
 * assert.equal(offers?.length, 2);
 * ```
 */
export interface ExtensionOffer {
  /** The extension token, lowercased (`permessage-deflate`). */
  name: string;
  /** Its parameters in order; `true` for a parameter without a value. */
  params: [name: string, value: string | true][];
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Parses a `Sec-WebSocket-Extensions` value (RFC 6455 §9.1): a comma list of
 * extensions, each with `;`-separated parameters whose values are tokens or
 * quoted strings.
 *
 * @param value The header value (several header fields joined by commas).
 * @returns The extensions in order, or `null` when the syntax is invalid.
 *
 * @example Usage
 * ```ts
 * import { parseExtensions } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseExtensions("permessage-deflate; client_max_window_bits"), [
 *   { name: "permessage-deflate", params: [["client_max_window_bits", true]] },
 * ]);
 * ```
 */
export function parseExtensions(value: string): ExtensionOffer[] | null {
  const offers: ExtensionOffer[] = [];
  let i = 0;
  const skipSpace = () => {
    while (value[i] === " " || value[i] === "\t") i++;
  };
  const token = () => {
    const start = i;
    while (i < value.length && TOKEN.test(value[i])) i++;
    return value.slice(start, i);
  };
  while (i < value.length) {
    skipSpace();
    // Empty list elements are allowed (RFC 9110 §5.6.1).
    if (value[i] === ",") {
      i++;
      continue;
    }
    if (i === value.length) break;
    const name = token().toLowerCase();
    if (name === "") return null;
    const params: [string, string | true][] = [];
    skipSpace();
    while (value[i] === ";") {
      i++;
      skipSpace();
      const param = token().toLowerCase();
      if (param === "") return null;
      skipSpace();
      let paramValue: string | true = true;
      if (value[i] === "=") {
        i++;
        skipSpace();
        if (value[i] === '"') {
          i++;
          let text = "";
          while (i < value.length && value[i] !== '"') {
            if (value[i] === "\\") i++;
            text += value[i++] ?? "";
          }
          if (value[i] !== '"') return null;
          i++;
          // "the value after quoted-string unescaping MUST conform to the
          // token ABNF" (RFC 6455 §9.1).
          if (!TOKEN.test(text)) return null;
          paramValue = text;
        } else {
          paramValue = token();
          if (paramValue === "") return null;
        }
        skipSpace();
      }
      params.push([param, paramValue]);
    }
    if (i < value.length && value[i] !== ",") return null;
    offers.push({ name, params });
  }
  return offers;
}

/** A window-bits value: 8-15 without leading zeros (RFC 7692 §7.1.2). */
export const WINDOW_BITS = /^(?:[89]|1[0-5])$/;

/**
 * Chooses the first permessage-deflate offer the server can accept and
 * builds the response parameters (RFC 7692 §5.1, §7.1). An offer is
 * declined — not failed — when it has an unknown, duplicate or invalid
 * parameter, or asks for what the server cannot do (a window of 8 bits).
 * By default the server asks the client not to use context takeover, so it
 * keeps no decompression state between messages; with
 * `clientNoContextTakeover: false` it allows it, and
 * `params.clientNoContextTakeover` says whether the client will take over
 * (not when its offer said it would not, nor when `clientMaxWindowBits` is
 * below 15 and its offer has no `client_max_window_bits`, which would let
 * the server limit its window).
 *
 * @param header The request's `Sec-WebSocket-Extensions`, or `null`.
 * @param options The server's settings.
 * @returns The response header value and the agreed parameters, or `null`
 * when no offer is acceptable (the connection goes on uncompressed).
 *
 * @example Accepting Chromium's offer
 * ```ts
 * import { negotiatePerMessageDeflate } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const result = negotiatePerMessageDeflate("permessage-deflate; client_max_window_bits", {});
 * assert.equal(
 *   result?.response,
 *   "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
 * );
 * ```
 *
 * @example Letting the client take over context
 * ```ts
 * import { negotiatePerMessageDeflate } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const result = negotiatePerMessageDeflate("permessage-deflate; client_max_window_bits", {
 *   clientNoContextTakeover: false,
 *   clientMaxWindowBits: 12,
 * });
 * assert.equal(
 *   result?.response,
 *   "permessage-deflate; server_no_context_takeover; client_max_window_bits=12",
 * );
 * // The server keeps the client's last 2^12 bytes between its messages.
 * assert.equal(result?.params.clientNoContextTakeover, false);
 * assert.equal(result?.params.clientMaxWindowBits, 12);
 * ```
 */
export function negotiatePerMessageDeflate(
  header: string | null,
  options: PerMessageDeflateOptions,
): { response: string; params: PerMessageDeflateParams } | null {
  if (header === null) return null;
  const offers = parseExtensions(header);
  if (offers === null) return null;
  const settings = resolveDeflateOptions(options);
  for (const offer of offers) {
    if (offer.name !== "permessage-deflate") continue;
    const accepted = acceptOffer(offer.params, settings);
    if (accepted !== null) return accepted;
  }
  return null;
}

function acceptOffer(
  params: [string, string | true][],
  settings: Required<PerMessageDeflateOptions>,
): { response: string; params: PerMessageDeflateParams } | null {
  const seen = new Map<string, string | true>();
  for (const [name, value] of params) {
    if (seen.has(name)) return null; // duplicate parameter
    seen.set(name, value);
    switch (name) {
      case "server_no_context_takeover":
      case "client_no_context_takeover":
        if (value !== true) return null;
        break;
      case "server_max_window_bits":
        if (value === true || !WINDOW_BITS.test(value)) return null;
        break;
      case "client_max_window_bits":
        if (value !== true && !WINDOW_BITS.test(value)) return null;
        break;
      default:
        return null; // unknown parameter
    }
  }
  // Our window: the client's limit wins; zlib cannot deflate with 8 bits.
  const requested = seen.get("server_max_window_bits");
  const serverBits = requested === undefined
    ? settings.serverMaxWindowBits
    : Math.min(Number(requested), settings.serverMaxWindowBits);
  if (serverBits < 9) return null;
  const serverNoContextTakeover = settings.serverNoContextTakeover ||
    seen.has("server_no_context_takeover");
  // "the server may either ignore the parameter or use the parameter to
  // avoid taking over the LZ77 sliding window unnecessarily by including"
  // it in the answer (RFC 7692 §7.1.1.2): it is echoed, so that the answer
  // and the params both say the client will not take over.
  // The client's window may be limited only when it said it can be; one
  // that cannot is asked to compress each message alone when a smaller
  // window was asked for (§7.1.1.2 lets the server add the parameter), so
  // that the server keeps no more of it than was meant.
  const clientOffer = seen.get("client_max_window_bits");
  const unlimitable = clientOffer === undefined &&
    settings.clientMaxWindowBits !== 0 && settings.clientMaxWindowBits < 15;
  const clientNoContextTakeover = settings.clientNoContextTakeover ||
    seen.has("client_no_context_takeover") || unlimitable;
  const response = ["permessage-deflate"];
  if (serverNoContextTakeover) response.push("server_no_context_takeover");
  if (clientNoContextTakeover) response.push("client_no_context_takeover");
  if (requested !== undefined || serverBits !== 15) {
    response.push(`server_max_window_bits=${serverBits}`);
  }
  let clientBits = clientOffer === undefined || clientOffer === true
    ? 15
    : Number(clientOffer);
  if (clientOffer !== undefined && settings.clientMaxWindowBits !== 0) {
    clientBits = Math.min(clientBits, settings.clientMaxWindowBits);
    response.push(`client_max_window_bits=${clientBits}`);
  }
  return {
    response: response.join("; "),
    params: {
      serverNoContextTakeover,
      clientNoContextTakeover,
      serverMaxWindowBits: serverBits,
      clientMaxWindowBits: clientBits,
      level: settings.level,
      memLevel: settings.memLevel,
      threshold: settings.threshold,
    },
  };
}

/**
 * Applies defaults to permessage-deflate settings and checks them.
 *
 * @param options The settings.
 * @returns Every setting (`clientMaxWindowBits` 0 when unset).
 * @throws {RangeError} When a setting is out of range.
 * @throws {TypeError} For an unknown setting or one of the wrong type.
 */
export function resolveDeflateOptions(
  options: PerMessageDeflateOptions,
): Required<PerMessageDeflateOptions> {
  checkSettingNames(options, DEFLATE_SETTINGS);
  return {
    serverNoContextTakeover: flag(
      "serverNoContextTakeover",
      options.serverNoContextTakeover,
      true,
    ),
    clientNoContextTakeover: flag(
      "clientNoContextTakeover",
      options.clientNoContextTakeover,
      true,
    ),
    serverMaxWindowBits: check(
      "serverMaxWindowBits",
      options.serverMaxWindowBits ?? 15,
      9,
      15,
    ),
    clientMaxWindowBits: options.clientMaxWindowBits === undefined
      ? 0
      : check("clientMaxWindowBits", options.clientMaxWindowBits, 8, 15),
    ...zlibSettings(options),
  };
}

/**
 * Applies defaults to a client's permessage-deflate settings and checks
 * them, as {@linkcode resolveDeflateOptions} checks a server's.
 *
 * @param options The settings.
 * @returns Every setting (`serverMaxWindowBits` and `clientMaxWindowBits`
 * 0 when unset).
 * @throws {RangeError} When a setting is out of range.
 * @throws {TypeError} For an unknown setting, or one of the wrong type.
 */
export function resolveClientDeflateOptions(
  options: ClientDeflateOptions,
): Required<ClientDeflateOptions> {
  checkSettingNames(options, DEFLATE_SETTINGS);
  return {
    serverNoContextTakeover: flag(
      "serverNoContextTakeover",
      options.serverNoContextTakeover,
      false,
    ),
    clientNoContextTakeover: flag(
      "clientNoContextTakeover",
      options.clientNoContextTakeover,
      false,
    ),
    serverMaxWindowBits: options.serverMaxWindowBits === undefined
      ? 0
      : check("serverMaxWindowBits", options.serverMaxWindowBits, 9, 15),
    clientMaxWindowBits: options.clientMaxWindowBits === undefined
      ? 0
      : check("clientMaxWindowBits", options.clientMaxWindowBits, 9, 15),
    ...zlibSettings(options),
  };
}

/** The compressor's settings, with defaults, checked: a server's or a client's. */
function zlibSettings(
  options: Pick<PerMessageDeflateOptions, "level" | "memLevel" | "threshold">,
): { level: number; memLevel: number; threshold: number } {
  return {
    level: check("level", options.level ?? 6, 0, 9),
    memLevel: check("memLevel", options.memLevel ?? 8, 1, 9),
    threshold: check(
      "threshold",
      options.threshold ?? 1024,
      0,
      Number.MAX_SAFE_INTEGER,
    ),
  };
}

function flag(
  name: string,
  value: boolean | undefined,
  fallback: boolean,
): boolean {
  if (value !== undefined && typeof value !== "boolean") {
    throw new TypeError(
      `Cannot use permessage-deflate: "${name}" must be a boolean, got ${
        describe(value)
      }`,
    );
  }
  return value ?? fallback;
}

function checkSettingNames(options: object, known: string[]): void {
  if (
    typeof options !== "object" || options === null || Array.isArray(options)
  ) {
    throw new TypeError(
      `Cannot use permessage-deflate: the settings must be true or an object, got ${
        JSON.stringify(options)
      }`,
    );
  }
  for (const name of Object.keys(options)) {
    if (!known.includes(name)) {
      throw new TypeError(
        `Cannot use permessage-deflate: unknown setting "${name}"; the settings are ${
          known.join(", ")
        }`,
      );
    }
  }
}

function check(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    const ErrorClass = typeof value === "number" ? RangeError : TypeError;
    throw new ErrorClass(
      `Cannot use permessage-deflate: "${name}" must be an integer from ${min} to ${max}, got ${
        shown(value)
      }`,
    );
  }
  return value;
}
