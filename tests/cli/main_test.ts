import assert from "node:assert/strict";
import denoJson from "../../deno.json" with { type: "json" };
import { runCli, runPipeline } from "./_helpers.ts";

Deno.test("duplex --help lists every command and the exit codes", async () => {
  const { code, stdout, stderr } = await runCli(["--help"]);
  assert.equal(code, 0, stderr);
  for (const command of ["serve", "listen", "send", "bench"]) {
    assert.match(stdout, new RegExp(`duplex ${command}`));
  }
  assert.match(
    stdout,
    /Exit codes:\n {2}0 {2}success\n {2}1 {2}connection or protocol failure/,
  );
  assert.match(stdout, / {2}2 {2}usage error/);
});

Deno.test("duplex --version prints the version from deno.json", async () => {
  for (const flag of ["--version", "-V"]) {
    const { code, stdout } = await runCli([flag]);
    assert.equal(code, 0);
    assert.equal(stdout, `duplex ${denoJson.version}\n`);
  }
});

Deno.test("duplex COMMAND --help shows each command's usage", async () => {
  await Promise.all(
    ["serve", "listen", "send", "bench"].map(async (command) => {
      const { code, stdout } = await runCli([command, "--help"]);
      assert.equal(code, 0);
      assert.match(stdout, new RegExp(`^Usage: duplex ${command} `));
      assert.match(stdout, /-h, --help/);
      const viaHelp = await runCli(["help", command]);
      assert.equal(viaHelp.stdout, stdout);
    }),
  );
});

const NOT_PEM = new URL("../../deno.json", import.meta.url).pathname;
const CERT = new URL("../fixtures/cert.pem", import.meta.url).pathname;
const KEY = new URL("../fixtures/key.pem", import.meta.url).pathname;

Deno.test("duplex usage errors exit with 2 and say what to do", async () => {
  await using encrypted = await tempFile(
    `-----BEGIN ENCRYPTED PRIVATE KEY-----\n${
      new Uint8Array(48).toBase64()
    }\n-----END ENCRYPTED PRIVATE KEY-----\n`,
  );
  const cases: [string[], RegExp][] = [
    [[], /^duplex .*\n\nUsage:/],
    [
      ["frob"],
      /^duplex: unknown command "frob"; the commands are serve, listen, send, bench\nRun "duplex --help" for usage\.\n$/,
    ],
    [
      ["send"],
      /^duplex send: missing the server URL \(ws:\/\/\.\.\. or wss:\/\/\.\.\.\)\nRun "duplex send --help" for usage\.\n$/,
    ],
    [["send", "localhost:8765", "hi"], /did you mean ws:\/\/localhost:8765\?/],
    // A URL with a scheme is not given a second one.
    [
      ["send", "ws://127.0.0.1:99999/", "hi"],
      /"ws:\/\/127\.0\.0\.1:99999\/" is not a valid ws: or wss: URL; pass a URL such as ws:\/\/host:port\/path/,
    ],
    [
      ["listen", "ftp://x/"],
      /is not a valid ws: or wss: URL; pass a URL such as/,
    ],
    [
      ["send", "ws://localhost:1", "hi", "--file", "x.txt"],
      /give messages as arguments or with --file, not both/,
    ],
    [
      ["send", "ws://localhost:1", "--file", "/nonexistent/file"],
      /cannot read --file \/nonexistent\/file/,
    ],
    [
      ["send", "ws://localhost:1", "--bogus"],
      /^duplex send: Unknown option '--bogus'\nRun "duplex send --help" for usage\.\n$/,
    ],
    [
      ["listen", "ws://localhost:1", "--header", "no colon"],
      /--header must look like "Name: value", got "no colon"/,
    ],
    [
      ["listen", "ws://localhost:1", "--protocol", "a b"],
      /^duplex listen: --protocol must hold HTTP tokens, got "a b"\n/,
    ],
    [
      ["listen", "ws://localhost:1", "--header", "Sec-WebSocket-Extensions: x"],
      /^duplex listen: --header may not set sec-websocket-extensions; the handshake sets it\n/,
    ],
    [
      ["bench", "ws://localhost:1", "--size", "3Q"],
      /--size must be a size such as 32, 1K, 64KiB or 1M, got "3Q"/,
    ],
    [
      ["bench", "ws://localhost:1", "--connections", "0"],
      /--connections must be a positive integer, got "0"/,
    ],
    [
      ["bench", "ws://localhost:1", "--duration", "soon"],
      /--duration must be a duration such as 10 \(seconds\), 10s, 500ms or 1m/,
    ],
    [
      ["serve", "--port", "70000"],
      /--port must be an integer from 0 to 65535 \(0 picks a free port\), got "70000"/,
    ],
    [
      ["serve", "--port", "-1"],
      /--port must be an integer from 0 to 65535 \(0 picks a free port\), got "-1"/,
    ],
    [
      ["bench", "ws://localhost:1", "--connections", "-4"],
      /--connections must be a positive integer, got "-4"/,
    ],
    [
      ["serve", "--echo", "--broadcast"],
      /--echo and --broadcast cannot be combined; pick one/,
    ],
    [
      ["serve", "--cert", "cert.pem"],
      /--cert and --key go together: pass both to serve wss:\/\//,
    ],
    [
      ["serve", "--static", "/nonexistent/dir"],
      /--static must name a directory, got "\/nonexistent\/dir"/,
    ],
    [["serve", "extra"], /unexpected argument "extra"/],
    [["serve", "--hostname", ""], /--hostname must be an address or host name/],
    [
      ["serve", "--hostname", "bad host", "--port", "0"],
      /^duplex serve: --hostname must be an address or host name, such as 127\.0\.0\.1 or ::, got "bad host" \(invalid host 'bad host': invalid char found in FQDN\)\n/,
    ],
    [
      ["serve", "--cert", NOT_PEM, "--key", NOT_PEM],
      /--cert .*deno\.json is not PEM: expected a "-----BEGIN CERTIFICATE-----" block/,
    ],
    [
      ["listen", "ws://localhost:1", "--ca", NOT_PEM],
      /--ca .*deno\.json is not PEM/,
    ],
    // A key where the certificate goes, and the other way round.
    [
      ["serve", "--cert", KEY, "--key", KEY],
      /--cert .*key\.pem is not PEM: expected a "-----BEGIN CERTIFICATE-----"/,
    ],
    [
      ["serve", "--cert", CERT, "--key", CERT],
      /--key .*cert\.pem is not PEM: expected a "-----BEGIN PRIVATE KEY-----"/,
    ],
    [
      ["serve", "--cert", CERT, "--key", encrypted.path],
      /--key .* is encrypted, and Deno reads only unencrypted keys: decrypt it first \(openssl pkey -in .* -out plain-key\.pem\)/,
    ],
  ];
  await Promise.all(cases.map(async ([args, pattern]) => {
    const { code, stdout, stderr } = await runCli(args);
    assert.equal(code, 2, `${args.join(" ")}: ${stderr}`);
    assert.match(stderr, pattern, args.join(" "));
    assert.equal(stdout, "", args.join(" "));
  }));
});

/** A temporary file holding `text`, removed when disposed. */
async function tempFile(text: string) {
  const path = await Deno.makeTempFile({ suffix: ".pem" });
  await Deno.writeTextFile(path, text);
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path) };
}

Deno.test("duplex exits with 1 when the server cannot be reached", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  for (const command of ["send", "listen", "bench"]) {
    const { code, stderr } = await runCli([command, `ws://127.0.0.1:${port}`]);
    assert.equal(code, 1, stderr);
    assert.match(
      stderr,
      new RegExp(
        `^duplex ${command}: Cannot connect to ws://127\\.0\\.0\\.1:${port}/: .*Is the server running on that port\\?`,
      ),
    );
  }
});

Deno.test("duplex usage errors say what to do: help for an unknown command, a message like an option, an option value like an option, a size in fractions of a byte", async () => {
  const cases: [string[], RegExp][] = [
    [
      ["help", "foo"],
      /^duplex: unknown command "foo"; the commands are serve, listen, send, bench\nRun "duplex --help" for usage\.\n$/,
    ],
    [
      ["send", "ws://localhost:1", "-1"],
      /^duplex send: unknown option "-1"; to send a message that starts with "-", put -- before it: duplex send URL -- "-1"\nRun "duplex send --help" for usage\.\n$/,
    ],
    [
      ["send", "ws://localhost:1", "--file", "-x"],
      /^duplex send: --file is missing its value \("-x" looks like an option\); to pass a value that starts with "-", write --file=-x\nRun "duplex send --help" for usage\.\n$/,
    ],
    [
      ["bench", "ws://localhost:1", "--size", "0.5"],
      /^duplex bench: --size must be a whole number of bytes, got "0\.5" \(0\.5 bytes\)\n/,
    ],
  ];
  await Promise.all(cases.map(async ([args, pattern]) => {
    const { code, stdout, stderr } = await runCli(args);
    assert.equal(code, 2, `${args.join(" ")}: ${stderr}`);
    assert.match(stderr, pattern, args.join(" "));
    assert.equal(stdout, "", args.join(" "));
  }));
  // A size with a unit may have a fraction when it makes whole bytes.
  const { code, stderr } = await runCli([
    "bench",
    "ws://127.0.0.1:1",
    "--size",
    "1.5K",
    "--connections",
    "1",
  ]);
  assert.equal(code, 1, stderr);
  assert.match(stderr, /Cannot connect/);
});

Deno.test("duplex --help and duplex serve whose reader is gone exit 0 quietly, not with a BrokenPipe error", async () => {
  for (
    const pipeline of [
      "--help | true",
      "serve --port 0 --hostname 127.0.0.1 --quiet | true",
    ]
  ) {
    const { code, stderr } = await runPipeline(pipeline);
    assert.equal(code, 0, `${pipeline}: ${stderr}`);
    assert.equal(stderr, "", pipeline);
  }
});
