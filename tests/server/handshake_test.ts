import assert from "node:assert/strict";
import { serve, type ServeOptions, type ServerLogEvent } from "../../mod.ts";
import {
  concat,
  DEADLINE,
  echo,
  encodeRequest,
  frame,
  LOCAL,
  NpmClient,
  OP,
  rawHandshake,
  RawPeer,
  type RawResponse,
  SAMPLE_ACCEPT,
  upgradeHeaders,
  withTimeout,
  wsUrl,
} from "./_helpers.ts";

/** Sends `request` on a fresh connection and reads the response. */
async function send(
  addr: Deno.NetAddr,
  request: Uint8Array,
): Promise<RawResponse> {
  using peer = await RawPeer.connect(addr);
  await peer.write(request);
  const response = await peer.readResponse();
  // The server closes after a rejection.
  await peer.readToEof();
  return response;
}

/** Asserts the common shape of every rejection: plain text that says why. */
function assertRejection(
  response: RawResponse,
  status: number,
  reason: string,
  body: RegExp,
): void {
  assert.equal(response.statusLine, `HTTP/1.1 ${status} ${reason}`);
  assert.equal(
    response.headers.get("content-type"),
    "text/plain; charset=utf-8",
  );
  // A list-valued field: the 426 also carries "Connection: Upgrade".
  assert.ok(
    response.headers.get("connection")?.split(/\s*,\s*/).includes("close"),
    `Connection: close, got ${response.headers.get("connection")}`,
  );
  assert.match(response.body, body);
  assert.equal(
    Number(response.headers.get("content-length")),
    new TextEncoder().encode(response.body).length,
  );
  // RFC 9110 §6.6.1: an origin server with a clock MUST send a Date with a
  // 4xx.
  const date = response.headers.get("date");
  assert.ok(date !== null && !Number.isNaN(Date.parse(date)), `Date ${date}`);
}

/** Runs `check` against a fresh server, then proves the server still works. */
async function withServer(
  options: Partial<ServeOptions>,
  check: (addr: Deno.NetAddr, events: ServerLogEvent[]) => Promise<void>,
): Promise<void> {
  const events: ServerLogEvent[] = [];
  await using server = serve(
    { ...LOCAL, logger: (event) => events.push(event), ...options },
    echo,
  );
  await check(server.addr, events);
  await using client = await NpmClient.connect(wsUrl(server.addr));
  assert.equal(await client.roundTrip("after"), "after");
}

function headersWith(
  addr: Deno.NetAddr,
  change: (headers: [string, string][]) => [string, string][],
): [string, string][] {
  return change(upgradeHeaders(addr));
}

function without(name: string) {
  return (headers: [string, string][]) =>
    headers.filter(([field]) => field.toLowerCase() !== name.toLowerCase());
}

function replacing(name: string, value: string) {
  return (headers: [string, string][]): [string, string][] =>
    headers.map(([field, old]) => [field, field === name ? value : old]);
}

Deno.test("serve() completes a handshake sent over raw TCP", async () => {
  await withServer({}, async (addr) => {
    using peer = await rawHandshake(addr);
    peer.close();
  });
});

Deno.test(
  "serve() accepts a handshake split into one-byte writes",
  async () => {
    await withServer({}, async (addr) => {
      using peer = await RawPeer.connect(addr);
      const request = encodeRequest("GET / HTTP/1.1", upgradeHeaders(addr));
      for (let i = 0; i < request.length; i++) {
        await peer.write(request.subarray(i, i + 1));
      }
      const response = await peer.readResponse();
      assert.equal(response.statusLine, "HTTP/1.1 101 Switching Protocols");
      assert.equal(response.headers.get("upgrade"), "websocket");
      assert.equal(response.headers.get("connection"), "Upgrade");
      assert.equal(
        response.headers.get("sec-websocket-accept"),
        SAMPLE_ACCEPT,
      );
    });
  },
);

Deno.test("serve() reads request heads of any size up to maxHeadSize, and the frames written with them, across its reads", async () => {
  // Heads read 1 KiB at first, then in reads twice as large: sizes about
  // each boundary, frames in the same write as the head.
  await withServer({}, async (addr) => {
    const base = encodeRequest("GET / HTTP/1.1", upgradeHeaders(addr)).length;
    for (
      const size of [200, 1023, 1024, 1025, 2047, 3072, 3073, 7169, 16 * 1024]
    ) {
      const pad = size - base - "X-Pad: \r\n".length;
      const head = encodeRequest("GET / HTTP/1.1", [
        ...upgradeHeaders(addr),
        ["X-Pad", "p".repeat(Math.max(1, pad))],
      ]);
      const text = `head of ${head.length} bytes`;
      using peer = await RawPeer.connect(addr);
      await peer.write(concat(head, frame(OP.text, text), frame(OP.ping, "p")));
      const response = await peer.readResponse();
      assert.equal(response.status, 101, `${head.length}`);
      // The pong goes out as the ping is read, the echo when the handler
      // sends it: either may come first.
      const frames = [await peer.readFrame(), await peer.readFrame()];
      const echoed = frames.find((f) => f.opcode === OP.text);
      assert.equal(new TextDecoder().decode(echoed?.payload), text);
      assert.ok(frames.some((f) => f.opcode === OP.pong), "a pong");
    }
  });
});

Deno.test(
  "serve() matches header names and tokens case-insensitively (RFC 6455 §4.2.1)",
  async () => {
    await withServer({}, async (addr) => {
      using peer = await RawPeer.connect(addr);
      await peer.write(encodeRequest("GET /chat?room=1 HTTP/1.1", [
        ["host", `127.0.0.1:${addr.port}`],
        ["UPGRADE", "WebSocket"],
        ["connection", "keep-alive, Upgrade"],
        ["sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="],
        ["SEC-WEBSOCKET-VERSION", "13"],
      ]));
      const response = await peer.readResponse();
      assert.equal(response.status, 101, response.statusLine);
    });
  },
);

Deno.test("Socket exposes the request URL and headers", async () => {
  const seen = Promise.withResolvers<[string, string | null]>();
  await using server = serve(LOCAL, (socket) => {
    seen.resolve([socket.url.href, socket.headers.get("x-test")]);
  });
  await using client = await NpmClient.connect(
    wsUrl(server.addr, "/chat?room=1"),
    { headers: { "X-Test": "yes" } },
  );
  const [url, header] = await withTimeout(seen.promise, DEADLINE, "handler");
  assert.equal(url, `ws://127.0.0.1:${server.addr.port}/chat?room=1`);
  assert.equal(header, "yes");
  assert.equal(
    (await withTimeout(client.closed, DEADLINE, "close")).code,
    1000,
  );
});

Deno.test("serve() rejects a non-GET request with 405 and Allow: GET", async () => {
  await withServer({}, async (addr, events) => {
    const response = await send(
      addr,
      encodeRequest("POST / HTTP/1.1", upgradeHeaders(addr)),
    );
    assertRejection(response, 405, "Method Not Allowed", /GET.*POST/);
    assert.equal(response.headers.get("allow"), "GET");
    assert.ok(
      events.some((event) =>
        event.type === "handshake-rejected" && event.status === 405
      ),
      "the rejection is logged",
    );
  });
});

Deno.test("serve() answers a HEAD it rejects with the head alone (RFC 9110 §9.3.2), on the WebSocket path and the fetch path", async () => {
  const fetch = () => new Response("page");
  // A GET would get the 426 there: no length is given for the 405.
  for (
    const [options, request, status, length] of [
      [{}, encodeRequest("HEAD / HTTP/1.1", [["Host", "x"]]), 405, false],
      [
        { fetch },
        encodeRequest("HEAD / HTTP/1.1", [["Host", "x"], ["Expect", "foo"]]),
        417,
        true,
      ],
    ] as const
  ) {
    await withServer(options, async (addr) => {
      using peer = await RawPeer.connect(addr);
      await peer.write(request);
      const head = await peer.readHead();
      assert.equal(head.status, status);
      assert.equal(head.headers.has("content-length"), length);
      assert.ok(head.headers.get("date") !== null);
      assert.deepEqual(await peer.readToEof(), new Uint8Array(0), "no body");
    });
  }
});

Deno.test("serve() rejects HTTP/1.0 with 400", async () => {
  await withServer({}, async (addr) => {
    const response = await send(
      addr,
      encodeRequest("GET / HTTP/1.0", upgradeHeaders(addr)),
    );
    assertRejection(response, 400, "Bad Request", /1\.1/);
  });
});

Deno.test("serve() rejects a request without Host with 400", async () => {
  await withServer({}, async (addr) => {
    const response = await send(
      addr,
      encodeRequest("GET / HTTP/1.1", headersWith(addr, without("Host"))),
    );
    assertRejection(response, 400, "Bad Request", /Host/);
  });
});

Deno.test("serve() rejects a request with two Host fields with 400", async () => {
  await withServer({}, async (addr) => {
    const response = await send(
      addr,
      encodeRequest(
        "GET / HTTP/1.1",
        headersWith(addr, (h) => [...h, ["Host", "example.com"]]),
      ),
    );
    assertRejection(response, 400, "Bad Request", /Host/);
  });
});

Deno.test(
  "serve() rejects a request without Upgrade with 426 and Upgrade: websocket",
  async () => {
    await withServer({}, async (addr) => {
      const response = await send(
        addr,
        encodeRequest("GET / HTTP/1.1", headersWith(addr, without("Upgrade"))),
      );
      assertRejection(response, 426, "Upgrade Required", /Upgrade: websocket/);
      assert.equal(response.headers.get("upgrade"), "websocket");
    });
  },
);

Deno.test(
  "serve() rejects a Connection header without upgrade with 400",
  async () => {
    await withServer({}, async (addr) => {
      const response = await send(
        addr,
        encodeRequest(
          "GET / HTTP/1.1",
          headersWith(addr, replacing("Connection", "keep-alive")),
        ),
      );
      assertRejection(response, 400, "Bad Request", /Connection/);
    });
  },
);

for (
  const key of [
    "not base64!",
    "dGhlIHNhbXBsZSBub25j", // 15 bytes
    "dGhlIHNhbXBsZSBub25jZXg=", // 17 bytes
    "",
  ]
) {
  Deno.test(
    `serve() rejects Sec-WebSocket-Key ${JSON.stringify(key)} with 400`,
    async () => {
      await withServer({}, async (addr) => {
        const response = await send(
          addr,
          encodeRequest(
            "GET / HTTP/1.1",
            headersWith(addr, replacing("Sec-WebSocket-Key", key)),
          ),
        );
        assertRejection(response, 400, "Bad Request", /Sec-WebSocket-Key/);
      });
    },
  );
}

Deno.test(
  "serve() rejects Sec-WebSocket-Version 8 with 426 and Sec-WebSocket-Version: 13",
  async () => {
    await withServer({}, async (addr) => {
      const response = await send(
        addr,
        encodeRequest(
          "GET / HTTP/1.1",
          headersWith(addr, replacing("Sec-WebSocket-Version", "8")),
        ),
      );
      assertRejection(response, 426, "Upgrade Required", /13.*got 8/);
      assert.equal(response.headers.get("sec-websocket-version"), "13");
    });
  },
);

Deno.test(
  "serve() rejects a head larger than maxHeadSize with 431",
  async () => {
    await withServer({ maxHeadSize: 1024 }, async (addr) => {
      const response = await send(
        addr,
        encodeRequest(
          "GET / HTTP/1.1",
          headersWith(addr, (h) => [...h, ["X-Padding", "p".repeat(2000)]]),
        ),
      );
      assertRejection(
        response,
        431,
        "Request Header Fields Too Large",
        /1024 bytes/,
      );
    });
  },
);

Deno.test(
  "serve() rejects a request line longer than maxHeadSize with 414 (RFC 9112 §3)",
  async () => {
    await withServer({ maxHeadSize: 1024 }, async (addr) => {
      const response = await send(
        addr,
        encodeRequest(
          `GET /${"p".repeat(2000)} HTTP/1.1`,
          headersWith(addr, (h) => h),
        ),
      );
      assertRejection(response, 414, "URI Too Long", /1024 bytes/);
    });
  },
);

Deno.test(
  "serve() rejects more header fields than maxHeaders with 431",
  async () => {
    await withServer({ maxHeaders: 10 }, async (addr) => {
      const extra: [string, string][] = Array.from(
        { length: 10 },
        (_, i) => [`X-Field-${i}`, `${i}`],
      );
      const response = await send(
        addr,
        encodeRequest(
          "GET / HTTP/1.1",
          headersWith(addr, (h) => [...h, ...extra]),
        ),
      );
      assertRejection(
        response,
        431,
        "Request Header Fields Too Large",
        /15 header fields; the limit is 10/,
      );
    });
  },
);

Deno.test(
  "serve() closes a connection that sends nothing after handshakeTimeout",
  async () => {
    await withServer({ handshakeTimeout: 200 }, async (addr, events) => {
      using peer = await RawPeer.connect(addr);
      const rest = await peer.readToEof();
      assert.equal(rest.length, 0, "nothing is sent before closing");
      const timeouts = events.filter((event) => event.type === "timeout");
      assert.deepEqual(timeouts.map((event) => event.phase), ["handshake"]);
    });
  },
);

Deno.test(
  "serve() closes a connection whose head never completes after handshakeTimeout",
  async () => {
    await withServer({ handshakeTimeout: 200 }, async (addr) => {
      using peer = await RawPeer.connect(addr);
      await peer.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n");
      await peer.readToEof();
    });
  },
);

Deno.test("serve() answers a plain fetch() with 426", async () => {
  await withServer({}, async (addr) => {
    using client = Deno.createHttpClient({});
    const response = await withTimeout(
      fetch(`http://127.0.0.1:${addr.port}/`, { client }),
      DEADLINE,
      "fetch()",
    );
    const body = await withTimeout(response.text(), DEADLINE, "the body");
    assert.equal(response.status, 426);
    assert.equal(response.headers.get("upgrade"), "websocket");
    assert.equal(
      response.headers.get("content-type"),
      "text/plain; charset=utf-8",
    );
    assert.match(body, /WebSocket/);
  });
});
