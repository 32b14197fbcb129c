/**
 * The CLI's output against a real --dev agent: image import's progress off a
 * terminal (plain lines) and on one (a bar, through a real pty from
 * script(1)), --output json|table|wide on every listing with --json the same
 * as --output json, and the guest's address in the `vm list` table (the test
 * driver answers virDomainInterfaceAddresses with a made-up lease).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { CLI, REPO_ROOT, startCluster, type AgentProcess, type Cluster } from "./harness.js";

let c: Cluster;
let a: AgentProcess;
let image = "";
before(async () => {
  c = await startCluster(1, { dev: true });
  a = c.agents[0]!;
  image = path.join(c.root, "disk.raw");
  // Random bytes: big enough to take a moment, and the agent stores what it is given.
  await writeFile(image, randomBytes(24 << 20));
});
after(() => c.stop());

test("image import off a terminal: plain progress lines on stderr, from 0% to 100%, no \\r or escapes; --no-progress: none", async () => {
  const r = await a.cli(["image", "import", "disk1", image, "--json"], 120_000);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { name: string }).name, "disk1", "stdout is the one JSON document");
  assert.doesNotMatch(r.stderr, /[\r\x1b]/);
  const lines = r.stderr.trim().split("\n");
  for (const phase of ["checksum", "upload"]) {
    const mine = lines.filter((l) => l.startsWith(`${phase} disk1: `));
    assert.ok(mine.length >= 2, `${phase}: a first and a last line: ${r.stderr}`);
    assert.match(mine[0]!, new RegExp(`^${phase} disk1: 0 B of 24\\.0 MiB \\(0%\\), 0 B/s, ETA \\?$`));
    assert.match(mine.at(-1)!, new RegExp(`^${phase} disk1: 24\\.0 MiB of 24\\.0 MiB \\(100%\\), [\\d.]+ (B|KiB|MiB|GiB)/s, ETA 0s$`));
  }
  assert.equal(lines.filter((l) => !/^(checksum|upload) disk1: /.test(l)).length, 0, r.stderr);
  const quiet = await a.cli(["image", "import", "disk2", image, "--no-progress"], 120_000);
  assert.equal(quiet.code, 0, quiet.stderr);
  assert.equal(quiet.stderr, "");
  assert.match(quiet.stdout, /^image disk2 imported/);
});

test("image import on a terminal: a bar redrawn in place with rate and ETA", { skip: spawnSync("script", ["--version"]).status === 0 ? false : "script(1) is not installed" }, () => {
  const cmd = [process.execPath, CLI, ...a.cliTarget, "image", "import", "disk3", image].map((x) => `'${x}'`).join(" ");
  const r = spawnSync("script", ["-qefc", cmd, "/dev/null"], { cwd: REPO_ROOT, encoding: "utf8", timeout: 120_000, env: { ...process.env, COLUMNS: "120" } });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const out = r.stdout;
  assert.match(out, /\rupload disk3 \[[#-]+\] +\d+%/, "a bar drawn with a carriage return");
  assert.match(out, /upload disk3 \[#+\] 100% +24\.0 MiB \/ 24\.0 MiB +[\d.]+ \S+\/s {2}ETA 0s/);
  assert.match(out, /\x1b\[K/, "each draw clears what the last one left");
  assert.match(out, /image disk3 imported/);
});

test("--output json|table|wide on every listing; --json is --output json; wide adds columns", async () => {
  let r = await a.cli(["vm", "create", "web1", "--image", "disk1", "--ram", "128", "--disk", "1"]);
  assert.equal(r.code, 0, r.stderr);
  const run = async (args: string[]) => {
    const x = await a.cli(args);
    assert.equal(x.code, 0, `${args.join(" ")}: ${x.stderr}`);
    return x.stdout;
  };
  // Stable between two calls: --json and -o json must print the same document.
  // A member's free memory and disk (and the incarnation each change bumps) move on their own: they are left out.
  const steady = (cmd: string[], doc: unknown): unknown => {
    if (cmd[0] !== "members" || !Array.isArray(doc)) return doc;
    return doc.map((m: { incarnation?: number; meta?: Record<string, unknown> }) => {
      const { incarnation: _i, ...rest } = m;
      const meta = { ...m.meta };
      delete meta.memoryFreeBytes;
      delete meta.diskFreeBytes;
      return { ...rest, meta };
    });
  };
  for (const cmd of [["vm", "list"], ["members"], ["image", "list"], ["s3", "key", "list"], ["vm", "gpus"], ["vm", "snapshot", "list", "web1"]]) {
    const [j1, j2] = await Promise.all([run([...cmd, "--json"]), run([...cmd, "-o", "json"])]);
    assert.deepEqual(steady(cmd, JSON.parse(j2)), steady(cmd, JSON.parse(j1)), cmd.join(" "));
  }
  // Figures that move between calls (uptime, capacity): the same document shape, then.
  for (const cmd of [["ring"], ["leader"], ["status"]]) {
    const [j1, j2] = await Promise.all([run([...cmd, "--json"]), run([...cmd, "-o", "json"])]);
    assert.deepEqual(Object.keys(JSON.parse(j2) as object), Object.keys(JSON.parse(j1) as object), cmd.join(" "));
  }
  const wide: [string[], RegExp, RegExp][] = [
    [["vm", "list"], /^NAME\s+NODE\s+STATUS\s+IMAGE\s+VCPUS\s+RAM\s+DISK\s+IP\s+GPU$/m, /^NAME .* GPU\s+UUID\s+MAC\s+NETWORK\s+GROUP\s+CREATED$/m],
    [["members"], /^NAME\s+ID\s+ADDRESS\s+STATE\s+INC\s+GRPC\s+VERSION$/m, /VERSION\s+S3\s+CPUS\s+MEMORY FREE\s+DISK FREE\s+GPUS\s+SINCE$/m],
    [["image", "list"], /^NAME\s+KIND\s+SIZE\s+SHA256\s+USED BY$/m, /USED BY\s+VIRTUAL SIZE\s+CREATED\s+FILES$/m],
    [["s3", "key", "list"], /^ACCESS KEY ID\s+OWNER\s+CREATED\s+DESCRIPTION$/m, /^ACCESS KEY ID\s+OWNER\s+CREATED\s+ROOT\s+DESCRIPTION$/m],
    [["ring"], /^NAME\s+ID\s+STATE/m, /^ring digest: \S+$/m],
    [["leader"], /^leader\s/m, /^voter config\s+version \d+/m],
    [["status"], /^name\s+n1$/m, /^started\s+\d{4}-/m],
  ];
  for (const [cmd, table, wideOnly] of wide) {
    const [t, w] = await Promise.all([run(cmd), run([...cmd, "--output", "wide"])]);
    assert.match(t, table, `${cmd.join(" ")} table`);
    assert.doesNotMatch(t, wideOnly, `${cmd.join(" ")}: the table is not wide`);
    assert.match(w, wideOnly, `${cmd.join(" ")} wide`);
    assert.equal((await run([...cmd, "-o", "table"])).split("\n")[0], t.split("\n")[0], `${cmd.join(" ")}: -o table is the default`);
  }
  const ev = await a.cli(["events", "--tail", "5", "-o", "wide"]);
  assert.equal(ev.code, 0, ev.stderr);
  assert.match(ev.stdout, / cursor=\S+/);
  const evj = await a.cli(["events", "--tail", "5", "-o", "json"]);
  for (const l of evj.stdout.trim().split("\n")) assert.ok((JSON.parse(l) as { cursor?: string }).cursor);
});

test("vm list shows the guest's address once libvirt knows it (the test driver's lease), and --json carries them", async () => {
  const list = await a.cli(["vm", "list", "--json"]);
  assert.equal(list.code, 0, list.stderr);
  const web1 = (JSON.parse(list.stdout) as { name: string; ipAddresses: string[] }[]).find((v) => v.name === "web1");
  assert.ok(web1 && web1.ipAddresses.length > 0, list.stdout);
  assert.match(web1.ipAddresses[0]!, /^\d+\.\d+\.\d+\.\d+\/\d+$/);
  const table = await a.cli(["vm", "list"]);
  const row = table.stdout.split("\n").find((l) => l.startsWith("web1 "));
  assert.ok(row?.includes(` ${web1.ipAddresses[0]!.replace(/\/\d+$/, "")} `), `${table.stdout}`);
  // Stopped: no address, the configured addressing again.
  const stop = await a.cli(["vm", "stop", "web1", "--force"]);
  assert.equal(stop.code, 0, stop.stderr);
  const after = await a.cli(["vm", "list"]);
  assert.match(after.stdout, /^web1\s+n1\s+stopped\s+.*\sdhcp\s/m);
});
