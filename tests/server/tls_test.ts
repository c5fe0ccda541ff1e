import assert from "node:assert/strict";
import tls from "node:tls";
import { serve } from "../../mod.ts";
import {
  assertBytes,
  DEADLINE,
  delay,
  DenoClient,
  echo,
  encodeRequest,
  frame,
  LOCAL,
  NpmClient,
  OP,
  pattern,
  RawPeer,
  SAMPLE_ACCEPT,
  upgradeHeaders,
  waitUntil,
  withTimeout,
  wsUrl,
} from "./_helpers.ts";

// A self-signed certificate for CN=localhost with SANs localhost and
// 127.0.0.1, valid for 100 years (see tests/fixtures/README.md).
const cert = Deno.readTextFileSync(
  new URL("../fixtures/cert.pem", import.meta.url),
);
const key = Deno.readTextFileSync(
  new URL("../fixtures/key.pem", import.meta.url),
);
const TLS = { ...LOCAL, cert, key };

Deno.test("serve({cert, key}) echoes over wss:// to npm:ws trusting the CA", async () => {
  await using server = serve(TLS, echo);
  await using client = await NpmClient.connect(
    wsUrl(server.addr, "/", "wss"),
    { ca: cert },
  );
  assert.equal(await client.roundTrip("secure hello"), "secure hello");
  const big = pattern(1024 * 1024, 3);
  assertBytes(await client.roundTrip(big), big);
  assert.equal((await client.close(1000)).code, 1000);
});

Deno.test(
  "serve({cert, key}) echoes over wss:// to npm:ws with rejectUnauthorized: false",
  async () => {
    await using server = serve(TLS, echo);
    await using client = await NpmClient.connect(
      `wss://localhost:${server.addr.port}/`,
      { rejectUnauthorized: false },
    );
    assert.equal(await client.roundTrip("hello"), "hello");
  },
);

Deno.test(
  "serve({cert, key}) echoes over wss:// to Deno's WebSocket with an HttpClient CA",
  async () => {
    await using server = serve(TLS, echo);
    using httpClient = Deno.createHttpClient({ caCerts: [cert] });
    await using client = await DenoClient.connect(
      `wss://localhost:${server.addr.port}/`,
      { client: httpClient },
    );
    assert.equal(await client.roundTrip("hello"), "hello");
    const big = pattern(70_000, 9);
    assertBytes(await client.roundTrip(big), big);
    const seen = await client.close(4000, "done");
    assert.equal(seen.code, 4000);
    assert.equal(seen.wasClean, true);
  },
);

Deno.test(
  "serve({cert, key}) completes a handshake over raw Deno.connectTls and reports wss:// URLs",
  async () => {
    const url = Promise.withResolvers<string>();
    await using server = serve(TLS, async (socket) => {
      url.resolve(socket.url.href);
      await echo(socket);
    });
    const conn = await withTimeout(
      Deno.connectTls({
        hostname: "localhost",
        port: server.addr.port,
        caCerts: [cert],
      }),
      DEADLINE,
      "TLS connect",
    );
    using peer = new RawPeer(conn);
    await peer.write(
      encodeRequest("GET /secure HTTP/1.1", upgradeHeaders(server.addr)),
    );
    const response = await peer.readResponse();
    assert.equal(response.status, 101, response.statusLine);
    assert.equal(response.headers.get("sec-websocket-accept"), SAMPLE_ACCEPT);
    assert.equal(
      await withTimeout(url.promise, DEADLINE, "the handler"),
      `wss://127.0.0.1:${server.addr.port}/secure`,
    );
    await peer.write(frame(OP.text, "over tls"));
    const reply = await peer.readFrame();
    assert.equal(new TextDecoder().decode(reply.payload), "over tls");
    await peer.write(frame(OP.close, new Uint8Array([0x03, 0xe8])));
    assert.equal((await peer.readClose()).code, 1000);
  },
);

Deno.test(
  "serve({cert, key}) drops a plain-TCP client, logs a connection-error, and keeps serving TLS",
  async () => {
    const errors: unknown[] = [];
    await using server = serve({
      ...TLS,
      logger: (event) => {
        if (event.type === "connection-error") errors.push(event.error);
      },
    }, echo);
    {
      using peer = await RawPeer.connect(server.addr);
      await peer.write(
        encodeRequest("GET / HTTP/1.1", upgradeHeaders(server.addr)),
      );
      // Whatever the TLS layer answers (an alert, or nothing), it is not a
      // WebSocket handshake, and the connection ends.
      const rest = await peer.readToEof();
      assert.ok(!new TextDecoder().decode(rest).includes("HTTP/1.1 101"));
    }
    assert.equal(errors.length, 1, "the TLS failure is logged once");
    assert.equal(server.stats().connectionErrors, 1);
    await using client = await NpmClient.connect(
      wsUrl(server.addr, "/", "wss"),
      { ca: cert },
    );
    assert.equal(await client.roundTrip("after"), "after");
  },
);

Deno.test("serve({cert, key}) does not count an HTTPS keep-alive client that leaves without TLS close_notify as a connection error, as browsers and Node's agent leave", async () => {
  const errors: unknown[] = [];
  await using server = serve({
    ...TLS,
    logger: (event) => {
      if (event.type === "connection-error") errors.push(event.error);
    },
    fetch: () => new Response("ok"),
  }, echo);
  // node:tls's destroy() closes the TCP connection without close_notify.
  const socket = tls.connect({
    host: "127.0.0.1",
    port: server.addr.port,
    ca: cert,
    servername: "localhost",
  });
  let received = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => received += chunk);
  await withTimeout(
    new Promise((resolve) => socket.once("secureConnect", resolve)),
    DEADLINE,
    "the TLS handshake",
  );
  for (let i = 1; i <= 2; i++) {
    socket.write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    await waitUntil(
      () => received.split("HTTP/1.1 200 OK").length - 1 === i,
      `response ${i}`,
    );
  }
  socket.destroy();
  // A browser's preconnect: the TLS handshake, then no request at all.
  const preconnect = tls.connect({
    host: "127.0.0.1",
    port: server.addr.port,
    ca: cert,
    servername: "localhost",
  });
  await withTimeout(
    new Promise((resolve) => preconnect.once("secureConnect", resolve)),
    DEADLINE,
    "the preconnect's TLS handshake",
  );
  await delay(50); // the server reads on past the handshake
  preconnect.destroy();
  await waitUntil(
    () => server.stats().transportConnections === 0,
    "the connections to end",
  );
  assert.deepEqual(server.stats().httpRequests, { 200: 2 });
  assert.deepEqual(errors, []);
  assert.equal(server.stats().connectionErrors, 0);
});

Deno.test("serve() throws TypeError when only cert or key is given", () => {
  assert.throws(() => serve({ ...LOCAL, cert }, echo), {
    name: "TypeError",
    message: 'Cannot serve: "cert" and "key" go together for TLS; got only one',
  });
  assert.throws(() => serve({ ...LOCAL, key }, echo), { name: "TypeError" });
});

Deno.test("serve() with a key that is not the certificate's says so, naming the options", async () => {
  const pair = await crypto.subtle.generateKey(
    { name: "ECDSA", namedCurve: "P-256" },
    true,
    ["sign", "verify"],
  );
  const pkcs8 = new Uint8Array(
    await crypto.subtle.exportKey("pkcs8", pair.privateKey),
  );
  const otherKey = `-----BEGIN PRIVATE KEY-----\n${
    pkcs8.toBase64().replace(/.{64}/g, "$&\n")
  }\n-----END PRIVATE KEY-----\n`;
  assert.throws(() => serve({ ...LOCAL, cert, key: otherKey }, echo), {
    name: "TypeError",
    message: /^Cannot serve: "key" is not the private key of "cert"/,
  });
});

Deno.test("serve() with an encrypted key says so, naming the option and the fix", () => {
  const base64 = new Uint8Array(64).toBase64();
  const keys = [
    `-----BEGIN ENCRYPTED PRIVATE KEY-----\n${base64}\n-----END ENCRYPTED PRIVATE KEY-----\n`,
    `-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n${base64}\n-----END RSA PRIVATE KEY-----\n`,
  ];
  for (const key of keys) {
    assert.throws(() => serve({ ...LOCAL, cert, key }, echo), {
      name: "TypeError",
      message:
        'Cannot serve: "key" is encrypted, and Deno reads only unencrypted keys: decrypt it first (openssl pkey -in key.pem -out plain-key.pem)',
    });
  }
});

Deno.test("serve({cert, key, reusePort}) shares its port with another TLS server (needs --unstable-net)", async () => {
  const mod = new URL("../../mod.ts", import.meta.url).href;
  const fixtures = new URL("../fixtures/", import.meta.url).href;
  // Two TLS servers on one port.
  const script = `
    import { serve } from "${mod}";
    const cert = await Deno.readTextFile(new URL("cert.pem", "${fixtures}"));
    const key = await Deno.readTextFile(new URL("key.pem", "${fixtures}"));
    const options = { hostname: "127.0.0.1", cert, key, reusePort: true };
    const first = serve({ ...options, port: 0 }, () => {});
    const second = serve({ ...options, port: first.addr.port }, () => {});
    console.log(first.addr.port === second.addr.port);
    await first.shutdown();
    await second.shutdown();
  `;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--unstable-net", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stderr);
  assert.equal(new TextDecoder().decode(output.stdout).trim(), "true");
});
