import assert from "node:assert/strict";
import * as mod from "../mod.ts";
import * as cli from "../src/cli/main.ts";
import * as redis from "../src/pubsub/redis_adapter.ts";

// A new export is a visible diff here: every public name is an API promise.
Deno.test("mod.ts exports exactly the public API", () => {
  assert.deepEqual(Object.keys(mod).sort(), [
    "BroadcastChannelAdapter",
    "CLIENT_HANDSHAKE_ERROR_CODE",
    "CLOSE_CODE",
    "CLOSE_REASON",
    "COPY_LIMIT",
    "ClientHandshake",
    "ClientHandshakeError",
    "Connection",
    "ConnectionClosedError",
    "ContextDeflater",
    "DEFAULT_MAX_FRAGMENTS",
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_HEAD_SIZE",
    "DEFAULT_MAX_PAYLOAD",
    "FrameParser",
    "FrameWriter",
    "HandshakeError",
    "HttpRequestParser",
    "MessageAssembler",
    "OPCODE",
    "PROTOCOL_ERROR_CODE",
    "PreparedMessage",
    "ProtocolError",
    "Server",
    "Socket",
    "applyMask",
    "computeAcceptKey",
    "connect",
    "deflateMessage",
    "encodeAcceptResponse",
    "encodeClosePayload",
    "encodeRejectionResponse",
    "inflateMessage",
    "isValidCloseCode",
    "negotiatePerMessageDeflate",
    "parseClosePayload",
    "parseExtensions",
    "prepareMessage",
    "reconnecting",
    "renderPrometheus",
    "serve",
    "serveHttpRequest",
    "serveStatic",
    "validateUpgradeRequest",
  ]);
});

Deno.test("the ./cli and ./redis entries export their documented names", () => {
  assert.deepEqual(Object.keys(cli).sort(), [
    "EXIT_CODE",
    "HELP",
    "VERSION",
    "main",
  ]);
  assert.deepEqual(Object.keys(redis).sort(), ["RedisAdapter"]);
});
