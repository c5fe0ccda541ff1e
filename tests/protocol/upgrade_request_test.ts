import assert from "node:assert/strict";
import {
  HandshakeError,
  type HttpRequestHead,
  HttpRequestParser,
  tokenList,
  validateUpgradeRequest,
} from "./_core.ts";
import { utf8 } from "./_helpers.ts";

const KEY = "dGhlIHNhbXBsZSBub25jZQ==";

type Headers = [string, string][];

const VALID: Headers = [
  ["Host", "server.example.com"],
  ["Upgrade", "websocket"],
  ["Connection", "Upgrade"],
  ["Sec-WebSocket-Key", KEY],
  ["Sec-WebSocket-Version", "13"],
];

function head(changes: Partial<HttpRequestHead> = {}): HttpRequestHead {
  return {
    method: "GET",
    target: "/chat",
    versionMajor: 1,
    versionMinor: 1,
    headers: VALID,
    ...changes,
  };
}

/** `VALID` with the named headers replaced (value) or removed (null). */
function withHeaders(changes: Record<string, string | null>): Headers {
  const names = Object.keys(changes).map((name) => name.toLowerCase());
  const kept = VALID.filter(([name]) => !names.includes(name.toLowerCase()));
  for (const [name, value] of Object.entries(changes)) {
    if (value !== null) kept.push([name, value]);
  }
  return kept;
}

/** The rejection of `request`, as plain values. */
function rejection(
  request: HttpRequestHead,
): { status: number; headers: Record<string, string>; message: string } {
  try {
    validateUpgradeRequest(request, "ws");
  } catch (error) {
    assert.ok(error instanceof HandshakeError, String(error));
    return {
      status: error.status,
      headers: { ...error.headers },
      message: error.message,
    };
  }
  assert.fail("the request was accepted");
}

// ---------------------------------------------------------------------------
// RFC 6455 §4.2.1: a valid request
// ---------------------------------------------------------------------------

Deno.test("validateUpgradeRequest accepts the RFC 6455 §1.3 request (RFC 6455 §4.2.1)", () => {
  const request = validateUpgradeRequest(
    head({
      target: "/chat?room=1",
      headers: [...VALID, ["Sec-WebSocket-Protocol", "chat, superchat"]],
    }),
    "ws",
  );
  assert.equal(request.url.href, "ws://server.example.com/chat?room=1");
  assert.equal(request.key, KEY);
  assert.deepEqual(request.protocols, ["chat", "superchat"]);
  assert.equal(request.headers.get("sec-websocket-version"), "13");
  assert.equal(
    validateUpgradeRequest(head(), "wss").url.href,
    "wss://server.example.com/chat",
  );
});

Deno.test("validateUpgradeRequest accepts what the parser returns (RFC 6455 §4.1)", () => {
  const bytes = utf8(
    "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n" +
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
      "Sec-WebSocket-Version: 13\r\n\r\n",
  );
  const parsed = new HttpRequestParser().receive(bytes);
  assert.ok(parsed !== undefined);
  assert.equal(validateUpgradeRequest(parsed, "ws").key, KEY);
});

Deno.test("validateUpgradeRequest matches header names and tokens case-insensitively (RFC 6455 §4.2.1)", () => {
  const variants: Headers[] = [
    [
      ["host", "a.example"],
      ["UPGRADE", "WebSocket"],
      ["connection", "keep-alive, Upgrade"],
      ["sec-websocket-key", KEY],
      ["SEC-WEBSOCKET-VERSION", "13"],
    ],
    withHeaders({ Connection: "upgrade" }),
    withHeaders({ Connection: "keep-alive,UPGRADE" }),
    withHeaders({ Connection: " Upgrade , keep-alive " }),
    withHeaders({ Upgrade: "h2c, websocket" }),
    withHeaders({ Upgrade: "WEBSOCKET" }),
  ];
  for (const headers of variants) {
    assert.equal(validateUpgradeRequest(head({ headers }), "ws").key, KEY);
  }
  const split: Headers = [
    ...withHeaders({ Connection: "keep-alive" }),
    ["Connection", "Upgrade"],
  ];
  assert.equal(validateUpgradeRequest(head({ headers: split }), "ws").key, KEY);
});

Deno.test("validateUpgradeRequest accepts HTTP versions above 1.1 (RFC 6455 §4.2.1)", () => {
  for (const [major, minor] of [[1, 2], [2, 0]]) {
    validateUpgradeRequest(
      head({ versionMajor: major, versionMinor: minor }),
      "ws",
    );
  }
});

Deno.test("validateUpgradeRequest accepts keys of every canonical last character (RFC 6455 §4.1)", () => {
  for (const last of "AQgw") {
    const key = "AAAAAAAAAAAAAAAAAAAAA" + last + "==";
    const headers = withHeaders({ "Sec-WebSocket-Key": key });
    assert.equal(validateUpgradeRequest(head({ headers }), "ws").key, key);
  }
  const random = crypto.getRandomValues(new Uint8Array(16)).toBase64();
  const headers = withHeaders({ "Sec-WebSocket-Key": random });
  assert.equal(validateUpgradeRequest(head({ headers }), "ws").key, random);
});

Deno.test("validateUpgradeRequest builds the URL from origin-form and absolute-form targets (RFC 9112 §3.2)", () => {
  const cases: [string, string, string][] = [
    ["/", "a.example", "ws://a.example/"],
    ["/x?y=1", "a.example:8080", "ws://a.example:8080/x?y=1"],
    ["/x", "[::1]:9000", "ws://[::1]:9000/x"],
    ["/x", "127.0.0.1", "ws://127.0.0.1/x"],
    ["ws://b.example/path", "a.example", "ws://b.example/path"],
    ["WSS://b.example:81?q", "a.example", "ws://b.example:81/?q"],
    ["http://[::1]:9000/x", "a.example", "ws://[::1]:9000/x"],
  ];
  for (const [target, host, href] of cases) {
    const headers = withHeaders({ Host: host });
    assert.equal(
      validateUpgradeRequest(head({ target, headers }), "ws").url.href,
      href,
    );
  }
});

Deno.test("validateUpgradeRequest keeps the URL on the Host for targets that look like authorities (RFC 9112 §3.2.1)", () => {
  for (
    const target of ["//evil.example/x", "/\\evil.example/x", "///evil.example"]
  ) {
    const request = validateUpgradeRequest(head({ target }), "ws");
    assert.equal(request.url.host, "server.example.com", target);
    assert.equal(request.url.protocol, "ws:");
  }
});

Deno.test("validateUpgradeRequest rejects a Host with userinfo, path or query with 400 (RFC 9112 §3.2)", () => {
  for (
    const host of [
      "",
      "user@evil.example",
      "a.example/evil",
      "a.example?x",
      "a.example#x",
      "a.example:80:90",
      "a b",
      "a.example\\evil",
    ]
  ) {
    const result = rejection(head({ headers: withHeaders({ Host: host }) }));
    assert.equal(result.status, 400, JSON.stringify(host));
  }
});

Deno.test("validateUpgradeRequest rejects a target that is neither origin nor absolute form, or whose authority is empty, mended by the URL parser, or carries userinfo, with 400 (RFC 9112 §3.2, RFC 9110 §4.2.1, §4.2.4)", () => {
  for (
    const target of [
      "*",
      "chat",
      "server.example.com:80",
      "ftp://a/",
      "ws:///chat", // the URL parser would make "chat" the host
      "ws:////evil.example/chat",
      "ws://\\evil.example/chat", // ... and skip the backslash
      "http:///evil.example/chat",
      "ws://user@evil.example/chat", // ... and drop the userinfo
      "ws://user:pw@server.example.com/chat",
    ]
  ) {
    const result = rejection(head({ target }));
    assert.equal(result.status, 400, target);
    assert.equal(
      result.message,
      `Request target ${
        JSON.stringify(target)
      } or Host "server.example.com" is not valid`,
    );
  }
});

// ---------------------------------------------------------------------------
// RFC 6455 §4.2.1-4.2.2: each rule, its status and headers
// ---------------------------------------------------------------------------

Deno.test("validateUpgradeRequest rejects a method other than GET with 405 and Allow: GET (RFC 6455 §4.2.1)", () => {
  for (const method of ["POST", "HEAD", "get", "CONNECT"]) {
    assert.deepEqual(rejection(head({ method })), {
      status: 405,
      headers: { allow: "GET" },
      message: `Method must be GET for a WebSocket handshake, got ${method}`,
    });
  }
});

Deno.test("validateUpgradeRequest rejects HTTP/1.0 with 400 (RFC 6455 §4.2.1)", () => {
  for (const [major, minor] of [[1, 0], [0, 9]]) {
    assert.deepEqual(
      rejection(head({ versionMajor: major, versionMinor: minor })),
      {
        status: 400,
        headers: {},
        message: `HTTP version must be 1.1 or later, got ${major}.${minor}`,
      },
    );
  }
});

Deno.test("validateUpgradeRequest rejects a missing or duplicate Host with 400 (RFC 6455 §4.2.1)", () => {
  assert.deepEqual(rejection(head({ headers: withHeaders({ Host: null }) })), {
    status: 400,
    headers: {},
    message: "Host header is missing",
  });
  for (const second of ["Host", "host", "HOST"]) {
    const headers: Headers = [...VALID, [second, "other.example"]];
    assert.deepEqual(rejection(head({ headers })), {
      status: 400,
      headers: {},
      message: "Request has more than one Host header",
    });
  }
});

Deno.test("validateUpgradeRequest rejects a request without Upgrade: websocket with 426 (RFC 6455 §4.2.1)", () => {
  for (const upgrade of [null, "", "h2c", "websocket2", "web socket"]) {
    assert.deepEqual(
      rejection(head({ headers: withHeaders({ Upgrade: upgrade }) })),
      {
        status: 426,
        headers: { upgrade: "websocket", connection: "Upgrade" },
        message: "This is a WebSocket endpoint: send Upgrade: websocket",
      },
      String(upgrade),
    );
  }
});

Deno.test("validateUpgradeRequest rejects a Connection without the upgrade token with 400 (RFC 6455 §4.2.1)", () => {
  for (
    const connection of [
      null,
      "",
      "keep-alive",
      "upgraded",
      "keep-alive upgrade",
      // A no-break space is no HTTP whitespace (RFC 9110 §5.6.1).
      "\xa0Upgrade",
      "keep-alive, upgrade\xa0",
    ]
  ) {
    assert.deepEqual(
      rejection(head({ headers: withHeaders({ Connection: connection }) })),
      {
        status: 400,
        headers: {},
        message: "Connection header must include the token upgrade",
      },
      String(connection),
    );
  }
});

Deno.test("validateUpgradeRequest rejects a Sec-WebSocket-Key that is not base64 of 16 bytes with 400 (RFC 6455 §4.2.1)", () => {
  const keys: (string | null)[] = [
    null,
    "",
    "not base64 at all!!!!!==",
    "dGhlIHNhbXBsZSBub25jZQ", // unpadded
    "dGhlIHNhbXBsZSBub25jZQ=", // short padding
    "dGhlIHNhbXBsZSBub25jZR==", // non-canonical last character
    "dGhlIHNhbXBsZSBub25jZf==", // non-canonical last character
    new Uint8Array(15).toBase64(), // 15 bytes
    new Uint8Array(17).toBase64(), // 17 bytes
    new Uint8Array(32).toBase64(),
    "dGhlIHNhbXBsZSBub25jZQ==, dGhlIHNhbXBsZSBub25jZQ==", // sent twice
    "dGhlIHNhbXBsZSBub2-_ZQ==", // base64url alphabet
  ];
  for (const key of keys) {
    const headers = key === null
      ? withHeaders({ "Sec-WebSocket-Key": null })
      : [...withHeaders({ "Sec-WebSocket-Key": null }), [
        "Sec-WebSocket-Key",
        key,
      ] as [string, string]];
    assert.deepEqual(rejection(head({ headers })), {
      status: 400,
      headers: {},
      message: "Sec-WebSocket-Key must be the base64 encoding of 16 bytes",
    }, String(key));
  }
});

Deno.test("validateUpgradeRequest rejects a version other than 13 with 426 and Sec-WebSocket-Version: 13 (RFC 6455 §4.2.2)", () => {
  for (const version of [null, "", "8", "12", "14", "13, 8", "013"]) {
    assert.deepEqual(
      rejection(
        head({ headers: withHeaders({ "Sec-WebSocket-Version": version }) }),
      ),
      {
        status: 426,
        headers: { "sec-websocket-version": "13" },
        message: `Sec-WebSocket-Version must be 13, got ${version ?? "none"}`,
      },
      String(version),
    );
  }
});

Deno.test("validateUpgradeRequest rejects a request that declares content with 400: its bytes must not pass as frames (RFC 9110 §7.8)", () => {
  const message =
    "A WebSocket handshake request must not have content (Content-Length or Transfer-Encoding)";
  for (
    const extra of [
      { "Content-Length": "8" } as Record<string, string>,
      { "Transfer-Encoding": "chunked" },
      { "Content-Length": "3", "Transfer-Encoding": "chunked" },
      { "Content-Length": "0, 1" },
      { "Content-Length": "0x0" },
    ]
  ) {
    assert.deepEqual(
      rejection(head({ headers: withHeaders(extra) })),
      { status: 400, headers: {}, message },
      JSON.stringify(extra),
    );
  }
  // An empty body is no content, however its zero is written.
  for (const zero of ["0", "00", "0, 0"]) {
    const empty = head({ headers: withHeaders({ "Content-Length": zero }) });
    assert.equal(validateUpgradeRequest(empty, "ws").key, KEY, zero);
  }
});

Deno.test("validateUpgradeRequest reports the first broken rule when several are broken (RFC 6455 §4.2.1)", () => {
  const allBroken = head({
    method: "POST",
    versionMinor: 0,
    headers: [["Host", "a"], ["Host", "b"], ["Connection", "close"], [
      "Sec-WebSocket-Key",
      "x",
    ], ["Sec-WebSocket-Version", "8"]],
  });
  assert.equal(rejection(allBroken).status, 405);
  assert.equal(
    rejection({ ...allBroken, method: "GET" }).message,
    "HTTP version must be 1.1 or later, got 1.0",
  );
  assert.equal(
    rejection({ ...allBroken, method: "GET", versionMinor: 1 }).message,
    "Request has more than one Host header",
  );
  const steps: [Record<string, string | null>, number, string][] = [
    [
      {
        Upgrade: null,
        Connection: "close",
        "Sec-WebSocket-Key": "x",
        "Sec-WebSocket-Version": "8",
      },
      426,
      "This is a WebSocket endpoint: send Upgrade: websocket",
    ],
    [
      {
        Connection: "close",
        "Sec-WebSocket-Key": "x",
        "Sec-WebSocket-Version": "8",
      },
      400,
      "Connection header must include the token upgrade",
    ],
    [
      { "Sec-WebSocket-Key": "x", "Sec-WebSocket-Version": "8" },
      400,
      "Sec-WebSocket-Key must be the base64 encoding of 16 bytes",
    ],
    [
      { "Sec-WebSocket-Version": "8" },
      426,
      "Sec-WebSocket-Version must be 13, got 8",
    ],
  ];
  for (const [changes, status, message] of steps) {
    const result = rejection(head({ headers: withHeaders(changes) }));
    assert.equal(result.status, status);
    assert.equal(result.message, message);
  }
  // A bad target is checked with the Host, before Upgrade.
  assert.equal(
    rejection(head({ target: "*", headers: withHeaders({ Upgrade: null }) }))
      .status,
    400,
  );
});

Deno.test("tokenList splits, trims and drops empty items (RFC 9110 §5.6.1)", () => {
  assert.deepEqual(tokenList(null), []);
  assert.deepEqual(tokenList(""), []);
  assert.deepEqual(tokenList(" a , ,b,, c "), ["a", "b", "c"]);
});
