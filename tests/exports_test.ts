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
    "ContextInflater",
    "DEFAULT_MAX_FRAGMENTS",
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_HEAD_SIZE",
    "DEFAULT_MAX_PAYLOAD",
    "FrameParser",
    "FrameWriter",
    "HandshakeError",
    "HttpRequestError",
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

// Importing the module must stay cheap: node:zlib alone costs ~30 ms and
// ~6 MB at startup, so compression loads it on first use instead.
Deno.test("mod.ts loads no node: module at import (node:zlib waits for the first compressed message)", async () => {
  const info = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", new URL("../mod.ts", import.meta.url).href],
    stdout: "piped",
  }).output();
  assert.ok(info.success, "deno info failed");
  const graph = JSON.parse(new TextDecoder().decode(info.stdout)) as {
    modules: {
      specifier: string;
      dependencies?: { specifier: string; code?: unknown }[];
    }[];
  };
  const loaded = graph.modules.flatMap((module) =>
    (module.dependencies ?? [])
      .filter((dep) =>
        dep.code !== undefined && dep.specifier.startsWith("node:")
      )
      .map((dep) => `${module.specifier} imports ${dep.specifier}`)
  );
  assert.deepEqual(loaded, []);
  assert.ok(
    graph.modules.some((module) =>
      module.specifier.endsWith("/deflate_codec.ts")
    ),
    "the graph holds the compression code",
  );
});

const MOD = JSON.stringify(new URL("../mod.ts", import.meta.url).href);

/** Runs `script` (JavaScript) in a fresh process; what it logged, as JSON. */
async function evalJson(script: string): Promise<unknown> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=js", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

Deno.test("mod.ts compiles no WebAssembly at import: the unmasking kernel is instantiated with the first payload of 1 KiB or more", async () => {
  const script = `
    let modules = 0;
    const Module = WebAssembly.Module;
    WebAssembly.Module = function (bytes) {
      modules++;
      return new Module(bytes);
    };
    const { applyMask } = await import(${MOD});
    const atImport = modules;
    applyMask(new Uint8Array(100), new Uint8Array([1, 2, 3, 4]));
    const afterSmall = modules;
    applyMask(new Uint8Array(4096), new Uint8Array([1, 2, 3, 4]));
    applyMask(new Uint8Array(4096), new Uint8Array([1, 2, 3, 4]));
    console.log(JSON.stringify([atImport, afterSmall, modules]));
  `;
  assert.deepEqual(await evalJson(script), [0, 0, 1]);
});

Deno.test("where WebAssembly is unavailable, the unmasking kernel is tried once, and masking still works in JavaScript", async () => {
  const script = `
    let attempts = 0;
    WebAssembly.Module = function () {
      attempts++;
      throw new Error("no WebAssembly here");
    };
    const { applyMask } = await import(${MOD});
    const key = new Uint8Array([1, 2, 3, 4]);
    let ok = true;
    for (let round = 0; round < 3; round++) {
      const data = new Uint8Array(4096);
      applyMask(data, key);
      ok &&= data.every((byte, i) => byte === key[i & 3]);
    }
    console.log(JSON.stringify([attempts, ok]));
  `;
  assert.deepEqual(await evalJson(script), [1, true]);
});
