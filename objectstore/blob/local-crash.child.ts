/**
 * Child process for local-crash.test.ts: writes v1 of a key, then starts
 * writing v2 and stops at the stage named by argv[3], announcing it on stdout
 * so the parent can SIGKILL it exactly there.
 */
import { LocalStore } from "../../store/index.js";
import { LocalBlobStore } from "./local.js";
import type { PutObjectInput } from "./types.js";

const [dir, stage] = process.argv.slice(2) as [string, "streaming" | "placed" | "committed"];
const say = (s: string) => process.stdout.write(s + "\n");
const forever = () => new Promise<never>(() => {});

const store = await LocalStore.open(dir);
const blobs = await LocalBlobStore.open({ store });
await blobs.createBucket("b", "root");
const v1 = Buffer.alloc(3 << 20, 1);
await blobs.putObject({ bucket: "b", key: "k", body: (async function* () { yield v1; })(), headers: {}, userMeta: {}, expect: {} });

async function* slow(): AsyncGenerator<Uint8Array> {
  const chunk = Buffer.alloc(1 << 20, 2);
  for (let i = 0; i < 8; i++) { yield chunk; await new Promise((r) => setTimeout(r, 5)); }
  say("streaming");
  for (;;) { yield chunk; await new Promise((r) => setTimeout(r, 20)); }
}
async function* fixed(): AsyncGenerator<Uint8Array> { yield Buffer.alloc(2 << 20, 2); }

const input: PutObjectInput = { bucket: "b", key: "k", body: stage === "streaming" ? slow() : fixed(), headers: {}, userMeta: {}, expect: {} };
if (stage === "placed") {
  const placeOrig = blobs.files.place.bind(blobs.files);
  blobs.files.place = async (s) => { await placeOrig(s); say("placed"); return forever(); };
}
if (stage === "committed") {
  blobs.collect = async () => { say("committed"); return forever(); };
}
await blobs.putObject(input);
