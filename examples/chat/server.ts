/**
 * A chat server with rooms: the page (`index.html`, beside this file) and the
 * WebSocket share one port. Rooms are topics; each room keeps its last
 * messages for newcomers and announces how many are present.
 *
 *     deno run -A examples/chat/server.ts [--port N] [--hostname H] [--history N]
 *
 * Then open http://localhost:8765/ in two browser tabs. The port comes from
 * `--port`, else the PORT environment variable, else 8765; `--port 0` picks a
 * free port. It listens on every interface (0.0.0.0) unless `--hostname` says
 * where (`--hostname 127.0.0.1`: this machine only). `--history` is how many
 * messages a room keeps (default 50).
 *
 * What a public chat needs beyond the protocol: WebSockets opened by pages
 * of other sites are refused (403), since a page elsewhere could otherwise
 * chat as its visitors; a nick is unique within its room (whatever its case
 * or invisible characters, and none may reverse how it shows); each socket
 * may send at most 5 messages a second
 * (in bursts of 10); presence updates carry the one change, not the whole
 * list, so a room of N costs O(N) per arrival; keepalive finds a vanished
 * client within 20 s, freeing its nick for its own reconnection.
 *
 * The protocol: one JSON object per text message, discriminated by `type`.
 *
 * Client → server:
 * - `{"type":"join","room":"lobby","nick":"ada"}`: enter a room (leaving the
 *   current one). Rooms are 1-32 of `a-z 0-9 _ -`; nicks 1-24 characters.
 * - `{"type":"say","text":"hello"}`: say something in the room (1-2000
 *   characters).
 * - `{"type":"leave"}`: leave the room.
 *
 * Server → client:
 * - `{"type":"joined","room","nick","nicks":[...],"history":[Line...]}`: to
 *   the one who joined, with who is present and the room's last messages,
 *   oldest first.
 * - `{"type":"message",...Line}` where Line is
 *   `{"room","nick","text","time"}` (`time` in ms since the epoch): to everyone
 *   in the room, the sender included.
 * - `{"type":"presence","room","count","event":"join"|"leave","nick"}`: to
 *   everyone in the room when someone joins or leaves.
 * - `{"type":"left","room"}`: to the one who left.
 * - `{"type":"error","message"}`: the last request was not understood.
 *
 * @module
 */
import { serve, type Server, serveStatic, type Socket } from "../../mod.ts";
import { parseArgs } from "node:util";
import {
  checkHostname,
  listeningAt,
  listenOrExit,
  portFrom,
} from "../_listen.ts";

/** One chat message, as kept in a room's history. */
export interface Line {
  room: string;
  nick: string;
  text: string;
  time: number;
}

/** What the server sends. */
export type ServerMessage =
  | {
    type: "joined";
    room: string;
    nick: string;
    nicks: string[];
    history: Line[];
  }
  | ({ type: "message" } & Line)
  | {
    type: "presence";
    room: string;
    count: number;
    event: "join" | "leave";
    nick: string;
  }
  | { type: "left"; room: string }
  | {
    type: "error";
    message: string;
    /** For the errors a client may act on. */
    code?: "nick-taken" | "rate-limited";
  };

/** What a client sends. */
export type ClientMessage =
  | { type: "join"; room: string; nick: string }
  | { type: "say"; text: string }
  | { type: "leave" };

/** Options of {@linkcode startChat}. */
export interface ChatOptions {
  /** @default {8765} */
  port?: number;
  /** @default {"0.0.0.0"} */
  hostname?: string;
  /** Messages each room keeps for newcomers. @default {50} */
  history?: number;
  /**
   * Rooms kept at most; when full, the room left empty longest is dropped
   * (with its history) to make way for a new one. @default {1000}
   */
  maxRooms?: number;
  /** Called once listening. */
  onListen?: (addr: Deno.NetAddr) => void;
  /** Aborting it shuts the server down. */
  signal?: AbortSignal;
}

const ROOM = /^[a-z0-9_-]{1,32}$/;
const MAX_NICK = 24;
const MAX_TEXT = 2000;
// Messages a socket may send: a burst of BURST, then RATE a second.
const RATE = 5;
const BURST = 10;

/** A room: its history and who is in it. */
interface Room {
  history: Line[];
  members: Map<Socket, string>;
}

/**
 * Starts the chat server.
 *
 * @param options Where to listen and how much history to keep.
 * @returns The server; `server.shutdown()` stops it.
 */
export function startChat(options: ChatOptions = {}): Server {
  const keep = options.history ?? 50;
  const maxRooms = options.maxRooms ?? 1000;
  // In the order they were created or last emptied: the first empty one is
  // the one left alone longest.
  const rooms = new Map<string, Room>();
  const dropAnEmptyRoom = () => {
    for (const [name, room] of rooms) {
      if (room.members.size === 0) return rooms.delete(name);
    }
    return false;
  };
  // A URL, not its pathname: that keeps percent-encoding ("my%20code").
  const page = serveStatic(new URL(".", import.meta.url));

  const send = (socket: Socket, message: ServerMessage) =>
    socket.trySend(JSON.stringify(message));
  const publish = (room: string, message: ServerMessage) =>
    server.publish(`room:${room}`, JSON.stringify(message));
  const presence = (name: string, event: "join" | "leave", nick: string) => {
    const count = rooms.get(name)?.members.size ?? 0;
    publish(name, { type: "presence", room: name, count, event, nick });
  };

  const server: Server = serve({
    port: options.port ?? 8765,
    hostname: options.hostname ?? "0.0.0.0",
    signal: options.signal,
    onListen: options.onListen,
    maxPayload: 16 * 1024,
    // Each is checked on a shared clock up to a second late: a vanished
    // client is found within 9 + 1 + 9 + 1 = 20 s.
    pingInterval: 9_000,
    pongTimeout: 9_000,
    // Same origin only: a page of another site may not open a socket here
    // with its visitors' browsers. (No Origin: not a browser; allowed.)
    onUpgrade: (request) => {
      const origin = request.headers.get("origin");
      if (
        origin === null || URL.parse(origin)?.host === new URL(request.url).host
      ) {
        return;
      }
      return new Response("Cross-origin WebSockets are not allowed\n", {
        status: 403,
      });
    },
    // The page, and nothing else beside it (not this file).
    fetch: (request) => {
      const { pathname } = new URL(request.url);
      return pathname === "/" || pathname === "/index.html"
        ? page(request)
        : new Response("Not Found", { status: 404 });
    },
  }, async (socket) => {
    let current: { room: string; nick: string } | null = null;
    // A token bucket: BURST lines at once, then RATE a second.
    let tokens = BURST;
    let refilled = performance.now();

    const leave = () => {
      if (current === null) return;
      const { room, nick } = current;
      current = null;
      socket.unsubscribe(`room:${room}`);
      const left = rooms.get(room);
      left?.members.delete(socket);
      if (left?.members.size === 0) {
        // Now the most recently emptied: to the back of the line.
        rooms.delete(room);
        rooms.set(room, left);
      }
      presence(room, "leave", nick);
    };

    try {
      for await (const data of socket) {
        const now = performance.now();
        tokens = Math.min(BURST, tokens + (now - refilled) * RATE / 1000);
        refilled = now;
        if (tokens < 1) {
          send(socket, {
            type: "error",
            code: "rate-limited",
            message: `Slow down: at most ${RATE} messages a second`,
          });
          continue;
        }
        tokens--;
        const message = parse(data);
        if (typeof message === "string") {
          send(socket, { type: "error", message });
          continue;
        }
        if (message.type === "join") {
          let room = rooms.get(message.room);
          const key = nickKey(message.nick);
          const taken = room !== undefined &&
            [...room.members].some(([member, nick]) =>
              member !== socket && nickKey(nick) === key
            );
          if (taken) {
            send(socket, {
              type: "error",
              code: "nick-taken",
              message: `The nick ${message.nick} is taken in ${message.room}`,
            });
            continue;
          }
          if (room === undefined) {
            if (rooms.size >= maxRooms && !dropAnEmptyRoom()) {
              send(socket, { type: "error", message: "Too many rooms" });
              continue;
            }
            room = { history: [], members: new Map() };
            rooms.set(message.room, room);
          }
          leave();
          current = { room: message.room, nick: message.nick };
          room.members.set(socket, message.nick);
          send(socket, {
            type: "joined",
            room: message.room,
            nick: message.nick,
            nicks: [...room.members.values()].sort(),
            history: room.history,
          });
          socket.subscribe(`room:${message.room}`);
          presence(message.room, "join", message.nick);
        } else if (message.type === "say") {
          if (current === null) {
            send(socket, { type: "error", message: "Join a room first" });
            continue;
          }
          const line: Line = {
            room: current.room,
            nick: current.nick,
            text: message.text,
            time: Date.now(),
          };
          const history = rooms.get(current.room)!.history;
          history.push(line);
          if (history.length > keep) history.splice(0, history.length - keep);
          publish(current.room, { type: "message", ...line });
        } else {
          const room = current?.room;
          leave();
          if (room !== undefined) send(socket, { type: "left", room });
        }
      }
    } finally {
      leave();
    }
  });
  return server;
}

/**
 * What makes two nicks the same: "Ada", "ada" and "ada" with an invisible
 * character (U+200B, U+034F, U+3164...) look alike, so they are one nick; a
 * nick of nothing but such characters is no nick. (Letters of other scripts
 * that look alike, Cyrillic "а" for Latin "a", are not caught.)
 */
function nickKey(nick: string): string {
  // Lowercased before the marks go: "İ" lowercases to "i" and a combining
  // dot above.
  return nick.normalize("NFKC").toLowerCase().replace(INVISIBLE, "");
}

const BIDI_CONTROL = /\p{Bidi_Control}/u;

// Controls, format characters, separators, combining marks, and the
// letters and symbols that show as blanks (Hangul fillers, braille blank).
const INVISIBLE = /[\p{C}\p{Z}\p{M}\u115F\u1160\u3164\uFFA0\u2800]/gu;

/** Validates a client message; a string is what was wrong with it. */
export function parse(data: string | Uint8Array): ClientMessage | string {
  if (typeof data !== "string") return "Messages must be JSON text";
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return "Messages must be JSON";
  }
  if (typeof value !== "object" || value === null) {
    return "Messages must be JSON objects";
  }
  const message = value as Record<string, unknown>;
  switch (message.type) {
    case "join": {
      const { room, nick } = message;
      if (typeof room !== "string" || !ROOM.test(room)) {
        return "A room is 1-32 characters of a-z, 0-9, _ and -";
      }
      if (
        typeof nick !== "string" || nickKey(nick) === "" ||
        nick.trim().length > MAX_NICK
      ) {
        return `A nick is 1-${MAX_NICK} characters`;
      }
      // A right-to-left override would show "\u202Enaed" as "dean": the
      // nick of someone else, though its key differs.
      if (BIDI_CONTROL.test(nick)) {
        return "A nick may not hold bidirectional controls (U+202A-U+202E, U+2066-U+2069...)";
      }
      return { type: "join", room, nick: nick.trim() };
    }
    case "say": {
      const { text } = message;
      if (typeof text !== "string" || text.trim() === "") {
        return "Say something";
      }
      if (text.length > MAX_TEXT) {
        return `A message is at most ${MAX_TEXT} characters`;
      }
      return { type: "say", text };
    }
    case "leave":
      return { type: "leave" };
    default:
      return `Unknown message type ${JSON.stringify(message.type)}`;
  }
}

/** The command line's `--port`, `--hostname` and `--history`. */
function args() {
  try {
    return parseArgs({
      args: Deno.args,
      options: {
        port: { type: "string" },
        hostname: { type: "string", default: "0.0.0.0" },
        history: { type: "string" },
      },
    }).values;
  } catch (error) {
    console.error((error as Error).message);
    Deno.exit(2);
  }
}

/** `--history N` or `--history=N`, an integer from 0 to 65535. */
function history(fallback: number): number {
  const text = args().history;
  if (text === undefined) return fallback;
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) {
    console.error(
      `--history must be an integer from 0 to 65535, got ${
        JSON.stringify(text)
      }`,
    );
    Deno.exit(2);
  }
  return Number(text);
}

if (import.meta.main) {
  const controller = new AbortController();
  // Ctrl-C shuts down gracefully; a second one exits at once. (Listened
  // for before the server says where it listens: one may come at once.)
  Deno.addSignalListener("SIGINT", () => {
    if (controller.signal.aborted) Deno.exit(130);
    controller.abort();
  });
  const server = listenOrExit(() =>
    startChat({
      port: portFrom(args().port),
      hostname: checkHostname(args().hostname),
      history: history(50),
      signal: controller.signal,
      onListen: (addr) =>
        console.log(`Chat on ${listeningAt("http", addr, "/")}`),
    })
  );
  await server.finished;
  Deno.exit(0);
}
