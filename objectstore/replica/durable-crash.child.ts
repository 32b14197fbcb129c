/**
 * Child process for durable-recovery.test.ts: stores v1 of a key, then starts
 * writing v2 and stops at the stage named by argv[3], announcing it on stdout
 * so the parent can SIGKILL it exactly there.
 */
import path from "node:path";
import { LocalStore } from "../../store/index.js";
import { DurableReplicaStore } from "./durable-store.js";
import { HlcClock } from "../../cluster/index.js";
import { knownWrite, once } from "./replica-store.js";
import { bytes, record } from "./durable-testutil.js";

const [dir, stage] = process.argv.slice(2) as [string, "streaming" | "placed"];
const say = (s: string) => process.stdout.write(s + "\n");
const forever = () => new Promise<never>(() => {});

const local = await LocalStore.open(dir);
const s = await DurableReplicaStore.open({ store: local, dir: path.join(dir, "replicas"), name: "replicas" });
const hlc = new HlcClock("child");
const v1 = bytes(3 << 20, 1);
await s.put(knownWrite(record("b", "k", v1, hlc.now()), once(v1)));

if (stage === "streaming") {
  // A body that never ends (a sender that keeps going): killed mid-stream.
  const chunk = Buffer.alloc(1 << 20, 2);
  const body = (async function* () {
    for (let i = 0; i < 4; i++) { yield chunk; await new Promise((r) => setTimeout(r, 5)); }
    say("streaming");
    for (;;) { yield chunk; await new Promise((r) => setTimeout(r, 20)); }
  })();
  await s.put({ header: { bucket: "b", key: "k", version: hlc.now(), tombstone: false, meta: "" }, body, expected: () => ({ size: 0, sha256: "" }) });
} else {
  // Killed between the rename into place and the commit.
  const place = s.files.place.bind(s.files);
  s.files.place = async (st) => { await place(st); say("placed"); return forever(); };
  const v2 = bytes(2 << 20, 2);
  await s.put(knownWrite(record("b", "k", v2, hlc.now()), once(v2)));
}
