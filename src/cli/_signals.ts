/**
 * Calls `stop` on the signals that ask a command to stop: SIGINT (Ctrl-C)
 * and SIGTERM (`kill`, service managers), or SIGINT and SIGBREAK on Windows.
 * Signals this runtime cannot listen for are skipped.
 *
 * @param stop Called on each such signal.
 * @returns `remove()` takes the listeners off again.
 */
export function onStopSignals(stop: () => void): { remove(): void } {
  const installed: Deno.Signal[] = [];
  const names: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT", "SIGBREAK"]
    : ["SIGINT", "SIGTERM"];
  for (const name of names) {
    try {
      Deno.addSignalListener(name, stop);
      installed.push(name);
    } catch {
      // Not supported here.
    }
  }
  return {
    remove() {
      for (const name of installed) Deno.removeSignalListener(name, stop);
    },
  };
}
