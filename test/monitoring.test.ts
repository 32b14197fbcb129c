/**
 * The dashboard and the alerts read metrics the agent really exports: a production-mode agent (cluster
 * PKI, so the certificate metrics exist; libvirt's test driver) gets some of everything a panel plots
 * (gRPC calls, S3 requests and an S3 error, an image and a VM placed by the scheduler leader), and then
 * every metric name a dashboard query or an alert expression uses must be declared on its /metrics, and
 * every label a query matches on or groups by must be on its samples, with the values it matches. A
 * metric or label renamed in the agent fails here.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import path from "node:path";
import * as s3 from "@aws-sdk/client-s3";
import { AgentProcess, loopbackBlock, waitFor } from "./harness.js";
import { S3_ENV, s3client } from "./objectstore-util.js";
import { alertRules, dashboard, dashboardExprs, groupings, readExposition, selectors, type Exposition } from "./monitoring.js";

/** Series Prometheus makes itself, not the agent. */
const FROM_PROMETHEUS = new Set(["up"]);
/** Labels Prometheus adds at scrape time. */
const TARGET_LABELS = new Set(["instance", "job"]);
/**
 * Metrics one quiet agent declares but has no samples of (gossip needs a peer or a stranger), so their
 * labels cannot be checked here. Any other metric a query reads must have samples.
 */
const NO_SAMPLES_ALONE = new Set(["thoc_gossip_dropped_total", "thoc_gossip_streams_refused_total", "thoc_gossip_bytes_total"]);

let root: string;
let a: AgentProcess;
let scrape: Exposition;
let text: string;

before(async () => {
  root = await mkdtemp(path.join(tmpdir(), "thoc-monitoring-"));
  a = new AgentProcess("mon1", `${loopbackBlock()}.2`, path.join(root, "mon1"), { dev: false, env: S3_ENV });
  await a.start();
  // The scheduler places the VM below: wait for this lone node to hold the lease.
  await waitFor("the scheduler lease", async () => /^thoc_scheduler_is_leader 1$/m.test(await (await fetch(`${a.httpUrl}/metrics`)).text()));

  const st = await a.cli(["status"]);
  assert.equal(st.code, 0, st.stderr);
  const c = s3client(a);
  await c.send(new s3.CreateBucketCommand({ Bucket: "mon" }));
  await c.send(new s3.PutObjectCommand({ Bucket: "mon", Key: "k", Body: "hello" }));
  await (await c.send(new s3.GetObjectCommand({ Bucket: "mon", Key: "k" }))).Body!.transformToString();
  await assert.rejects(c.send(new s3.GetObjectCommand({ Bucket: "mon", Key: "missing" })), { name: "NoSuchKey" });
  c.destroy();

  const qcow = path.join(root, "base.qcow2");
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", qcow, "1G"]);
  let r = await a.cli(["image", "import", "base", qcow]);
  assert.equal(r.code, 0, r.stderr);
  r = await a.cli(["vm", "create", "mon-vm", "--image", "base", "--vcpus", "1", "--ram", "256", "--disk", "2"]);
  assert.equal(r.code, 0, r.stderr);

  text = await (await fetch(`${a.httpUrl}/metrics`)).text();
  scrape = readExposition(text);
});
after(async () => {
  await a?.kill("SIGKILL");
  if (root) await rm(root, { recursive: true, force: true });
});

/** Every query of the dashboard and every alert expression, named for the failure message. */
function queries(): { where: string; expr: string }[] {
  return [
    ...dashboardExprs(dashboard()).map((q) => ({ where: `dashboard panel "${q.panel}"`, expr: q.expr })),
    ...alertRules().map((r) => ({ where: `alert ${r.alert}`, expr: r.expr })),
  ];
}

test("every metric the dashboard and the alerts use is on the agent's /metrics", () => {
  const missing: string[] = [];
  for (const q of queries()) {
    const sel = selectors(q.expr);
    assert.ok(sel.length > 0, `${q.where}: no metric found in ${q.expr}`);
    for (const s of sel) if (!FROM_PROMETHEUS.has(s.metric) && !scrape.names.has(s.metric)) missing.push(`${q.where}: ${s.metric}`);
  }
  assert.deepEqual(missing, [], "metrics the agent does not export");
});

test("every label they match on or group by is on the samples, with the values they match", () => {
  const problems: string[] = [];
  const unchecked = new Set<string>();
  const labelsOf = (metric: string) => scrape.samples.get(metric);
  for (const q of queries()) {
    for (const s of selectors(q.expr)) {
      if (FROM_PROMETHEUS.has(s.metric)) continue;
      const samples = labelsOf(s.metric);
      if (!samples) { unchecked.add(s.metric); continue; }
      for (const m of s.matchers) {
        if (TARGET_LABELS.has(m.label)) continue;
        const values = new Set(samples.map((l) => l[m.label]).filter((v) => v !== undefined));
        if (values.size === 0) { problems.push(`${q.where}: ${s.metric} has no label ${m.label}`); continue; }
        // An equality, or a regexp that is a plain alternation (crashed|missing|error): each value must occur.
        const plain = m.op === "=" ? [m.value] : m.op === "=~" && /^[\w-]+(\|[\w-]+)*$/.test(m.value) ? m.value.split("|") : [];
        for (const v of plain) if (!values.has(v)) problems.push(`${q.where}: ${s.metric}{${m.label}="${v}"} never occurs (values: ${[...values].join(", ")})`);
      }
    }
    for (const g of groupings(q.expr)) {
      for (const metric of g.metrics) {
        const samples = labelsOf(metric);
        if (!samples) { if (!FROM_PROMETHEUS.has(metric)) unchecked.add(metric); continue; }
        for (const l of g.labels) {
          if (!TARGET_LABELS.has(l) && !samples.some((x) => l in x)) problems.push(`${q.where}: groups ${metric} by ${l}, which it does not have`);
        }
      }
    }
  }
  assert.deepEqual(problems, []);
  assert.deepEqual([...unchecked].filter((m) => !NO_SAMPLES_ALONE.has(m)), [], "metrics with no samples after the test's activity: give them some, or list them in NO_SAMPLES_ALONE");
});

test("the metrics added for the dashboard and alerts read true: data dir filesystem, VMs by status, allocation and budget", () => {
  const value = (re: RegExp) => {
    const m = re.exec(text);
    assert.ok(m, `no ${re} in\n${text.split("\n").filter((l) => /^thoc_(data_dir|vms)/.test(l)).join("\n")}`);
    return Number(m[1]);
  };
  const size = value(/^thoc_data_dir_filesystem_size_bytes (\S+)$/m);
  const avail = value(/^thoc_data_dir_filesystem_avail_bytes (\S+)$/m);
  assert.ok(size > 0 && avail > 0 && avail <= size, `size ${size}, avail ${avail}`);
  assert.equal(value(/^thoc_vms_by_status\{status="running"\} (\S+)$/m), 1);
  assert.equal(value(/^thoc_vms_by_status\{status="crashed"\} (\S+)$/m), 0);
  assert.equal(value(/^thoc_vms_allocated_vcpus (\S+)$/m), 1);
  assert.equal(value(/^thoc_vms_allocated_memory_bytes (\S+)$/m), 256 * 1024 * 1024);
  // limits.loadFactor is 1 by default: the budget is the host.
  assert.ok(value(/^thoc_vms_vcpu_budget (\S+)$/m) >= 1 && value(/^thoc_vms_vcpu_budget (\S+)$/m) <= cpus().length);
  assert.ok(value(/^thoc_vms_memory_budget_bytes (\S+)$/m) > 256 * 1024 * 1024);
  assert.match(text, /^thoc_cert_expiry_seconds\{cert="node"\} \d/m);
  // And they keep promtool's naming rules (no gauge named like a counter, units in the name).
  const lint = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
  assert.equal(lint.error, undefined, "promtool (Debian prometheus) is installed");
  assert.deepEqual((lint.stdout + lint.stderr).split("\n").filter((l) => /thoc_(vms|data_dir)/.test(l)), []);
});
