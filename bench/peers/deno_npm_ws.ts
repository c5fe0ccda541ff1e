// Benchmark app contract on Node's `ws` package running under Deno (used by bench/run.sh
// when `node` is not installed).
//   /echo       echo every message back with the same type
//   /broadcast  relay every message to all clients connected to /broadcast (sender included)
// usage: deno run -A peers/deno_npm_ws.ts PORT
import http from "node:http";
import { WebSocket, WebSocketServer } from "ws"; // npm:ws, from deno.json's imports

// npm:ws ships no types; this is the little of its API used here.
interface Peer {
  readyState: number;
  send(data: unknown, options: { binary: boolean }): void;
  on(
    event: "message",
    listener: (data: unknown, isBinary: boolean) => void,
  ): void;
  on(event: "error", listener: () => void): void;
}

const port = Number(Deno.args[0] ?? 8080);
const opts = {
  noServer: true,
  perMessageDeflate: false,
  maxPayload: 64 * 1024 * 1024,
};
const echo = new WebSocketServer({ ...opts, clientTracking: false });
const bcast = new WebSocketServer({ ...opts, clientTracking: true });

const server = http.createServer((_req, res) => {
  res.writeHead(426);
  res.end("websocket only\n");
});
server.on("upgrade", (req, socket, head) => {
  const path = (req.url ?? "").split("?")[0];
  if (path === "/echo") {
    echo.handleUpgrade(req, socket, head, (ws: Peer) => {
      ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
      ws.on("error", () => {});
    });
  } else if (path === "/broadcast") {
    bcast.handleUpgrade(req, socket, head, (ws: Peer) => {
      ws.on("message", (data, isBinary) => {
        for (const c of bcast.clients as Set<Peer>) {
          if (c.readyState === WebSocket.OPEN) {
            c.send(data, { binary: isBinary });
          }
        }
      });
      ws.on("error", () => {});
    });
  } else {
    socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  }
});
server.listen(
  port,
  "127.0.0.1",
  1024,
  () => console.log(`deno_npm_ws listening on 127.0.0.1:${port}`),
);
