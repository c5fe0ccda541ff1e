import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import {
  type PerMessageDeflateOptions,
  type PerMessageDeflateParams,
  serve,
} from "../../mod.ts";
import {
  assertBytes,
  DenoClient,
  echo,
  LOCAL,
  NpmClient,
  rawUpgrade,
  type Received,
  SocketTracker,
  wsUrl,
} from "../server/_helpers.ts";
import {
  CHROMIUM,
  HAVE_CHROMIUM,
  OFFER,
  randomBytes,
  repetitiveBytes,
  wordText,
} from "./_helpers.ts";

const BASE = "permessage-deflate; server_no_context_takeover; " +
  "client_no_context_takeover";

/** Messages that exercise both directions' compression, twice each. */
function messages(): Received[] {
  const list: Received[] = [];
  for (const seed of [1, 2]) {
    list.push(
      "short",
      wordText(64 * 1024, seed),
      wordText(64 * 1024, seed), // the same again: a warm window
      repetitiveBytes(200 * 1024, seed),
      randomBytes(20 * 1024, seed),
    );
  }
  return list;
}

/** The UTF-8 size of {@linkcode messages}. */
const RAW_SIZE = messages().reduce(
  (sum, m) =>
    sum +
    (typeof m === "string" ? new TextEncoder().encode(m).length : m.length),
  0,
);

async function assertEchoes(client: NpmClient | DenoClient): Promise<void> {
  for (const message of messages()) {
    const reply = await client.roundTrip(message);
    if (typeof message === "string") assert.ok(reply === message);
    else assertBytes(reply, message);
  }
}

/**
 * Connects npm:ws with `clientOptions` to a server with `serverOptions` and
 * returns what was offered, what was answered and the server's parameters,
 * after checking echoes both ways.
 */
async function npmSession(
  serverOptions: boolean | PerMessageDeflateOptions,
  clientOptions: boolean | Record<string, unknown>,
) {
  const tracker = new SocketTracker();
  await using server = serve(
    { ...LOCAL, perMessageDeflate: serverOptions },
    tracker.wrap(echo),
  );
  await using client = await NpmClient.connectWith(wsUrl(server.addr), [], {
    perMessageDeflate: clientOptions,
  });
  const socket = await tracker.socket(client.port);
  await assertEchoes(client);
  assert.equal(client.error, null);
  assert.deepEqual(await client.close(1000), { code: 1000, reason: "" });
  const stats = server.stats();
  return {
    // Wire bytes each way over the messages' own size.
    ratioIn: stats.bytesReceived / RAW_SIZE,
    ratioOut: stats.bytesSent / RAW_SIZE,
    offer: socket.headers.get("sec-websocket-extensions"),
    answer: (client.upgradeHeaders["sec-websocket-extensions"] ?? null) as
      | string
      | null,
    extensions: client.ws.extensions as string,
    params: socket.perMessageDeflate,
  };
}

// ---------------------------------------------------------------------------
// npm:ws
// ---------------------------------------------------------------------------

Deno.test("npm:ws with perMessageDeflate: true offers permessage-deflate with client_max_window_bits, and echoes compress", async () => {
  const session = await npmSession(true, true);
  assert.equal(session.offer, OFFER);
  assert.equal(session.answer, BASE);
  assert.equal(session.extensions, "permessage-deflate");
  assert.equal(session.params?.serverNoContextTakeover, true);
  assert.equal(session.params?.clientNoContextTakeover, true);
  // Compressed both ways: the client's frames and ours.
  assert.ok(session.ratioIn < 0.25, `in: ${session.ratioIn}`);
  assert.ok(session.ratioOut < 0.25, `out: ${session.ratioOut}`);
});

Deno.test("npm:ws allowing the server to keep its window gets context takeover from a server that allows it (RFC 7692 §7.1.1.1)", async () => {
  const clientOptions = { serverNoContextTakeover: false };
  // npm:ws asks for nothing about context takeover then.
  const byDefault = await npmSession(true, clientOptions);
  assert.equal(byDefault.offer, OFFER);
  assert.equal(byDefault.answer, BASE);
  // A server that may keep its window keeps it.
  const keeping = await npmSession(
    { serverNoContextTakeover: false },
    clientOptions,
  );
  assert.equal(keeping.offer, OFFER);
  assert.equal(
    keeping.answer,
    "permessage-deflate; client_no_context_takeover",
  );
  assert.equal(keeping.params?.serverNoContextTakeover, false);
  assert.equal(keeping.params?.clientNoContextTakeover, true);
  // The warm window pays: repeated messages cost less than without it.
  assert.ok(
    keeping.ratioOut < byDefault.ratioOut,
    `${keeping.ratioOut} vs ${byDefault.ratioOut}`,
  );
});

Deno.test("npm:ws insisting on its own context takeover (clientNoContextTakeover: false) refuses our default answer: the handshake fails", async () => {
  // By default our server answers client_no_context_takeover, which RFC
  // 7692 §7.1.1.2 allows ("A server MAY include ... even if the offer
  // didn't"), so that it keeps no inflate state. npm:ws with
  // clientNoContextTakeover set to false (not left undefined) throws
  // 'Unexpected parameter "client_no_context_takeover"' on any such answer
  // and aborts. Its offer says nothing of it, so the server cannot tell and
  // decline; a server with clientNoContextTakeover: false accepts it
  // (client_context_test.ts).
  for (const serverNoContextTakeover of [true, false]) {
    await using server = serve(
      { ...LOCAL, perMessageDeflate: { serverNoContextTakeover } },
      echo,
    );
    await assert.rejects(
      NpmClient.connectWith(wsUrl(server.addr), [], {
        perMessageDeflate: {
          clientNoContextTakeover: false,
          serverNoContextTakeover: false,
        },
      }),
      { message: "Invalid Sec-WebSocket-Extensions header" },
    );
  }
});

Deno.test("npm:ws asking for server_no_context_takeover gets it from a server that would keep its window (RFC 7692 §7.1.1.1)", async () => {
  const session = await npmSession(
    { serverNoContextTakeover: false },
    { serverNoContextTakeover: true },
  );
  assert.equal(
    session.offer,
    "permessage-deflate; server_no_context_takeover; client_max_window_bits",
  );
  assert.equal(session.answer, BASE);
  assert.equal(session.params?.serverNoContextTakeover, true);
});

Deno.test("npm:ws limiting the server's window to 10 bits inflates the server's messages in that window (RFC 7692 §7.1.2.1)", async () => {
  for (const serverNoContextTakeover of [true, false]) {
    const session = await npmSession(
      { serverNoContextTakeover },
      { serverMaxWindowBits: 10 },
    );
    assert.equal(
      session.offer,
      "permessage-deflate; server_max_window_bits=10; client_max_window_bits",
    );
    assert.match(session.answer ?? "", /; server_max_window_bits=10$/);
    assert.equal(session.params?.serverMaxWindowBits, 10);
    assert.ok(session.ratioOut < 0.25, `out: ${session.ratioOut}`);
  }
});

Deno.test("npm:ws limiting the server's window to 8 bits is declined, and the connection goes on uncompressed (RFC 7692 §7.1.2.1)", async () => {
  const session = await npmSession(true, { serverMaxWindowBits: 8 });
  assert.equal(
    session.offer,
    "permessage-deflate; server_max_window_bits=8; client_max_window_bits",
  );
  assert.equal(session.answer, null);
  assert.equal(session.extensions, "");
  assert.equal(session.params, undefined);
  // Nothing compressed: frames cost a little more than their payloads.
  assert.ok(session.ratioIn > 1 && session.ratioOut > 1);
});

Deno.test("npm:ws compresses in the client window the server asks for (RFC 7692 §7.1.2.2)", async () => {
  // The client's hint of 9 is below our 10: 9 is answered.
  const hinted = await npmSession(
    { clientMaxWindowBits: 10 },
    { clientMaxWindowBits: 9 },
  );
  assert.equal(hinted.offer, "permessage-deflate; client_max_window_bits=9");
  assert.equal(hinted.answer, `${BASE}; client_max_window_bits=9`);
  assert.equal(hinted.params?.clientMaxWindowBits, 9);
  // No value offered: ours is answered.
  const open = await npmSession({ clientMaxWindowBits: 10 }, true);
  assert.equal(open.answer, `${BASE}; client_max_window_bits=10`);
  assert.equal(open.params?.clientMaxWindowBits, 10);
});

// ---------------------------------------------------------------------------
// Raw requests: what a client library would not send
// ---------------------------------------------------------------------------

Deno.test("serve() reads offers across two Sec-WebSocket-Extensions fields, first acceptable wins (RFC 7692 §5.1)", async () => {
  await using server = serve({ ...LOCAL, perMessageDeflate: true }, echo);
  const { peer, response } = await rawUpgrade(server.addr, [
    [
      "Sec-WebSocket-Extensions",
      "permessage-deflate; server_max_window_bits=8",
    ],
    [
      "Sec-WebSocket-Extensions",
      "x-foo, permessage-deflate; server_max_window_bits=11",
    ],
  ]);
  using _ = peer;
  assert.equal(response.status, 101);
  assert.equal(
    response.headers.get("sec-websocket-extensions"),
    `${BASE}; server_max_window_bits=11`,
  );
});

Deno.test("serve() goes on uncompressed after a malformed or unacceptable offer", async () => {
  await using server = serve({ ...LOCAL, perMessageDeflate: true }, echo);
  for (
    const offer of [
      "permessage-deflate; server_max_window_bits=8",
      "permessage-deflate; foo=bar",
      "permessage-deflate;;",
      'permessage-deflate; server_max_window_bits="1 0"',
    ]
  ) {
    const { peer, response } = await rawUpgrade(server.addr, [
      ["Sec-WebSocket-Extensions", offer],
    ]);
    using _ = peer;
    assert.equal(response.status, 101, offer);
    assert.equal(response.headers.get("sec-websocket-extensions"), null);
  }
});

// ---------------------------------------------------------------------------
// Deno's WebSocket
// ---------------------------------------------------------------------------

Deno.test("Deno's WebSocket offers no extension: a deflate server echoes it uncompressed", async () => {
  const seen: { offer: string | null; params: unknown }[] = [];
  await using server = serve(
    { ...LOCAL, perMessageDeflate: true },
    async (socket) => {
      seen.push({
        offer: socket.headers.get("sec-websocket-extensions"),
        params: socket.perMessageDeflate,
      });
      await echo(socket);
    },
  );
  await using client = await DenoClient.connect(wsUrl(server.addr));
  await assertEchoes(client);
  const closed = await client.close(1000);
  assert.equal(closed.code, 1000);
  // Deno 2.9's client sends no Sec-WebSocket-Extensions at all.
  assert.deepEqual(seen, [{ offer: null, params: undefined }]);
  assert.equal(client.ws.extensions, "");
  assert.ok(server.stats().bytesSent > RAW_SIZE);
});

// ---------------------------------------------------------------------------
// Chromium
// ---------------------------------------------------------------------------

/** Runs in the page: echoes, compares, and reports what was negotiated. */
async function echoInPage(url: string) {
  const repeat = (unit: string, length: number) => {
    let text = "";
    while (text.length < length) text += unit;
    return text.slice(0, length);
  };
  const text = repeat(
    "permessage-deflate in Chromium, line after line. ",
    1 << 20,
  );
  const binary = new Uint8Array(256 * 1024);
  for (let i = 0; i < binary.length; i++) binary[i] = (i * 7) % 251;
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const queue: unknown[] = [];
  const waiters: ((value: unknown) => void)[] = [];
  ws.onmessage = (event) => {
    const waiter = waiters.shift();
    if (waiter) waiter(event.data);
    else queue.push(event.data);
  };
  const next = () =>
    queue.length > 0
      ? Promise.resolve(queue.shift())
      : new Promise((resolve) => waiters.push(resolve));
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error("the WebSocket failed to open"));
  });
  const results: Record<string, boolean> = {};
  for (const round of [1, 2]) {
    ws.send(text);
    results[`text ${round}`] = (await next()) === text;
    ws.send(binary);
    const reply = new Uint8Array(await next() as ArrayBuffer);
    results[`binary ${round}`] = reply.length === binary.length &&
      reply.every((byte, i) => byte === binary[i]);
    ws.send("small");
    results[`small ${round}`] = (await next()) === "small";
  }
  const closed = new Promise<number>((resolve) =>
    ws.onclose = (event) => resolve(event.code)
  );
  ws.close(1000);
  return { extensions: ws.extensions, results, code: await closed };
}

Deno.test({
  name:
    `Chromium negotiates permessage-deflate and echoes 1 MiB of text and 256 KiB of binary in each server mode, taking over its own context when allowed${
      HAVE_CHROMIUM ? "" : ` (SKIPPED: ${CHROMIUM} is not installed)`
    }`,
  ignore: !HAVE_CHROMIUM,
  async fn() {
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    try {
      // Each mode, and the answer Chromium gets in it.
      const modes: [PerMessageDeflateOptions, string][] = [
        [{}, BASE],
        [
          { serverNoContextTakeover: false },
          "permessage-deflate; client_no_context_takeover",
        ],
        // Context takeover both ways: Chromium's own too, when allowed.
        [
          { serverNoContextTakeover: false, clientNoContextTakeover: false },
          "permessage-deflate",
        ],
      ];
      for (const [settings, answer] of modes) {
        const offers: (string | null)[] = [];
        const agreed: (PerMessageDeflateParams | undefined)[] = [];
        await using server = serve({
          ...LOCAL,
          perMessageDeflate: settings,
        }, async (socket) => {
          offers.push(socket.headers.get("sec-websocket-extensions"));
          agreed.push(socket.perMessageDeflate);
          await echo(socket);
        });
        // From about:blank, Chromium's Local Network Access checks block
        // ws://127.0.0.1 (net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS):
        // give the page a loopback origin first (our 426 page will do).
        const page = await browser.newPage();
        page.setDefaultTimeout(10_000);
        const landing = await page.goto(
          `http://127.0.0.1:${server.addr.port}/`,
        );
        assert.equal(landing?.status(), 426);
        const outcome = await page.evaluate(echoInPage, wsUrl(server.addr));
        await page.close();
        // What Chromium offers.
        assert.deepEqual(offers, [OFFER]);
        assert.equal(
          agreed[0]?.serverNoContextTakeover,
          settings.serverNoContextTakeover ?? true,
        );
        assert.equal(
          agreed[0]?.clientNoContextTakeover,
          settings.clientNoContextTakeover ?? true,
        );
        assert.equal(outcome.extensions, answer);
        assert.deepEqual(outcome.results, {
          "text 1": true,
          "binary 1": true,
          "small 1": true,
          "text 2": true,
          "binary 2": true,
          "small 2": true,
        });
        assert.equal(outcome.code, 1000);
        // Both directions were compressed: 2 x 1.25 MiB each way took far
        // fewer bytes on the wire.
        const stats = server.stats();
        const raw = 2 * ((1 << 20) + 256 * 1024);
        assert.ok(stats.bytesReceived < raw / 20, `${stats.bytesReceived}`);
        assert.ok(stats.bytesSent < raw / 20, `${stats.bytesSent}`);
      }
    } finally {
      await browser.close();
    }
  },
});
