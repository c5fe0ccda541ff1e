// A transport whose input ends (the peer half-closed) while a write to the
// peer is pending (it stopped reading): the socket must still end, within
// its close timeout, whatever the transport does with that write.
import assert from "node:assert/strict";
import {
  DEADLINE,
  delay,
  oneReadThenEnd,
  socketOver,
  withTimeout,
} from "./_helpers.ts";

/**
 * A transport whose writes stay pending: until `close()` rejects them
 * (`failOnClose`, as a closed TCP connection's writes fail), or for good.
 */
function stalledPeer(failOnClose: boolean) {
  const input = oneReadThenEnd(null);
  const pending: ((error: Error) => void)[] = [];
  let closes = 0;
  const writable = new WritableStream<Uint8Array>({
    write: () => new Promise<void>((_, reject) => pending.push(reject)),
  });
  const onClose = () => {
    closes++;
    if (failOnClose) {
      for (const reject of pending.splice(0)) reject(new Error("closed"));
    }
  };
  const socket = socketOver(
    input.readable,
    writable,
    { closeTimeout: 200 },
    onClose,
  );
  return { socket, end: input.end, closes: () => closes };
}

for (const failOnClose of [true, false]) {
  Deno.test(
    `Socket: input that ends while a write is pending ends the socket within the close timeout (the transport's close() ${
      failOnClose ? "fails the write" : "leaves the write pending"
    })`,
    async () => {
      const peer = stalledPeer(failOnClose);
      const { socket } = peer;
      const running = socket.run();
      const sent = socket.send(new Uint8Array(100_000)).then(
        () => "sent",
        (error) => error.name,
      );
      await delay(20);
      peer.end();
      await delay(20);
      const closing = socket.close(1000);
      const info = await withTimeout(socket.closed, DEADLINE, "closed");
      assert.deepEqual(info, { code: 1006, reason: "", wasClean: false });
      assert.deepEqual(await withTimeout(closing, DEADLINE, "close()"), info);
      await withTimeout(running, DEADLINE, "run()");
      assert.equal(peer.closes(), 1);
      assert.equal(socket.bufferedAmount, 0);
      if (failOnClose) {
        assert.equal(await sent, "ConnectionClosedError");
      }
    },
  );
}
