// Echo server on Node's `ws` package with permessage-deflate on, for bench/deflate.ts.
// Runs under Node (from bench/.work/peers, where `ws` is installed) or under Deno (npm:ws).
//   usage: node node_ws_deflate.mjs [ctx|nctx]
//     ctx   ws's defaults: both sides keep their compression window
//     nctx  serverNoContextTakeover + clientNoContextTakeover: each message on its own
// Listens on 127.0.0.1, a free port, and prints "listening PORT".
import http from "node:http";
import process from "node:process";
import { WebSocketServer } from "ws";

const mode = process.argv[2] ?? "ctx";
const wss = new WebSocketServer({
  noServer: true,
  clientTracking: false,
  maxPayload: 64 * 1024 * 1024,
  perMessageDeflate: mode === "nctx"
    ? { serverNoContextTakeover: true, clientNoContextTakeover: true }
    : true,
});

const server = http.createServer((_req, res) => {
  res.writeHead(426);
  res.end("websocket only\n");
});
server.on("upgrade", (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on("error", () => {});
  });
});
server.listen(0, "127.0.0.1", 1024, () => {
  console.log(`listening ${server.address().port}`);
});
