/**
 * A short, fixed-seed run of `tools/fuzz.ts`, plus checks that the fuzzer
 * itself works: it finds a planted bug, replays it, and its CLI reports
 * crashes with a seed, a hex dump and exit code 1.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  formatCrash,
  fuzz,
  hexDump,
  runCase,
  TARGETS,
} from "../../tools/fuzz.ts";

const FUZZ = new URL("../../tools/fuzz.ts", import.meta.url).pathname;

Deno.test("fuzz() finds no crash in the core in a fixed-seed two-second run", () => {
  const report = fuzz({ seed: 20_240_601, seconds: 2, maxCrashes: 3 });
  assert.deepEqual(
    report.crashes.map(formatCrash),
    [],
    "crashes (replay them with deno task fuzz --replay TARGET:SEED)",
  );
  // Every target and every generator ran, however slow the machine.
  assert.ok(report.iterations >= 100, `only ${report.iterations} cases`);
  for (const target of TARGETS) {
    assert.ok((report.perTarget[target] ?? 0) > 0, target);
  }
  for (const generator of ["valid", "mutated", "random"]) {
    assert.ok(
      (report.perGenerator[`connection-server/${generator}`] ?? 0) > 0,
      generator,
    );
  }
});

Deno.test("fuzz() finds a planted allocation bug and runCase() replays it", () => {
  const report = fuzz({
    seed: 1,
    seconds: 2,
    targets: ["canary"],
    maxCrashes: 1,
  });
  assert.equal(report.crashes.length, 1, "the canary was not found");
  const [crash] = report.crashes;
  assert.match(crash.message, /^allocated \d+ bytes after receiving \d+/);
  assert.throws(() => runCase("canary", crash.caseSeed), {
    name: "CrashError",
    message: crash.message,
  });
  const text = formatCrash(crash);
  assert.match(text, new RegExp(`--replay canary:${crash.caseSeed}\\b`));
  assert.ok(text.includes(hexDump(crash.input).split("\n")[0]));
});

Deno.test("hexDump() shows offsets, hex and printable ASCII", () => {
  const bytes = new TextEncoder().encode("GET / HTTP/1.1\r\n\x00\xff");
  assert.equal(
    hexDump(bytes),
    "00000000  47 45 54 20 2f 20 48 54 54 50 2f 31 2e 31 0d 0a  GET / HTTP/1.1..\n" +
      "00000010  00 c3 bf                                         ...",
  );
  assert.equal(
    hexDump(new Uint8Array(40), 16).split("\n")[1],
    "... 24 more bytes",
  );
});

async function runCli(args: string[]) {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", FUZZ, ...args],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const decoder = new TextDecoder();
  return {
    code,
    stdout: decoder.decode(stdout),
    stderr: decoder.decode(stderr),
  };
}

Deno.test("tools/fuzz.ts exits 0 with its iteration count, and 1 with a seed and hex dump on a crash", async () => {
  const clean = await runCli(["--seconds", "0.3", "--seed", "7"]);
  assert.equal(clean.code, 0, clean.stderr);
  assert.match(
    clean.stdout,
    /^fuzz: \d+ iterations in [\d.]+ s, seed 7, 0 crash/m,
  );

  const crashed = await runCli([
    "--seconds=1",
    "--seed=1",
    "--targets=canary",
    "--max-crashes=1",
  ]);
  assert.equal(crashed.code, 1, crashed.stderr);
  assert.match(crashed.stdout, /^CRASH in canary, case seed \d+$/m);
  assert.match(crashed.stdout, /--replay canary:\d+/);
  assert.match(crashed.stdout, /^ {4}00000000 {2}[0-9a-f]{2} /m);

  const bad = await runCli(["--seconds"]);
  assert.equal(bad.code, 2);
});
