/**
 * Listens for the signals that ask a command to stop: SIGINT (Ctrl-C) and
 * SIGTERM (`kill`, service managers), or SIGINT and SIGBREAK on Windows.
 * Signals this runtime cannot listen for are skipped.
 *
 * A second such signal, while the first is still being handled (a closing
 * handshake the peer does not answer, a shutdown that waits), ends the
 * process at once, with 130 (SIGINT) or 143 (SIGTERM), as shells expect.
 *
 * @param stop Called on the first such signal.
 * @returns `signal`, aborted by the first such signal (pass it to
 * `connect()`, so that a stop during the handshake ends it); `remove()`
 * takes the listeners off again.
 */
export function onStopSignals(
  stop?: () => void,
): { signal: AbortSignal; remove(): void } {
  const controller = new AbortController();
  const installed: [Deno.Signal, () => void][] = [];
  const names: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT", "SIGBREAK"]
    : ["SIGINT", "SIGTERM"];
  for (const name of names) {
    const onSignal = () => {
      if (controller.signal.aborted) Deno.exit(name === "SIGTERM" ? 143 : 130);
      controller.abort(new Error("stopped by a signal"));
      stop?.();
    };
    try {
      Deno.addSignalListener(name, onSignal);
      installed.push([name, onSignal]);
    } catch {
      // Not supported here.
    }
  }
  return {
    signal: controller.signal,
    remove() {
      for (const [name, onSignal] of installed) {
        Deno.removeSignalListener(name, onSignal);
      }
    },
  };
}

/** Runs `stop` when `signal` aborts, at once if it already has. */
export function whenStopped(signal: AbortSignal, stop: () => void): void {
  if (signal.aborted) stop();
  else signal.addEventListener("abort", stop, { once: true });
}
