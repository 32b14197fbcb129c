/**
 * The Debian package as an operator meets it: packaging/build-deb.sh builds it from this checkout's
 * dist/, `dpkg -i` installs it on this machine, the installed /usr/bin/thoc-node answers --version
 * and runs a --dev agent to ready on the bundled Node.js (not the node on PATH), the fresh install
 * leaves the unit stopped and disabled (no cluster key), and `dpkg -r` leaves nothing but the
 * conffile and the data dir, which `dpkg -P` then takes down to the data dir alone. On a host that
 * already has its cluster key, the install enables the unit.
 *
 * Needs root and dpkg-deb (CI has both); skipped on a machine that already has a thoc-node package
 * or an /etc/thoc of its own, which the test would otherwise take over and purge.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type SpawnSyncReturns } from "node:child_process";
import { once } from "node:events";
import { existsSync, lstatSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import path from "node:path";
import { REPO_ROOT, loopbackBlock, waitFor } from "./harness.js";

const APP = "/usr/lib/thoc-node";
const BUNDLED_NODE = `${APP}/node/bin/node`;
const CONFFILE = "/etc/thoc/node.yaml";
/** The link `systemctl enable` (and deb-systemd-helper) makes for WantedBy=multi-user.target. */
const WANTS = "/etc/systemd/system/multi-user.target.wants/thoc-node.service";
const VERSION = (JSON.parse(readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")) as { version: string }).version;

const run = (cmd: string, args: string[], opts: { timeout?: number; env?: NodeJS.ProcessEnv } = {}): SpawnSyncReturns<string> =>
  spawnSync(cmd, args, { encoding: "utf8", timeout: opts.timeout ?? 120_000, env: opts.env ?? process.env });

/** dpkg's status of the package ("install ok installed", ...), "" when dpkg has no trace of it. */
const installed = (): string => {
  const s = run("dpkg-query", ["-W", "-f=${Status}", "thoc-node"]).stdout.trim();
  return s.endsWith("not-installed") ? "" : s;
};

/** dpkg, retried while another dpkg/apt holds its lock (other work on a shared machine). */
async function dpkg(args: string[]): Promise<SpawnSyncReturns<string>> {
  for (let i = 0; ; i++) {
    const r = run("dpkg", args, { timeout: 300_000 });
    if (r.status === 0 || !/lock/i.test(r.stderr) || i >= 60) return r;
    await new Promise((res) => setTimeout(res, 2000));
  }
}

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return "dpkg -i needs root (CI runs as root)";
  if (run("dpkg-deb", ["--version"]).error) return "dpkg-deb is missing (Debian package dpkg)";
  if (installed().length > 0) return `thoc-node is already known to dpkg here (${installed()}): the test would replace and purge it`;
  if (existsSync("/etc/thoc")) return "/etc/thoc exists and is not the package's: the test would take it over and purge it";
  return undefined;
}

test("the .deb installs, runs on its bundled Node.js, and removes cleanly", { skip: skipReason(), timeout: 900_000 }, async (t) => {
  const work = await mkdtemp(path.join(tmpdir(), "thoc-deb-"));
  const hadDataDir = existsSync("/var/lib/thoc");
  const hadGroup = run("getent", ["group", "thoc"]).status === 0;
  t.after(async () => {
    if (installed().length > 0) await dpkg(["-P", "thoc-node"]);
    // Leave the machine as it was: the postinst made these for a real node.
    if (!hadDataDir) await rm("/var/lib/thoc", { recursive: true, force: true });
    if (!hadGroup) run("groupdel", ["thoc"]);
    await rm(work, { recursive: true, force: true });
  });

  // gzip: xz would triple the test's time for a package nobody downloads.
  const built = run("bash", [path.join(REPO_ROOT, "packaging/build-deb.sh"), "--no-build", "--out", work],
    { timeout: 600_000, env: { ...process.env, THOC_DEB_COMPRESS: "gzip" } });
  assert.equal(built.status, 0, built.stderr);
  const deb = built.stdout.trim().split("\n").pop() ?? "";
  assert.equal(deb, path.join(work, `thoc-node_${VERSION}_amd64.deb`));
  const field = (f: string) => run("dpkg-deb", ["-f", deb, f]).stdout.trim();
  assert.equal(field("Architecture"), "amd64");
  for (const dep of ["libvirt0", "libvirt-daemon-system", "qemu-system-x86", "qemu-utils", "libc6"]) {
    assert.match(field("Depends"), new RegExp(`(^|, )${dep}( |,|$)`), `Depends names ${dep}`);
  }
  assert.match(field("Recommends"), /(^|, )podman(,|$)/, "containers run on podman: recommended, not required");
  assert.equal(run("dpkg-deb", ["-I", deb, "conffiles"]).stdout.trim(), CONFFILE);

  const inst = await dpkg(["-i", deb]);
  assert.equal(inst.status, 0, inst.stdout + inst.stderr);
  assert.equal(installed(), "install ok installed");
  // No cluster key: installed, not enabled, not started, and the postinst says what to do.
  assert.match(inst.stdout, /not started because no cluster key is configured/);
  assert.match(inst.stdout, /systemctl enable --now thoc-node/);
  assert.equal(existsSync(WANTS), false, "a fresh install without a key must not enable the unit");
  const files = run("dpkg", ["-L", "thoc-node"]).stdout.trim().split("\n");
  for (const f of ["/usr/bin/thoc-node", BUNDLED_NODE, `${APP}/dist/cli/main.js`, `${APP}/package.json`, CONFFILE,
    "/lib/systemd/system/thoc-node.service", "/usr/share/doc/thoc-node/operations.md", "/usr/share/man/man1/thoc-node.1.gz"]) {
    assert.ok(files.includes(f), `the package ships ${f}`);
  }
  assert.equal(files.some((f) => f.includes("/dist/test/") || f.endsWith(".test.js")), false, "no tests in the package");
  assert.equal((lstatSync(CONFFILE).mode & 0o777).toString(8), "640");
  if (!hadDataDir) assert.equal((lstatSync("/var/lib/thoc").mode & 0o777).toString(8), "710", "the postinst makes the data dir QEMU-traversable only");

  // The bundled runtime is a supported LTS, and the installed CLI runs on it even with an older node first on PATH.
  const nodeVersion = run(BUNDLED_NODE, ["--version"]).stdout.trim();
  assert.match(nodeVersion, /^v24\./);
  const env = { ...process.env, PATH: `${path.dirname(process.execPath)}:/usr/sbin:/usr/bin:/sbin:/bin` };
  const v = run("/usr/bin/thoc-node", ["--version"], { env });
  assert.equal(v.status, 0, v.stderr);
  assert.equal(v.stdout.trim(), VERSION);

  // The installed unit: ExecStart names the installed CLI, and systemd accepts it as installed.
  const unit = readFileSync("/lib/systemd/system/thoc-node.service", "utf8");
  assert.match(unit, /^ExecStart=\/usr\/bin\/thoc-node agent --config \/etc\/thoc\/node\.yaml$/m);
  const verify = run("systemd-analyze", ["verify", "/lib/systemd/system/thoc-node.service"]);
  if (!verify.error) assert.equal(verify.status, 0, verify.stderr);

  // A --dev agent from the installed files, on its own loopback address (the default ports).
  const ip = `${loopbackBlock()}.1`;
  const dataDir = path.join(work, "data");
  const agent = spawn("/usr/bin/thoc-node", ["agent", "--dev", "--bind", ip, "--data-dir", dataDir], { cwd: work, env, stdio: ["ignore", "pipe", "pipe"] });
  let logs = "";
  agent.stdout.on("data", (d: Buffer) => { logs += d.toString(); });
  agent.stderr.on("data", (d: Buffer) => { logs += d.toString(); });
  const exited = once(agent, "exit");
  try {
    await waitFor("the installed agent's /readyz", async () => agent.exitCode !== null || (await fetch(`http://${ip}:7401/readyz`)).status === 200, 60_000, 250);
    assert.equal(agent.exitCode, null, `the installed agent exited: ${logs.slice(-2000)}`);
    // The wrapper exec'd the bundled node: the agent's process is that binary, not the node on PATH.
    assert.equal(readlinkSync(`/proc/${agent.pid}/exe`), BUNDLED_NODE);
    const status = run("/usr/bin/thoc-node", ["--addr", `${ip}:7400`, "status", "--json"], { env });
    assert.equal(status.status, 0, status.stderr);
    assert.equal((JSON.parse(status.stdout) as { version?: string }).version, VERSION);
  } finally {
    agent.kill("SIGTERM");
  }
  const [code] = await exited as [number | null];
  assert.equal(code, 0, `SIGTERM stops the agent cleanly; logs: ${logs.slice(-2000)}`);

  // dpkg -r: every file of the package goes but the conffile; the data dir stays.
  const rem = await dpkg(["-r", "thoc-node"]);
  assert.equal(rem.status, 0, rem.stdout + rem.stderr);
  assert.equal(installed(), "deinstall ok config-files");
  // Directories shared with other packages stay (statSync: /lib is a link to usr/lib on merged-/usr).
  const left = files.filter((f) => f !== CONFFILE && existsSync(f) && !statSync(f).isDirectory());
  assert.deepEqual(left, [], "files left after dpkg -r");
  for (const d of [APP, "/usr/share/doc/thoc-node"]) assert.equal(existsSync(d), false, `${d} left after dpkg -r`);
  assert.ok(existsSync(CONFFILE), "dpkg -r keeps the conffile");
  assert.ok(existsSync("/var/lib/thoc"), "dpkg -r keeps the data dir");

  // dpkg -P: the conffile and /etc/thoc go too, and the unit's enablement state; the data dir stays.
  const purge = await dpkg(["-P", "thoc-node"]);
  assert.equal(purge.status, 0, purge.stdout + purge.stderr);
  assert.equal(installed(), "");
  assert.equal(existsSync(CONFFILE), false, "dpkg -P removes the conffile");
  assert.equal(existsSync("/etc/thoc"), false, "dpkg -P removes /etc/thoc");
  assert.equal(existsSync("/var/lib/systemd/deb-systemd-helper-enabled/thoc-node.service.dsh-also"), false);
  assert.ok(existsSync("/var/lib/thoc"), "dpkg -P keeps the data dir (VM disks, objects, the CA)");

  // A host that has its cluster key before the package comes: the install enables the unit (systemd
  // would also start it; it is not PID 1 here), says nothing about keys, and the purge disables it
  // again but leaves node.env, the operator's own file with the secrets.
  await mkdir("/etc/thoc", { mode: 0o750 });
  await writeFile("/etc/thoc/node.env", `THOC_CLUSTER_KEYS=${randomBytes(32).toString("base64")}\n`, { mode: 0o600 });
  t.after(() => rm("/etc/thoc", { recursive: true, force: true }));
  const keyed = await dpkg(["-i", deb]);
  assert.equal(keyed.status, 0, keyed.stdout + keyed.stderr);
  assert.doesNotMatch(keyed.stdout, /no cluster key/);
  assert.equal(readlinkSync(WANTS), "/lib/systemd/system/thoc-node.service", "a configured node's unit is enabled on install");
  const purged = await dpkg(["-P", "thoc-node"]);
  assert.equal(purged.status, 0, purged.stdout + purged.stderr);
  assert.equal(existsSync(WANTS), false, "dpkg -P removes the unit's enablement");
  assert.ok(existsSync("/etc/thoc/node.env"), "dpkg -P leaves the operator's node.env");
});
