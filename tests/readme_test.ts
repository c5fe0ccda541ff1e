import assert from "node:assert/strict";

// The README's TypeScript samples, type-checked against this checkout (the
// jsr: specifiers mapped to the local entry points), so that none of them
// drifts from the API.
const README = new URL("../README.md", import.meta.url);
const ENTRY_POINTS: Record<string, string> = {
  "jsr:@duplex/ws": "../mod.ts",
  "jsr:@duplex/ws/redis": "../src/pubsub/redis_adapter.ts",
  "jsr:@duplex/ws/cli": "../src/cli/main.ts",
};

Deno.test("every TypeScript sample in README.md type-checks against this checkout", async () => {
  const readme = await Deno.readTextFile(README);
  const samples = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) =>
    m[1]
  );
  assert.ok(samples.length >= 5, `only ${samples.length} samples found`);
  const dir = await Deno.makeTempDir({ prefix: "duplex-readme-" });
  try {
    const imports = Object.fromEntries(
      Object.entries(ENTRY_POINTS).map((
        [specifier, path],
      ) => [specifier, new URL(path, import.meta.url).href]),
    );
    const config = JSON.parse(
      await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
    );
    await Deno.writeTextFile(
      `${dir}/deno.json`,
      JSON.stringify({ imports: { ...config.imports, ...imports } }),
    );
    const files = [];
    for (const [i, sample] of samples.entries()) {
      const file = `${dir}/sample_${i}.ts`;
      await Deno.writeTextFile(file, sample);
      files.push(file);
    }
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["check", "--quiet", "--config", `${dir}/deno.json`, ...files],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const errors = new TextDecoder().decode(output.stderr);
    assert.equal(
      output.code,
      0,
      `README samples do not type-check:\n${errors}`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
