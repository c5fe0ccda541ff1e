// `duplex listen --json URL` whose stdin fails a second in, by then with
// the reader of its output gone: run as `deno run -A THIS URL | sleep 0.5`.
// Prints main()'s exit code to stderr.
import { main } from "../../src/cli/main.ts";

const stdin = new ReadableStream<Uint8Array>({
  start(controller) {
    setTimeout(() => controller.error(new Error("Input/output error")), 1000);
  },
});
const code = await main(["listen", "--json", Deno.args[0]], { stdin });
console.error(`exit ${code}`);
