import assert from "node:assert/strict";
import {
  type ProtocolErrorCode,
  serve,
  type ServeOptions,
  type ServerLogEvent,
} from "../../mod.ts";
import {
  closePayload,
  concat,
  echo,
  encodeRequest,
  frame,
  LOCAL,
  NpmClient,
  OP,
  rawHandshake,
  RawPeer,
  SocketTracker,
  upgradeHeaders,
  wsUrl,
} from "./_helpers.ts";

interface HostileCase {
  name: string;
  /** What the hostile peer sends after a valid handshake. */
  bytes: Uint8Array;
  closeCode: number;
  errorCode: ProtocolErrorCode;
  options?: Partial<ServeOptions>;
}

const CASES: HostileCase[] = [
  {
    name: "garbage bytes after the handshake",
    bytes: new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0x00, 0x11, 0x22, 0x33]),
    closeCode: 1002,
    errorCode: "RESERVED_BITS",
  },
  {
    name: "an unmasked frame (RFC 6455 §5.1)",
    bytes: frame(OP.text, "no mask", { mask: false }),
    closeCode: 1002,
    errorCode: "UNMASKED_FRAME",
  },
  {
    name: "a frame header declaring 2^40 bytes",
    bytes: frame(OP.binary, new Uint8Array(0), { declaredLength: 2 ** 40 }),
    closeCode: 1009,
    errorCode: "MESSAGE_TOO_BIG",
  },
  {
    name: "a 64-bit length with its most significant bit set (RFC 6455 §5.2)",
    bytes: (() => {
      const bytes = frame(OP.binary, new Uint8Array(0), {
        declaredLength: 2 ** 40,
      });
      bytes[2] = 0x80;
      return bytes;
    })(),
    closeCode: 1002,
    errorCode: "INVALID_LENGTH",
  },
  {
    name: "a message one byte over maxPayload",
    bytes: frame(OP.binary, new Uint8Array(1025)),
    closeCode: 1009,
    errorCode: "MESSAGE_TOO_BIG",
    options: { maxPayload: 1024 },
  },
  {
    name: "fragments over maxPayload in total",
    bytes: concat(
      frame(OP.binary, new Uint8Array(600), { fin: false }),
      frame(OP.continuation, new Uint8Array(600)),
    ),
    closeCode: 1009,
    errorCode: "MESSAGE_TOO_BIG",
    options: { maxPayload: 1024 },
  },
  {
    name: "more fragments than maxFragments",
    bytes: concat(
      ...Array.from(
        { length: 4 },
        () => frame(OP.continuation, "x", { fin: false }),
      ).map((bytes, i) =>
        i === 0 ? frame(OP.text, "x", { fin: false }) : bytes
      ),
      frame(OP.continuation, "x"),
    ),
    closeCode: 1009,
    errorCode: "TOO_MANY_FRAGMENTS",
    options: { maxFragments: 4 },
  },
  {
    name: "invalid UTF-8 in a text message (RFC 6455 §8.1)",
    bytes: frame(OP.text, new Uint8Array([0x68, 0x69, 0xc3, 0x28])),
    closeCode: 1007,
    errorCode: "INVALID_UTF8",
  },
  {
    name: "invalid UTF-8 split across fragments",
    bytes: concat(
      frame(OP.text, new Uint8Array([0x61, 0xe2, 0x82]), { fin: false }),
      frame(OP.continuation, new Uint8Array([0x28])),
    ),
    closeCode: 1007,
    errorCode: "INVALID_UTF8",
  },
  {
    name: "invalid UTF-8 in a close reason (RFC 6455 §5.5.1)",
    bytes: frame(
      OP.close,
      concat(closePayload(1000), new Uint8Array([0xff, 0xfe])),
    ),
    closeCode: 1007,
    errorCode: "INVALID_UTF8",
  },
  {
    name: "reserved opcode 0x3 (RFC 6455 §5.2)",
    bytes: frame(0x3, "?"),
    closeCode: 1002,
    errorCode: "RESERVED_OPCODE",
  },
  {
    name: "reserved control opcode 0xB (RFC 6455 §5.2)",
    bytes: frame(0xb),
    closeCode: 1002,
    errorCode: "RESERVED_OPCODE",
  },
  {
    name: "RSV1 without a negotiated extension (RFC 6455 §5.2)",
    bytes: frame(OP.text, "compressed?", { rsv: 0x40 }),
    closeCode: 1002,
    errorCode: "RESERVED_BITS",
  },
  {
    name: "a 126-byte ping (RFC 6455 §5.5)",
    bytes: frame(OP.ping, new Uint8Array(126)),
    closeCode: 1002,
    errorCode: "CONTROL_FRAME_TOO_LONG",
  },
  {
    name: "a fragmented ping (RFC 6455 §5.5)",
    bytes: frame(OP.ping, "p", { fin: false }),
    closeCode: 1002,
    errorCode: "FRAGMENTED_CONTROL_FRAME",
  },
  {
    name: "a continuation with no message to continue (RFC 6455 §5.4)",
    bytes: frame(OP.continuation, "orphan"),
    closeCode: 1002,
    errorCode: "UNEXPECTED_CONTINUATION",
  },
  {
    name: "a new message inside a fragmented one (RFC 6455 §5.4)",
    bytes: concat(
      frame(OP.text, "a", { fin: false }),
      frame(OP.text, "b"),
    ),
    closeCode: 1002,
    errorCode: "EXPECTED_CONTINUATION",
  },
  {
    name: "a close frame with a one-byte payload (RFC 6455 §5.5.1)",
    bytes: frame(OP.close, new Uint8Array([0x03])),
    closeCode: 1002,
    errorCode: "INVALID_CLOSE_PAYLOAD",
  },
  {
    name: "a close frame with code 1005 (RFC 6455 §7.4.1)",
    bytes: frame(OP.close, closePayload(1005)),
    closeCode: 1002,
    errorCode: "INVALID_CLOSE_CODE",
  },
];

for (const hostile of CASES) {
  Deno.test(
    `serve() fails ${hostile.name} with ${hostile.closeCode} and keeps serving others`,
    async () => {
      const events: ServerLogEvent[] = [];
      const tracker = new SocketTracker();
      await using server = serve(
        { ...LOCAL, logger: (e) => events.push(e), ...hostile.options },
        tracker.wrap(echo),
      );
      await using good = await NpmClient.connect(wsUrl(server.addr));
      assert.equal(await good.roundTrip("before"), "before");

      using peer = await rawHandshake(server.addr);
      await peer.write(hostile.bytes);
      const { code } = await peer.readClose();
      assert.equal(code, hostile.closeCode, "the close code on the wire");
      await peer.readToEof();

      const info = await tracker.closed(peer.port);
      assert.equal(info.code, hostile.closeCode);
      assert.equal(info.wasClean, false);
      assert.equal(info.error?.code, hostile.errorCode);
      assert.equal(info.error?.closeCode, hostile.closeCode);

      assert.equal(await good.roundTrip("after"), "after");
      const logged = events.find((event) =>
        event.type === "protocol-error" && event.remoteAddr.port === peer.port
      );
      assert.ok(logged, "the protocol error is logged");
      assert.equal(
        logged.type === "protocol-error" && logged.code,
        hostile.errorCode,
      );
    },
  );
}

Deno.test(
  "serve() reports 1006 when a peer vanishes in the middle of a frame",
  async () => {
    const tracker = new SocketTracker();
    await using server = serve(LOCAL, tracker.wrap(echo));
    await using good = await NpmClient.connect(wsUrl(server.addr));

    const peer = await rawHandshake(server.addr);
    const port = peer.port;
    const whole = frame(OP.binary, new Uint8Array(100));
    await peer.write(whole.subarray(0, 50));
    peer.close();

    assert.deepEqual(await tracker.closed(port), {
      code: 1006,
      reason: "",
      wasClean: false,
    });
    assert.equal(await good.roundTrip("after"), "after");
  },
);

Deno.test(
  "serve() rejects an oversized head with 431 and keeps serving others",
  async () => {
    await using server = serve({ ...LOCAL, maxHeadSize: 4096 }, echo);
    await using good = await NpmClient.connect(wsUrl(server.addr));
    using peer = await RawPeer.connect(server.addr);
    // Never finish the head: the server must stop at its limit.
    await peer.write(
      `GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Flood: ${"a".repeat(8192)}`,
    );
    const response = await peer.readResponse();
    assert.equal(response.status, 431, response.statusLine);
    await peer.readToEof();
    assert.equal(await good.roundTrip("after"), "after");
  },
);

Deno.test(
  "serve() answers random bytes instead of a handshake with 400 and keeps serving others",
  async () => {
    await using server = serve(LOCAL, echo);
    await using good = await NpmClient.connect(wsUrl(server.addr));
    using peer = await RawPeer.connect(server.addr);
    // Deterministic "random" bytes with no CR or LF, then the end of a head.
    let seed = 12345;
    const noise = new Uint8Array(2000).map(() => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      const byte = seed >>> 16 & 0xff;
      return byte === 10 || byte === 13 ? 0 : byte;
    });
    await peer.write(concat(noise, new TextEncoder().encode("\r\n\r\n")));
    const response = await peer.readResponse();
    assert.equal(response.status, 400, response.statusLine);
    assert.match(response.body, /Malformed request line/);
    await peer.readToEof();
    assert.equal(await good.roundTrip("after"), "after");
  },
);

Deno.test(
  "serve() keeps serving while many peers send garbage at once",
  async () => {
    await using server = serve(LOCAL, echo);
    await using good = await NpmClient.connect(wsUrl(server.addr));
    const peers = await Promise.all(
      Array.from({ length: 20 }, () => rawHandshake(server.addr)),
    );
    try {
      await Promise.all(
        peers.map((peer, i) =>
          peer.write(
            i % 2 === 0
              ? frame(OP.text, "x", { mask: false })
              : frame(OP.text, new Uint8Array([0xff])),
          )
        ),
      );
      const codes = await Promise.all(
        peers.map(async (peer) => (await peer.readClose()).code),
      );
      assert.deepEqual(
        codes,
        Array.from({ length: 20 }, (_, i) => i % 2 === 0 ? 1002 : 1007),
      );
      await Promise.all(peers.map((peer) => peer.readToEof()));
    } finally {
      for (const peer of peers) peer.close();
    }
    assert.equal(await good.roundTrip("after"), "after");
  },
);

Deno.test(
  "serve() handles a hostile handshake and a good client on the same server",
  async () => {
    await using server = serve(LOCAL, echo);
    using peer = await RawPeer.connect(server.addr);
    // Half a handshake, left hanging while a good client comes and goes.
    const request = encodeRequest(
      "GET / HTTP/1.1",
      upgradeHeaders(server.addr),
    );
    await peer.write(request.subarray(0, 20));
    {
      await using good = await NpmClient.connect(wsUrl(server.addr));
      assert.equal(await good.roundTrip("meanwhile"), "meanwhile");
    }
    await peer.write(request.subarray(20));
    const response = await peer.readResponse();
    assert.equal(response.status, 101, response.statusLine);
  },
);

Deno.test("clients that reset their connection while it waits to be accepted are counted as connection errors, and accepting goes on at once (no accept-error, no pause)", async () => {
  const events: ServerLogEvent[] = [];
  await using server = serve(
    { ...LOCAL, logger: (event) => events.push(event) },
    echo,
  );
  // Another process connects and resets five times while this one's event
  // loop is blocked, so the resets wait in the listen backlog; accept()
  // then fails with ENOTCONN for each.
  const script = `
    import net from "node:net";
    for (let i = 0; i < 5; i++) {
      await new Promise((resolve) => {
        const socket = net.connect(${server.addr.port}, "127.0.0.1", () => {
          socket.resetAndDestroy();
          resolve();
        });
        socket.on("error", () => {});
      });
    }`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    stdout: "null",
    stderr: "inherit",
  }).outputSync();
  assert.equal(child.code, 0);
  await using client = await NpmClient.connect(wsUrl(server.addr));
  assert.equal(await client.roundTrip("still serving"), "still serving");
  const types = events.map((event) => event.type);
  assert.equal(types.filter((type) => type === "accept-error").length, 0);
  const errors = types.filter((type) => type === "connection-error").length;
  assert.ok(errors >= 1, `logged: ${types.join(", ")}`);
  assert.equal(server.stats().connectionErrors, errors);
});
