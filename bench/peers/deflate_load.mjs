// Load generator for bench/deflate.ts: N npm:ws clients with permessage-deflate echo 1 KiB
// JSON-like text messages. Runs under Node (from bench/.work/peers) or under Deno (npm:ws).
//   usage: node deflate_load.mjs URL CLIENTS INFLIGHT WARMUP_S DURATION_S
// Opens one client and prints "warm" (the server has served a connection: its code is
// loaded), waits for a line on stdin, opens the other CLIENTS - 1 and prints "connected",
// waits for another line, then loads the server with all of them for WARMUP_S + DURATION_S
// and prints one JSON line:
//   {"messages": echoes counted in the window, "seconds": window, "errors": bad echoes,
//    "extensions": what the first client negotiated}
import process from "node:process";
import { WebSocket } from "ws";

const [url, clientsArg, inflightArg, warmupArg, durationArg] = process.argv
  .slice(2);
const clients = Number(clientsArg ?? 32);
const inflight = Number(inflightArg ?? 2);
const warmup = Number(warmupArg ?? 0.5) * 1000;
const duration = Number(durationArg ?? 3) * 1000;

// 256 distinct messages, exactly 1024 bytes of ASCII JSON each.
function message(seq) {
  let random = seq * 2654435761 >>> 0;
  const next = () => (random = (random * 1103515245 + 12345) >>> 0);
  const items = [];
  let text = "";
  for (let i = 0;; i++) {
    items.push({
      id: next() % 100000,
      name: `item-${next() % 1000}`,
      price: (next() % 100000) / 100,
      tags: ["new", "sale", "blue", "red"].filter(() => next() % 2),
      stock: next() % 50,
    });
    const candidate = JSON.stringify({
      type: "update",
      seq,
      user: `user-${next() % 500}`,
      ts: 1700000000000 + seq * 1000,
      items,
      pad: "",
    });
    if (candidate.length > 1024) break;
    text = candidate;
  }
  const parsed = JSON.parse(text);
  parsed.pad = "x".repeat(1024 - text.length);
  return JSON.stringify(parsed);
}
const pool = Array.from({ length: 256 }, (_, i) => message(i));
if (pool.some((m) => m.length !== 1024)) {
  throw new Error("messages must be 1024 bytes");
}

let counting = false;
let stopped = false;
let messages = 0;
let errors = 0;

function connect(c) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: true });
    const sent = [];
    let seq = c * 7;
    const send = () => {
      const text = pool[seq++ % pool.length];
      sent.push(text);
      ws.send(text);
    };
    ws.on("message", (data) => {
      if (data.toString() !== sent.shift()) errors++;
      if (counting) messages++;
      if (!stopped) send();
    });
    ws.on("error", reject);
    ws.once("open", () => resolve({ ws, send }));
  });
}

const stdin = [];
const waiters = [];
process.stdin.on("data", () => {
  const waiter = waiters.shift();
  if (waiter) waiter();
  else stdin.push(1);
});
const nextLine = () =>
  stdin.length > 0
    ? (stdin.shift(), Promise.resolve())
    : new Promise((resolve) => waiters.push(resolve));

const sockets = [await connect(0)];
console.log("warm");
await nextLine();
sockets.push(
  ...await Promise.all(
    Array.from({ length: clients - 1 }, (_, c) => connect(c + 1)),
  ),
);
console.log("connected");
await nextLine();
process.stdin.pause();

for (const { send } of sockets) for (let i = 0; i < inflight; i++) send();
await new Promise((resolve) => setTimeout(resolve, warmup));
counting = true;
const start = performance.now();
await new Promise((resolve) => setTimeout(resolve, duration));
counting = false;
const seconds = (performance.now() - start) / 1000;
stopped = true;
const extensions = sockets[0].ws.extensions;
await Promise.all(sockets.map(({ ws }) =>
  new Promise((resolve) => {
    ws.once("close", resolve);
    ws.close(1000);
    setTimeout(() => ws.terminate(), 2000).unref?.();
  })
));
console.log(JSON.stringify({ messages, seconds, errors, extensions }));
process.exit(0);
