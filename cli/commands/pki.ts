/**
 * The cluster PKI from the command line (docs/security.md, "Cluster PKI"):
 *  - `cluster init`: offline, on the first node before its agent starts: the
 *    cluster CA, the node's certificate when the store can be read, and a
 *    first admin certificate (pki/admin.crt, like kubeadm's admin.conf);
 *  - `cluster token create`: a one-time join token from a CA holder;
 *  - `cert issue NAME --role R`: an operator certificate; the key is made here
 *    and never sent.
 * The X.509 code (cluster/) is loaded inside the actions, never at start-up.
 */
import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { ThocError } from "../../errors/index.js";
import { agentAddress, connect, globalOpts } from "../connect.js";
import { fail, printJson } from "../output.js";

const UNIT: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** 90s, 30m, 1h, 30d. */
export function parseTtl(s: string, flag = "--ttl"): number {
  const m = /^\s*(\d+)\s*([smhd])\s*$/.exec(s);
  if (!m || Number(m[1]) === 0) throw new ThocError("invalid_argument", `${flag}: expected a duration like 30m, 1h or 30d, got ${JSON.stringify(s)}`);
  return Number(m[1]) * UNIT[m[2]!]!;
}

const ADMIN_TTL_MS = 30 * 86_400_000;

export function registerPki(program: Command): void {
  const cluster = program.command("cluster").description("the cluster's PKI: create it, and tokens for new nodes");

  cluster.command("init").description("create the cluster CA in this node's data dir (offline: before its agent first starts)")
    .option("--data-dir <dir>", "the node's data directory (default: from --config, else /var/lib/thoc)")
    .option("--config <file>", "the node's YAML config (data dir, cluster name, addresses)")
    .option("--json", "print one JSON document")
    .action(async (o: { dataDir?: string; config?: string; json?: boolean }) => {
      // It may create the data dir and the store (for the node id): the agent's modes, 0700/0600, not the shell's umask.
      process.umask(0o077);
      try {
        await clusterInit(o);
      } catch (err) { fail(err); }
    });

  const token = cluster.command("token").description("join tokens: one-time credentials for a new node");
  token.command("create").description("make a one-time join token (run against the node where `cluster init` ran)")
    .option("--ttl <duration>", "how long it may be used (e.g. 30m, 1h, 2d)", "1h")
    .option("--json", "print one JSON document")
    .action(async (o: { ttl: string; json?: boolean }, cmd: Command) => {
      const g = globalOpts(cmd);
      let ttl: number;
      try { ttl = parseTtl(o.ttl); } catch (err) { fail(err); }
      const client = await connect((p) => p.PkiService, g);
      try {
        const r = await client.createJoinToken({ ttlMs: BigInt(ttl) });
        const expiresAt = new Date(Number(r.expiresAtMs)).toISOString();
        if (o.json) return printJson({ token: r.token, id: r.id, expiresAt });
        const host = agentAddress(g).replace(/:\d+$/, "");
        process.stdout.write(`${r.token}\n\nOne-time join token ${r.id}, valid until ${expiresAt}. On the new node (with the cluster key in its config):\n` +
          `  thoc-node agent --config /etc/thoc/node.yaml --join ${host} --token <the token above>\n`);
      } catch (err) { fail(err, agentAddress(g)); } finally { client.close(); }
    });

  const cert = program.command("cert").description("operator certificates from the cluster CA");
  cert.command("issue <name>").description("issue an operator certificate: writes NAME.crt, NAME.key (0600) and ca.crt (admin only)")
    .requiredOption("--role <role>", "viewer, operator or admin")
    .option("--ttl <duration>", "lifetime (e.g. 12h, 30d)", "30d")
    .option("--out <dir>", "where to write the files", ".")
    .option("--json", "print one JSON document")
    .action(async (name: string, o: { role: string; ttl: string; out: string; json?: boolean }, cmd: Command) => {
      const g = globalOpts(cmd);
      let ttl: number;
      try {
        ttl = parseTtl(o.ttl);
        if (!["viewer", "operator", "admin"].includes(o.role)) throw new ThocError("invalid_argument", `--role must be viewer, operator or admin, not ${JSON.stringify(o.role)}`);
      } catch (err) { fail(err); }
      const files = { cert: path.join(o.out, `${name}.crt`), key: path.join(o.out, `${name}.key`), ca: path.join(o.out, "ca.crt") };
      if (existsSync(files.key)) fail(new ThocError("already_exists", `${files.key} exists: remove it or choose another --out`));
      const [{ makeCsr }, client] = await Promise.all([import("../../cluster/index.js"), connect((p) => p.PkiService, g)]);
      try {
        const { keyPem, csrPem } = await makeCsr(name, o.role);
        const r = await client.issueCertificate({ name, role: o.role, csr: csrPem, ttlMs: BigInt(ttl) });
        mkdirSync(o.out, { recursive: true });
        writeSecret(files.key, keyPem);
        writeSecret(files.cert, r.certificate);
        writeFileSync(files.ca, r.caCertificate, { mode: 0o644 });
        const expiresAt = new Date(Number(r.expiresAtMs)).toISOString();
        if (o.json) return printJson({ name, role: o.role, serial: r.serial, expiresAt, ...files });
        process.stdout.write(`Issued ${o.role} certificate for ${name} (serial ${r.serial}), valid until ${expiresAt}:\n` +
          `  ${files.cert}\n  ${files.key}\n  ${files.ca}\n` +
          `Use: thoc-node --tls-cert ${files.cert} --tls-key ${files.key} --tls-ca ${files.ca} --addr HOST:7400 status\n`);
      } catch (err) { fail(err, agentAddress(g)); } finally { client.close(); }
    });

  cert.command("revoke <serial>").description("refuse a certificate on every member from now on, by its serial (admin only)")
    .option("--reason <text>", "why, for the record", "")
    .option("--json", "print one JSON document")
    .action(async (serial: string, o: { reason: string; json?: boolean }, cmd: Command) => {
      const g = globalOpts(cmd);
      const client = await connect((p) => p.PkiService, g);
      try {
        const r = await client.revokeCertificate({ serial, reason: o.reason });
        const at = new Date(Number(r.revokedAtMs)).toISOString();
        if (o.json) return printJson({ serial: r.serial, revokedAt: at });
        process.stdout.write(`Revoked certificate ${r.serial} at ${at}; every member refuses it once the table reaches it (seconds).\n`);
      } catch (err) { fail(err, agentAddress(g)); } finally { client.close(); }
    });
}

function writeSecret(file: string, data: string): void {
  writeFileSync(file, data, { mode: 0o600 });
  chmodSync(file, 0o600);
}

async function clusterInit(o: { dataDir?: string; config?: string; json?: boolean }): Promise<void> {
  const [{ loadConfig }, pki] = await Promise.all([import("../../config/index.js"), import("../../cluster/index.js")]);
  let dataDir = o.dataDir, clusterName = "thoc";
  const addresses: string[] = [];
  if (o.config) {
    const c = loadConfig({ file: o.config, flags: o.dataDir ? { "--data-dir": o.dataDir } : {} });
    dataDir = c.dataDir;
    clusterName = c.cluster.name;
    addresses.push(c.advertise, c.bind, c.name);
  }
  dataDir = path.resolve(dataDir ?? "/var/lib/thoc");
  const p = pki.pkiPaths(dataDir);
  const ca = await pki.initCa(p, clusterName);

  // The node certificate, when the store is free to read its node id; else the agent issues it at start.
  let nodeId = "";
  try {
    const { LocalStore } = await import("../../store/index.js");
    const store = await LocalStore.open(dataDir);
    nodeId = store.nodeId;
    await store.close();
  } catch { /* locked by a running agent: it issues its own certificate at its next start */ }
  if (nodeId) {
    const { keyPem, csrPem } = await pki.makeCsr(nodeId, "node");
    const cert = await pki.issueNodeCertificate(ca, { csrPem, nodeId, addresses: addresses.filter((a) => a && a !== "0.0.0.0" && a !== "::"), ttlMs: 90 * 86_400_000 });
    pki.writeFileAtomic(p.nodeKey, keyPem, 0o600);
    pki.writeFileAtomic(p.nodeCert, cert, 0o644);
  }
  // The first admin credential, so `cluster token create` and `cert issue` work before anything else exists.
  const admin = await pki.makeCsr("admin", "admin");
  const adminCert = await pki.issueOperatorCertificate(ca, { csrPem: admin.csrPem, name: "admin", role: "admin", ttlMs: ADMIN_TTL_MS });
  pki.writeFileAtomic(p.adminKey, admin.keyPem, 0o600);
  pki.writeFileAtomic(p.adminCert, adminCert.toString("pem"), 0o600);

  const out = { dataDir, caFingerprint: ca.fingerprint, caCert: p.caCert, nodeId: nodeId || undefined, nodeCert: nodeId ? p.nodeCert : undefined, adminCert: p.adminCert, adminKey: p.adminKey };
  if (o.json) return printJson(out);
  process.stdout.write([
    `Cluster CA created in ${p.dir}`,
    `  CA sha256 fingerprint: ${ca.fingerprint}`,
    nodeId ? `  node certificate for ${nodeId}: ${p.nodeCert}` : "  node certificate: issued by the agent at its next start (the store was in use)",
    `  admin certificate (30 days): ${p.adminCert}, ${p.adminKey}`,
    "",
    "Next:",
    "  1. start the agent (systemctl start thoc-node); it serves TLS on every address from now on",
    `  2. export THOC_TLS_CA=${p.caCert} THOC_TLS_CERT=${p.adminCert} THOC_TLS_KEY=${p.adminKey}`,
    "  3. thoc-node --addr THIS_HOST:7400 cluster token create --ttl 1h      (one token per new node)",
    "  4. on each new node: thoc-node agent --config /etc/thoc/node.yaml --join THIS_HOST --token TOKEN",
    "  5. thoc-node cert issue NAME --role viewer|operator|admin             (operators' own certificates)",
    "",
  ].join("\n"));
}
