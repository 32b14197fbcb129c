/**
 * The NoCloud seed: an ISO 9660 volume labelled `cidata` holding user-data,
 * meta-data and network-config (genisoimage). The password reaches the ISO,
 * the store and the logs only as a SHA-512 crypt hash.
 */
import { execFile, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { stringify } from "yaml";
import { ThocError } from "../errors/index.js";
import { networkConfig } from "./network.js";
import type { CloudInitSpec, NetworkSpec } from "./spec.js";

const run = promisify(execFile);

/** SHA-512 crypt ($6$) through `openssl passwd -6`; the clear text goes in on stdin, never argv. */
export function hashPassword(clear: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn("openssl", ["passwd", "-6", "-stdin"], { stdio: ["pipe", "pipe", "pipe"] });
    let out = "", err = "";
    p.stdout.on("data", (b: Buffer) => (out += b));
    p.stderr.on("data", (b: Buffer) => (err += b));
    p.on("error", (e) => reject(new ThocError("failed_precondition", `cannot hash the password: openssl: ${e.message} (apt-get install openssl)`)));
    // close, not exit: the hash is read from the pipe, which may still hold it when the process has exited.
    p.on("close", (code) => {
      const h = out.trim();
      if (code === 0 && h.startsWith("$6$")) resolve(h);
      else reject(new ThocError("internal", `openssl passwd failed: ${err.trim()}`));
    });
    p.stdin.end(clear + "\n");
  });
}

export interface SeedInput {
  instanceId: string;
  hostname: string;
  cloudInit?: CloudInitSpec;
  /** Already hashed ($6$...). */
  passwordHash?: string;
  network?: NetworkSpec;
  mac?: string;
}

export function userData(s: SeedInput): string {
  const c = s.cloudInit;
  const user: Record<string, unknown> = {
    name: c?.username || "thoc",
    groups: ["sudo"],
    shell: "/bin/bash",
    sudo: "ALL=(ALL) NOPASSWD:ALL",
    lock_passwd: !s.passwordHash,
  };
  if (s.passwordHash) user.passwd = s.passwordHash;
  if (c?.sshPublicKey) user.ssh_authorized_keys = [c.sshPublicKey];
  const doc: Record<string, unknown> = {
    hostname: s.hostname,
    fqdn: s.hostname,
    manage_etc_hosts: true,
    users: [user],
    ssh_pwauth: Boolean(s.passwordHash),
  };
  return `#cloud-config\n${stringify(doc)}`;
}

export function metaData(s: SeedInput): string {
  return stringify({ "instance-id": s.instanceId, "local-hostname": s.hostname });
}

/** Writes the seed ISO at isoPath. */
export async function buildSeedIso(isoPath: string, s: SeedInput): Promise<void> {
  const dir = await mkdtemp(path.join(path.dirname(isoPath), ".seed-"));
  try {
    const files = ["user-data", "meta-data"];
    await writeFile(path.join(dir, "user-data"), userData(s), { mode: 0o600 });
    await writeFile(path.join(dir, "meta-data"), metaData(s));
    if (s.network && s.network.mode === "bridge-vlan" && s.mac) {
      await writeFile(path.join(dir, "network-config"), networkConfig(s.network, s.mac));
      files.push("network-config");
    }
    try {
      await run("genisoimage", ["-quiet", "-output", isoPath, "-volid", "cidata", "-joliet", "-rock", ...files], { cwd: dir, timeout: 30_000 });
    } catch (err) {
      const e = err as { code?: string; stderr?: string; message: string };
      if (e.code === "ENOENT") throw new ThocError("failed_precondition", "genisoimage is not installed: apt-get install genisoimage (needed for the cloud-init seed ISO)");
      throw new ThocError("internal", `genisoimage failed: ${e.stderr?.trim() || e.message}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
