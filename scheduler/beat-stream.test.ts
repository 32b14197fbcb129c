import { test } from "node:test";
import assert from "node:assert/strict";
import { BeatStream, ServedBeatStreams } from "./beat-stream.js";
import { ThocError } from "../errors/index.js";

/** An in-memory peer: each open is a ServedBeatStreams.serve over the requests, echoing n * 10 unless `mute`. */
function peer(served: ServedBeatStreams, opts: { mute?: () => boolean } = {}) {
  const opens: number[] = [];
  const open = (reqs: AsyncIterable<number>, signal: AbortSignal): AsyncIterable<number> => {
    opens.push(opens.length);
    const out = served.serve(reqs, async (n) => {
      while (opts.mute?.()) await new Promise((r) => setTimeout(r, 5));
      return n * 10;
    });
    return {
      async *[Symbol.asyncIterator]() {
        const it = out[Symbol.asyncIterator]();
        const aborted = new Promise<IteratorResult<number>>((_, rej) => signal.addEventListener("abort", () => rej(new ThocError("cancelled", "aborted")), { once: true }));
        aborted.catch(() => undefined);
        for (;;) {
          const n = await Promise.race([it.next(), aborted]);
          if (n.done) return;
          yield n.value;
        }
      },
    };
  };
  return { open, opens };
}

test("beats on one stream are answered in order, one reply each", async () => {
  const served = new ServedBeatStreams();
  const p = peer(served);
  const s = new BeatStream(p.open, 1000);
  const replies = await Promise.all([1, 2, 3].map((n) => s.send(n)));
  assert.deepEqual(replies, [10, 20, 30]);
  assert.equal(await s.send(4), 40);
  assert.equal(p.opens.length, 1, "one stream for every beat");
  s.close();
  await assert.rejects(s.send(5), (e: unknown) => ThocError.from(e).code === "cancelled");
});

test("a stream that stops answering is given up after staleMs and the next beat opens a new one", async () => {
  let mute = true;
  const served = new ServedBeatStreams();
  const p = peer(served, { mute: () => mute });
  let now = 0;
  const s = new BeatStream(p.open, 100, () => now);
  const stuck = s.send(1);
  now = 50;
  const alsoStuck = s.send(2);
  assert.equal(p.opens.length, 1, "not stale yet");
  now = 150;
  mute = false;
  const fresh = s.send(3);
  await assert.rejects(stuck, (e: unknown) => ThocError.from(e).code === "deadline_exceeded");
  await assert.rejects(alsoStuck, (e: unknown) => ThocError.from(e).code === "deadline_exceeded");
  assert.equal(await fresh, 30);
  assert.equal(p.opens.length, 2);
  s.close();
});

test("the serving side's close ends its open streams: waiting beats fail, the next one is refused", async () => {
  const served = new ServedBeatStreams();
  const p = peer(served);
  const s = new BeatStream(p.open, 1000);
  assert.equal(await s.send(1), 10);
  served.close();
  // The stream ends at the peer; a beat sent then fails (ended or refused), never hangs.
  await assert.rejects(s.send(2), (e: unknown) => ["unavailable", "cancelled"].includes(ThocError.from(e).code));
  await assert.rejects(s.send(3), (e: unknown) => ThocError.from(e).code === "unavailable");
  s.close();
});
