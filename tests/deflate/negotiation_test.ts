import assert from "node:assert/strict";
import {
  negotiatePerMessageDeflate,
  parseExtensions,
  type PerMessageDeflateOptions,
  serve,
} from "../../mod.ts";
import { resolveDeflateOptions } from "../../src/protocol/permessage_deflate.ts";
import { LOCAL } from "../server/_helpers.ts";

/** The response to `offer`, or `null` when it is declined. */
function answer(
  offer: string | null,
  options: PerMessageDeflateOptions = {},
): string | null {
  return negotiatePerMessageDeflate(offer, options)?.response ?? null;
}

const BASE = "permessage-deflate; server_no_context_takeover; " +
  "client_no_context_takeover";

// ---------------------------------------------------------------------------
// RFC 7692 §7.1.1: context takeover
// ---------------------------------------------------------------------------

Deno.test("negotiatePerMessageDeflate accepts a bare offer with the defaults (RFC 7692 §5.1)", () => {
  const result = negotiatePerMessageDeflate("permessage-deflate", {});
  assert.deepEqual(result, {
    response: BASE,
    params: {
      serverNoContextTakeover: true,
      clientNoContextTakeover: true,
      serverMaxWindowBits: 15,
      clientMaxWindowBits: 15,
      level: 6,
      memLevel: 8,
      threshold: 1024,
    },
  });
});

Deno.test("negotiatePerMessageDeflate keeps its window when allowed and the client does not forbid it (RFC 7692 §7.1.1.1)", () => {
  const result = negotiatePerMessageDeflate("permessage-deflate", {
    serverNoContextTakeover: false,
  });
  assert.equal(
    result?.response,
    "permessage-deflate; client_no_context_takeover",
  );
  assert.equal(result?.params.serverNoContextTakeover, false);
});

Deno.test("negotiatePerMessageDeflate honours a client's server_no_context_takeover over its own option (RFC 7692 §7.1.1.1)", () => {
  const result = negotiatePerMessageDeflate(
    "permessage-deflate; server_no_context_takeover",
    { serverNoContextTakeover: false },
  );
  assert.equal(result?.response, BASE);
  assert.equal(result?.params.serverNoContextTakeover, true);
});

Deno.test("negotiatePerMessageDeflate answers client_no_context_takeover by default (clientNoContextTakeover: true), offered or not (RFC 7692 §7.1.1.2)", () => {
  for (
    const offer of [
      "permessage-deflate",
      "permessage-deflate; client_no_context_takeover",
      "permessage-deflate; client_max_window_bits",
    ]
  ) {
    for (const serverNoContextTakeover of [true, false]) {
      for (const clientNoContextTakeover of [undefined, true]) {
        const result = negotiatePerMessageDeflate(offer, {
          serverNoContextTakeover,
          clientNoContextTakeover,
        });
        assert.ok(result !== null, offer);
        assert.match(
          result.response,
          /; client_no_context_takeover(;|$)/,
          offer,
        );
        assert.equal(result.params.clientNoContextTakeover, true, offer);
      }
    }
  }
});

Deno.test("negotiatePerMessageDeflate with clientNoContextTakeover: false leaves client_no_context_takeover out, so the client may take over (RFC 7692 §7.1.1.2)", () => {
  const cases: [offer: string, response: string][] = [
    ["permessage-deflate", "permessage-deflate; server_no_context_takeover"],
    // Chromium's and npm:ws's offer.
    [
      "permessage-deflate; client_max_window_bits",
      "permessage-deflate; server_no_context_takeover",
    ],
    [
      "permessage-deflate; server_no_context_takeover",
      "permessage-deflate; server_no_context_takeover",
    ],
  ];
  for (const [offer, response] of cases) {
    const result = negotiatePerMessageDeflate(offer, {
      clientNoContextTakeover: false,
    });
    assert.equal(result?.response, response, offer);
    assert.equal(result?.params.clientNoContextTakeover, false, offer);
    assert.equal(result?.params.clientMaxWindowBits, 15, offer);
  }
  // Context takeover both ways: the answer has neither parameter.
  const both = negotiatePerMessageDeflate(
    "permessage-deflate; client_max_window_bits",
    { serverNoContextTakeover: false, clientNoContextTakeover: false },
  );
  assert.equal(both?.response, "permessage-deflate");
  assert.equal(both?.params.serverNoContextTakeover, false);
  assert.equal(both?.params.clientNoContextTakeover, false);
});

Deno.test("negotiatePerMessageDeflate echoes a client's client_no_context_takeover even when it allows takeover, and its params say the client will not take over (RFC 7692 §7.1.1.2)", () => {
  for (const serverNoContextTakeover of [true, false]) {
    const result = negotiatePerMessageDeflate(
      "permessage-deflate; client_no_context_takeover; client_max_window_bits",
      { serverNoContextTakeover, clientNoContextTakeover: false },
    );
    assert.equal(
      result?.response,
      serverNoContextTakeover
        ? BASE
        : "permessage-deflate; client_no_context_takeover",
    );
    assert.equal(result?.params.clientNoContextTakeover, true);
  }
});

Deno.test("negotiatePerMessageDeflate with clientNoContextTakeover: false agrees on the client's window: its offered limit, the server's answer, else 15 (RFC 7692 §7.1.2.2)", () => {
  const cases: [
    offer: string,
    ours: number | undefined,
    response: string,
    agreed: number,
  ][] = [
    // Offered without a value, limited by the server: the answer's value.
    [
      "client_max_window_bits",
      10,
      "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
      10,
    ],
    [
      "client_max_window_bits",
      8,
      "permessage-deflate; server_no_context_takeover; client_max_window_bits=8",
      8,
    ],
    // Offered without a value, not limited: any window, so 15.
    [
      "client_max_window_bits",
      undefined,
      "permessage-deflate; server_no_context_takeover",
      15,
    ],
    // Offered with a value: the client's own limit, or the server's lower.
    [
      "client_max_window_bits=9",
      undefined,
      "permessage-deflate; server_no_context_takeover",
      9,
    ],
    [
      "client_max_window_bits=12",
      10,
      "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
      10,
    ],
    // Not offered: the server may not limit it (see the next test).
    [
      "server_max_window_bits=15",
      undefined,
      `permessage-deflate; server_no_context_takeover; server_max_window_bits=15`,
      15,
    ],
  ];
  for (const [param, ours, response, agreed] of cases) {
    const result = negotiatePerMessageDeflate(`permessage-deflate; ${param}`, {
      clientNoContextTakeover: false,
      clientMaxWindowBits: ours,
    });
    assert.equal(result?.response, response, `${param}, ours ${ours}`);
    assert.equal(result?.params.clientNoContextTakeover, false);
    assert.equal(result?.params.clientMaxWindowBits, agreed, param);
  }
});

// ---------------------------------------------------------------------------
// RFC 7692 §7.1.2.1: server_max_window_bits
// ---------------------------------------------------------------------------

Deno.test("negotiatePerMessageDeflate declines server_max_window_bits=8: zlib cannot deflate with a 256-byte window (RFC 7692 §7.1.2.1)", () => {
  assert.equal(answer("permessage-deflate; server_max_window_bits=8"), null);
});

Deno.test("negotiatePerMessageDeflate accepts server_max_window_bits 9 to 15 and echoes the value (RFC 7692 §7.1.2.1)", () => {
  for (let bits = 9; bits <= 15; bits++) {
    const result = negotiatePerMessageDeflate(
      `permessage-deflate; server_max_window_bits=${bits}`,
      {},
    );
    assert.equal(
      result?.response,
      `${BASE}; server_max_window_bits=${bits}`,
      `${bits}`,
    );
    assert.equal(result?.params.serverMaxWindowBits, bits);
  }
});

Deno.test("negotiatePerMessageDeflate answers the lower of the client's server_max_window_bits and its own (RFC 7692 §7.1.2.1)", () => {
  const cases: [offered: number, ours: number, agreed: number][] = [
    [12, 10, 10],
    [10, 12, 10],
    [9, 15, 9],
    [15, 9, 9],
    [11, 11, 11],
  ];
  for (const [offered, ours, agreed] of cases) {
    const result = negotiatePerMessageDeflate(
      `permessage-deflate; server_max_window_bits=${offered}`,
      { serverMaxWindowBits: ours },
    );
    assert.equal(
      result?.response,
      `${BASE}; server_max_window_bits=${agreed}`,
      `offered ${offered}, ours ${ours}`,
    );
    assert.equal(result?.params.serverMaxWindowBits, agreed);
  }
});

Deno.test("negotiatePerMessageDeflate announces its own smaller window to a client that set no limit (RFC 7692 §7.1.2.1)", () => {
  const result = negotiatePerMessageDeflate("permessage-deflate", {
    serverMaxWindowBits: 10,
  });
  assert.equal(result?.response, `${BASE}; server_max_window_bits=10`);
  assert.equal(result?.params.serverMaxWindowBits, 10);
  // The default window needs no announcement.
  assert.equal(answer("permessage-deflate", { serverMaxWindowBits: 15 }), BASE);
});

// ---------------------------------------------------------------------------
// RFC 7692 §7.1.2.2: client_max_window_bits
// ---------------------------------------------------------------------------

Deno.test("negotiatePerMessageDeflate never answers client_max_window_bits without the option (RFC 7692 §7.1.2.2)", () => {
  // Offered without a value: the client may use any window.
  let result = negotiatePerMessageDeflate(
    "permessage-deflate; client_max_window_bits",
    {},
  );
  assert.equal(result?.response, BASE);
  assert.equal(result?.params.clientMaxWindowBits, 15);
  // Offered with a value: the client promised that limit itself.
  result = negotiatePerMessageDeflate(
    "permessage-deflate; client_max_window_bits=10",
    {},
  );
  assert.equal(result?.response, BASE);
  assert.equal(result?.params.clientMaxWindowBits, 10);
});

Deno.test("negotiatePerMessageDeflate limits the client's window when the option is set and the client offered the parameter (RFC 7692 §7.1.2.2)", () => {
  const cases: [offer: string, ours: number, agreed: number][] = [
    ["client_max_window_bits", 10, 10],
    ["client_max_window_bits", 8, 8],
    ["client_max_window_bits=12", 10, 10],
    ["client_max_window_bits=9", 10, 9],
    ["client_max_window_bits=15", 15, 15],
  ];
  for (const [param, ours, agreed] of cases) {
    const result = negotiatePerMessageDeflate(`permessage-deflate; ${param}`, {
      clientMaxWindowBits: ours,
    });
    assert.equal(
      result?.response,
      `${BASE}; client_max_window_bits=${agreed}`,
      `${param}, ours ${ours}`,
    );
    assert.equal(result?.params.clientMaxWindowBits, agreed);
  }
});

Deno.test("negotiatePerMessageDeflate never answers client_max_window_bits the client did not offer (RFC 7692 §7.1.2.2)", () => {
  // "the server MUST NOT include the client_max_window_bits extension
  // parameter" unless the offer had it.
  for (
    const offer of [
      "permessage-deflate",
      "permessage-deflate; client_no_context_takeover",
      "permessage-deflate; server_max_window_bits=10",
    ]
  ) {
    const result = negotiatePerMessageDeflate(offer, {
      clientMaxWindowBits: 9,
    });
    assert.ok(result !== null, offer);
    assert.doesNotMatch(result.response, /client_max_window_bits/, offer);
    assert.equal(result.params.clientMaxWindowBits, 15, offer);
  }
});

Deno.test("negotiatePerMessageDeflate with clientNoContextTakeover: false and a clientMaxWindowBits below 15 asks a client that cannot be limited (no client_max_window_bits offered) for client_no_context_takeover: no larger window is kept (RFC 7692 §7.1.1.2)", () => {
  const allowTakeover = { clientNoContextTakeover: false };
  for (const bits of [8, 10, 14]) {
    const result = negotiatePerMessageDeflate("permessage-deflate", {
      ...allowTakeover,
      clientMaxWindowBits: bits,
    });
    assert.equal(
      result?.response,
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
      `${bits}`,
    );
    assert.equal(result?.params.clientNoContextTakeover, true);
  }
  // A client that can be limited is, and keeps its context.
  const limited = negotiatePerMessageDeflate(
    "permessage-deflate; client_max_window_bits",
    { ...allowTakeover, clientMaxWindowBits: 10 },
  );
  assert.equal(
    limited?.response,
    "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
  );
  assert.equal(limited?.params.clientNoContextTakeover, false);
  // With other parameters in the offer too.
  assert.equal(
    negotiatePerMessageDeflate(
      "permessage-deflate; server_max_window_bits=15",
      {
        ...allowTakeover,
        clientMaxWindowBits: 10,
      },
    )?.response,
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15",
  );
  // Without a smaller window asked for (unset, or 15), takeover stays.
  for (
    const options of [allowTakeover, {
      ...allowTakeover,
      clientMaxWindowBits: 15,
    }]
  ) {
    const result = negotiatePerMessageDeflate("permessage-deflate", options);
    assert.equal(
      result?.response,
      "permessage-deflate; server_no_context_takeover",
    );
    assert.equal(result?.params.clientNoContextTakeover, false);
  }
});

Deno.test("negotiatePerMessageDeflate orders every answered parameter after the token", () => {
  assert.equal(
    answer(
      "permessage-deflate; client_max_window_bits; server_max_window_bits=12; " +
        "server_no_context_takeover; client_no_context_takeover",
      { clientMaxWindowBits: 11, serverMaxWindowBits: 13 },
    ),
    `${BASE}; server_max_window_bits=12; client_max_window_bits=11`,
  );
});

// ---------------------------------------------------------------------------
// RFC 7692 §5.1: several offers
// ---------------------------------------------------------------------------

Deno.test("negotiatePerMessageDeflate picks the first acceptable of several offers in one field (RFC 7692 §5.1)", () => {
  assert.equal(
    answer(
      "permessage-deflate; server_max_window_bits=10, permessage-deflate",
    ),
    `${BASE}; server_max_window_bits=10`,
  );
  assert.equal(
    answer("permessage-deflate, permessage-deflate; server_max_window_bits=10"),
    BASE,
  );
});

Deno.test("negotiatePerMessageDeflate falls through a declined first offer to a good second one (RFC 7692 §5.1)", () => {
  const declinedFirst = [
    "permessage-deflate; server_max_window_bits=8",
    "permessage-deflate; x_unknown",
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; client_max_window_bits=7",
    "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
  ];
  for (const first of declinedFirst) {
    assert.equal(
      answer(`${first}, permessage-deflate; client_max_window_bits`, {
        clientMaxWindowBits: 12,
      }),
      `${BASE}; client_max_window_bits=12`,
      first,
    );
  }
});

Deno.test("negotiatePerMessageDeflate reads offers split over two header fields, as Headers joins them (RFC 7692 §5.1, RFC 9110 §5.3)", () => {
  const headers = new Headers([
    [
      "Sec-WebSocket-Extensions",
      "permessage-deflate; server_max_window_bits=8",
    ],
    [
      "Sec-WebSocket-Extensions",
      "permessage-deflate; server_max_window_bits=11",
    ],
  ]);
  assert.equal(
    answer(headers.get("sec-websocket-extensions")),
    `${BASE}; server_max_window_bits=11`,
  );
});

Deno.test("negotiatePerMessageDeflate declines when every offer is unacceptable", () => {
  assert.equal(
    answer(
      "permessage-deflate; server_max_window_bits=8, permessage-deflate; foo",
    ),
    null,
  );
});

// ---------------------------------------------------------------------------
// RFC 7692 §7.1: declining, not failing, a bad offer
// ---------------------------------------------------------------------------

Deno.test("negotiatePerMessageDeflate declines an offer with an unknown parameter (RFC 7692 §7.1)", () => {
  for (
    const param of [
      "foo",
      "foo=1",
      "no_context_takeover",
      "max_window_bits=10",
      "client_max_window",
    ]
  ) {
    assert.equal(answer(`permessage-deflate; ${param}`), null, param);
  }
});

Deno.test("negotiatePerMessageDeflate declines an offer with a duplicate parameter (RFC 7692 §7.1)", () => {
  for (
    const params of [
      "server_no_context_takeover; server_no_context_takeover",
      "client_no_context_takeover; client_no_context_takeover",
      "server_max_window_bits=10; server_max_window_bits=10",
      "server_max_window_bits=10; server_max_window_bits=11",
      "client_max_window_bits; client_max_window_bits=10",
      // Parameter names are case-insensitive tokens.
      "server_no_context_takeover; SERVER_NO_CONTEXT_TAKEOVER",
    ]
  ) {
    assert.equal(answer(`permessage-deflate; ${params}`), null, params);
  }
});

Deno.test("negotiatePerMessageDeflate declines invalid window-bits values (RFC 7692 §7.1.2)", () => {
  for (const value of ["16", "7", "09", "abc", "0", "-9", "1e1", "10.0"]) {
    for (const param of ["server_max_window_bits", "client_max_window_bits"]) {
      assert.equal(
        answer(`permessage-deflate; ${param}=${value}`, {
          clientMaxWindowBits: 10,
        }),
        null,
        `${param}=${value}`,
      );
    }
  }
  // server_max_window_bits needs a value.
  assert.equal(answer("permessage-deflate; server_max_window_bits"), null);
});

Deno.test("negotiatePerMessageDeflate declines a value on a no_context_takeover parameter (RFC 7692 §7.1.1)", () => {
  for (
    const params of [
      "server_no_context_takeover=1",
      "client_no_context_takeover=true",
      'server_no_context_takeover="x"',
    ]
  ) {
    assert.equal(answer(`permessage-deflate; ${params}`), null, params);
  }
});

Deno.test("negotiatePerMessageDeflate accepts a quoted-string value that unescapes to a valid token (RFC 6455 §9.1)", () => {
  assert.equal(
    answer('permessage-deflate; server_max_window_bits="10"'),
    `${BASE}; server_max_window_bits=10`,
  );
  assert.equal(
    answer('permessage-deflate; client_max_window_bits="12"', {
      clientMaxWindowBits: 15,
    }),
    `${BASE}; client_max_window_bits=12`,
  );
  // A quoted-pair unescapes to the character it quotes.
  assert.equal(
    answer('permessage-deflate; server_max_window_bits="1\\1"'),
    `${BASE}; server_max_window_bits=11`,
  );
});

Deno.test("negotiatePerMessageDeflate declines a quoted value that is a token but not a valid window (RFC 7692 §7.1.2)", () => {
  assert.equal(
    answer('permessage-deflate; server_max_window_bits="abc"'),
    null,
  );
  assert.equal(answer('permessage-deflate; server_max_window_bits="16"'), null);
});

Deno.test("negotiatePerMessageDeflate declines a quoted value that is not a token, whatever follows (RFC 6455 §9.1)", () => {
  for (const quoted of ['"1 0"', '""', '"1,0"', '"10;"']) {
    assert.equal(
      answer(`permessage-deflate; server_max_window_bits=${quoted}`),
      null,
      quoted,
    );
    assert.equal(
      parseExtensions(`permessage-deflate; server_max_window_bits=${quoted}`),
      null,
      quoted,
    );
  }
});

// ---------------------------------------------------------------------------
// RFC 6455 §9.1: header syntax
// ---------------------------------------------------------------------------

Deno.test("parseExtensions reads tokens, parameters, quoted strings and optional whitespace (RFC 6455 §9.1)", () => {
  assert.deepEqual(
    parseExtensions(
      'PerMessage-Deflate ;Client_Max_Window_Bits ; server_max_window_bits = "10",x-foo; a=b',
    ),
    [
      {
        name: "permessage-deflate",
        params: [
          ["client_max_window_bits", true],
          ["server_max_window_bits", "10"],
        ],
      },
      { name: "x-foo", params: [["a", "b"]] },
    ],
  );
  assert.deepEqual(parseExtensions(""), []);
  assert.deepEqual(parseExtensions(", ,permessage-deflate"), [
    { name: "permessage-deflate", params: [] },
  ]);
});

Deno.test("parseExtensions returns null for malformed syntax, and negotiation then declines (RFC 6455 §9.1)", () => {
  const malformed = [
    ";",
    "permessage-deflate;",
    "permessage-deflate; ;client_max_window_bits",
    "permessage-deflate; =10",
    "permessage-deflate; server_max_window_bits=",
    "permessage-deflate; server_max_window_bits==10",
    "permessage-deflate; a=b=c",
    "permessage-deflate server_max_window_bits",
    'permessage-deflate; server_max_window_bits="10',
    "permessage-deflate; server_max_window_bits=1 0",
    "permessage-deflate/1",
    "permessage-déflate",
    '"permessage-deflate"',
    "permessage-deflate, =",
  ];
  for (const value of malformed) {
    assert.equal(parseExtensions(value), null, value);
    assert.equal(answer(value), null, value);
  }
  // A malformed header is declined as a whole, even with a good offer in it.
  assert.equal(answer("permessage-deflate, permessage-deflate;"), null);
});

Deno.test(
  {
    name:
      "parseExtensions accepts an empty list element after the last comma (RFC 9110 §5.6.1)",
  },
  () => {
    const joined = new Headers([
      ["Sec-WebSocket-Extensions", "permessage-deflate"],
      ["Sec-WebSocket-Extensions", ""],
    ]).get("sec-websocket-extensions");
    assert.equal(joined, "permessage-deflate, ");
    assert.deepEqual(parseExtensions(joined!), [
      { name: "permessage-deflate", params: [] },
    ]);
    assert.equal(answer(joined), BASE);
  },
);

Deno.test("negotiatePerMessageDeflate ignores other extensions (RFC 6455 §9.1)", () => {
  assert.equal(
    answer(
      "x-webkit-deflate-frame; no_context_takeover, permessage-deflate; client_max_window_bits, foo",
    ),
    BASE,
  );
  assert.equal(answer("x-webkit-deflate-frame"), null);
  assert.equal(answer("deflate-frame; permessage-deflate"), null);
  assert.equal(answer(""), null);
  assert.equal(answer(null), null);
});

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

Deno.test("resolveDeflateOptions fills in every default", () => {
  assert.deepEqual(resolveDeflateOptions({}), {
    serverNoContextTakeover: true,
    clientNoContextTakeover: true,
    serverMaxWindowBits: 15,
    clientMaxWindowBits: 0,
    level: 6,
    memLevel: 8,
    threshold: 1024,
  });
  assert.deepEqual(
    resolveDeflateOptions({
      serverNoContextTakeover: false,
      clientNoContextTakeover: false,
      serverMaxWindowBits: 9,
      clientMaxWindowBits: 8,
      level: 0,
      memLevel: 9,
      threshold: 0,
    }),
    {
      serverNoContextTakeover: false,
      clientNoContextTakeover: false,
      serverMaxWindowBits: 9,
      clientMaxWindowBits: 8,
      level: 0,
      memLevel: 9,
      threshold: 0,
    },
  );
});

Deno.test("resolveDeflateOptions throws a RangeError naming the setting, its range and the value", () => {
  const cases: [PerMessageDeflateOptions, string][] = [
    [
      { serverMaxWindowBits: 8 },
      '"serverMaxWindowBits" must be an integer from 9 to 15, got 8',
    ],
    [
      { serverMaxWindowBits: 16 },
      '"serverMaxWindowBits" must be an integer from 9 to 15, got 16',
    ],
    [
      { serverMaxWindowBits: 9.5 },
      '"serverMaxWindowBits" must be an integer from 9 to 15, got 9.5',
    ],
    [
      { clientMaxWindowBits: 7 },
      '"clientMaxWindowBits" must be an integer from 8 to 15, got 7',
    ],
    [
      { clientMaxWindowBits: 16 },
      '"clientMaxWindowBits" must be an integer from 8 to 15, got 16',
    ],
    [{ level: -1 }, '"level" must be an integer from 0 to 9, got -1'],
    [{ level: 10 }, '"level" must be an integer from 0 to 9, got 10'],
    [{ memLevel: 0 }, '"memLevel" must be an integer from 1 to 9, got 0'],
    [{ memLevel: 10 }, '"memLevel" must be an integer from 1 to 9, got 10'],
    [
      { threshold: -1 },
      `"threshold" must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}, got -1`,
    ],
    [
      { threshold: NaN },
      `"threshold" must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}, got NaN`,
    ],
  ];
  for (const [options, message] of cases) {
    assert.throws(
      () => resolveDeflateOptions(options),
      (error: unknown) => {
        assert.ok(error instanceof RangeError, JSON.stringify(options));
        assert.equal(
          error.message,
          `Cannot use permessage-deflate: ${message}`,
        );
        return true;
      },
    );
    // negotiatePerMessageDeflate checks its settings the same way.
    assert.throws(
      () => negotiatePerMessageDeflate("permessage-deflate", options),
      RangeError,
    );
  }
});

Deno.test("resolveDeflateOptions throws a TypeError naming a *NoContextTakeover setting that is not a boolean", () => {
  const cases: [Record<string, unknown>, string][] = [
    [
      { clientNoContextTakeover: "false" },
      '"clientNoContextTakeover" must be a boolean, got string "false"',
    ],
    [
      { clientNoContextTakeover: 0 },
      '"clientNoContextTakeover" must be a boolean, got number 0',
    ],
    [
      { clientNoContextTakeover: null },
      '"clientNoContextTakeover" must be a boolean, got null',
    ],
    [
      { serverNoContextTakeover: "no" },
      '"serverNoContextTakeover" must be a boolean, got string "no"',
    ],
  ];
  for (const [options, message] of cases) {
    for (
      const attempt of [
        () => resolveDeflateOptions(options as PerMessageDeflateOptions),
        () =>
          negotiatePerMessageDeflate(
            "permessage-deflate",
            options as PerMessageDeflateOptions,
          ),
      ]
    ) {
      assert.throws(attempt, {
        name: "TypeError",
        message: `Cannot use permessage-deflate: ${message}`,
      });
    }
  }
});

Deno.test("serve() rejects a bad perMessageDeflate setting before listening", () => {
  assert.throws(
    () =>
      serve(
        { ...LOCAL, perMessageDeflate: { serverMaxWindowBits: 8 } },
        () => {},
      ),
    {
      name: "RangeError",
      message:
        'Cannot use permessage-deflate: "serverMaxWindowBits" must be an integer from 9 to 15, got 8',
    },
  );
});
