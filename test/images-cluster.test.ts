/**
 * VM images across nodes: imported through one agent, they live in the
 * replicated object store; another agent that creates a VM from the image
 * fetches it into its own cache (a cache miss), checking every part's SHA-256
 * against the image record. A replica damaged on disk is never cached: the
 * read that finds the damage is refused with DATA_LOSS and leaves no file
 * where libvirt could pick it up; later reads go to a good replica, and the
 * damaged one is rewritten from it.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { open, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { startCluster, waitFor, type AgentProcess, type Cluster } from "./harness.js";
import { S3_ENV, waitRing } from "./objectstore-util.js";

let cluster: Cluster;
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

before(async () => {
  cluster = await startCluster(3, { env: S3_ENV });
  await waitRing(cluster.agents, ["n1", "n2", "n3"]);
});
after(async () => cluster?.stop());

/** Files under dir (recursively) of exactly `size` bytes: the replica bodies of one image part. */
async function filesOfSize(dir: string, size: number): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const p = path.join(e.parentPath, e.name);
    if ((await stat(p)).size === size) out.push(p);
  }
  return out;
}

const cached = (a: AgentProcess, part: string) => readFile(path.join(a.dataDir, "images", "tiny", part)).catch(() => undefined);

test("an image imported on n1 is fetched by n3 for a VM, verified byte for byte", async () => {
  const [n1, , n3] = cluster.agents as [AgentProcess, AgentProcess, AgentProcess];
  // Odd sizes no other file in the data dirs has, so the replicas can be found by size below.
  const kernel = randomBytes(300_007), initrd = randomBytes(200_003);
  await writeFile(path.join(cluster.root, "kernel"), kernel);
  await writeFile(path.join(cluster.root, "initrd"), initrd);
  let r = await n1.cli(["image", "import", "tiny", "--kernel", path.join(cluster.root, "kernel"), "--initrd", path.join(cluster.root, "initrd"), "--cmdline", "console=ttyS0"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await cached(n3, "kernel"), undefined, "n3 has no copy before it needs one");
  r = await n3.cli(["image", "list", "--json"]);
  assert.deepEqual((JSON.parse(r.stdout) as { name: string }[]).map((i) => i.name), ["tiny"], "every node lists the cluster's images");

  r = await n3.cli(["vm", "create", "on-n3", "--node", "n3", "--image", "tiny", "--vcpus", "1", "--ram", "128", "--disk", "1", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(sha((await cached(n3, "kernel"))!), sha(kernel), "n3 cached the kernel byte for byte");
  assert.equal(sha((await cached(n3, "initrd"))!), sha(initrd), "n3 cached the initrd byte for byte");
  assert.equal((await n3.cli(["vm", "delete", "on-n3"])).code, 0);
});

test("a replica damaged on disk is refused, never cached, then read around and rewritten", async () => {
  const [, n2] = cluster.agents as [AgentProcess, AgentProcess, AgentProcess];
  const kernel = await readFile(path.join(cluster.root, "kernel"));
  // Damage n2's own replica of the kernel (N=3 on 3 nodes: every node holds one).
  const victims = await filesOfSize(path.join(n2.dataDir, "replicas"), kernel.length);
  assert.equal(victims.length, 1, `n2 holds one replica of the kernel (found ${victims.join(", ") || "none"})`);
  const fh = await open(victims[0]!, "r+");
  await fh.write(Buffer.from([kernel[150_000]! ^ 0xff]), 0, 1, 150_000);
  await fh.close();

  // n2 has no cached copy: creating a VM there must fetch the kernel through the store.
  // The coordinator reads the body from its own replica first when its own head reply was among the R
  // it waited for; under load a remote pair can answer first, the good copy is read and the damage goes
  // unseen. So after a success with no data loss counted yet, drop the cache and fetch again, until the
  // damaged replica has been read once.
  const outcomes: string[] = [];
  const lossSeen = async () => /thoc_objectstore_data_loss_total [1-9]/.test(await (await fetch(`${n2.httpUrl}/metrics`)).text());
  for (let i = 0; i < 10 && !(outcomes.includes("created") && await lossSeen()); i++) {
    if (outcomes.includes("created")) await rm(path.join(n2.dataDir, "images", "tiny"), { recursive: true, force: true });
    const r = await n2.cli(["vm", "create", `on-n2-${i}`, "--node", "n2", "--image", "tiny", "--vcpus", "1", "--ram", "128", "--disk", "1"]);
    const file = await cached(n2, "kernel");
    if (r.code === 0) {
      outcomes.push("created");
      assert.ok(file, "a created VM has its kernel in the cache");
      assert.equal(sha(file), sha(kernel), "what n2 cached is the good copy, not its damaged replica");
      assert.equal((await n2.cli(["vm", "delete", `on-n2-${i}`])).code, 0);
    } else {
      outcomes.push("refused");
      assert.match(r.stderr, /corrupt|sha256|SHA-256|data loss|damaged/i, "a refusal says the data is damaged");
      assert.ok(file === undefined || sha(file) === sha(kernel), "a refused fetch leaves no damaged file in the cache");
    }
  }
  console.log(`  fetches with one damaged replica: ${outcomes.join(", ")}`);
  assert.ok(outcomes.includes("created"), "with two good replicas left, a fetch succeeds once the damage is known");
  assert.ok(await lossSeen(), "the damaged replica was read, refused and counted as data loss");
  // The damaged replica is rewritten from a good one (a new file; the damaged one is removed).
  await waitFor("n2's replica of the kernel rewritten", async () => {
    const now = await filesOfSize(path.join(n2.dataDir, "replicas"), kernel.length);
    return now.length === 1 && sha(await readFile(now[0]!)) === sha(kernel);
  }, 20_000, 250);
});
