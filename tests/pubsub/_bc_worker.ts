// A worker that collects what a BroadcastChannelAdapter on `name` delivers
// and posts it back once `expect` messages have come.
import { BroadcastChannelAdapter } from "../../mod.ts";

/** The worker's own scope (this file is type-checked with the window's). */
const scope = globalThis as unknown as {
  onmessage: (event: MessageEvent<{ name: string; expect: number }>) => void;
  postMessage(message: unknown): void;
};

scope.onmessage = (event) => {
  const { name, expect } = event.data;
  const received: string[] = [];
  const adapter = new BroadcastChannelAdapter(name);
  adapter.start((topic, message) => {
    received.push(`${topic}:${message}`);
    if (received.length === expect) {
      scope.postMessage(received);
      adapter.close();
    }
  });
  // Ready once its channel is open, on the turn after start() (a timer set
  // after the adapter's fires after it): a post before would not reach it.
  setTimeout(() => scope.postMessage("ready"), 0);
};
