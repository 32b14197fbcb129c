/**
 * How the CLI reaches an agent, and as whom.
 *
 * Where: --addr HOST:PORT, else THOC_ADDR, else `addr` in the profile; with
 * none of them, the local agent's unix socket (--socket, THOC_SOCKET, the
 * profile's `socket`, else /run/thoc/thoc.sock) when it exists, where root and
 * group thoc are admin with no certificate; else 127.0.0.1:7400 (a --dev agent).
 *
 * As whom, over TCP: --tls-cert/--tls-key (THOC_TLS_CERT/THOC_TLS_KEY, the
 * profile's tlsCert/tlsKey), an operator certificate from `thoc-node cert
 * issue`; the agent is verified against --tls-ca (THOC_TLS_CA, tlsCa). No CA
 * and no certificate means plaintext, which only a --dev or loopback agent
 * serves. An empty TLS setting means none (THOC_TLS_CA= forces plaintext); an
 * empty address or socket leaves the choice to the next source.
 *
 * The profile, ~/.config/thoc/profile.json ($THOC_PROFILE to name another), is
 * JSON, not YAML: a YAML parser would cost every command its start-up time.
 *
 * The generated services and the gRPC client are loaded by connect(), when a
 * command runs, not when its module is: `--help` and `keygen` never pay for them.
 */
import { readFileSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import type { Command } from "commander";
import { ThocError } from "../errors/index.js";
import type { Client } from "../rpc/index.js";

type Proto = typeof import("../proto/index.js");

export interface GlobalOpts { addr?: string; socket?: string; tlsCa?: string; tlsCert?: string; tlsKey?: string; timeout?: string }

export interface Profile { addr?: string; socket?: string; tlsCa?: string; tlsCert?: string; tlsKey?: string }

export const DEFAULT_SOCKET = "/run/thoc/thoc.sock";
const PROFILE_KEYS = ["addr", "socket", "tlsCa", "tlsCert", "tlsKey"] as const;

export function globalOpts(cmd: Command): GlobalOpts {
  return cmd.optsWithGlobals() as GlobalOpts;
}

export function profilePath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.THOC_PROFILE) return env.THOC_PROFILE;
  const base = env.XDG_CONFIG_HOME || path.join(os.homedir(), ".config");
  return path.join(base, "thoc", "profile.json");
}

/** The profile file's settings ({} when there is none); a broken one is an error naming the file. */
export function readProfile(file = profilePath()): Profile {
  let text: string;
  try { text = readFileSync(file, "utf8"); } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" && !process.env.THOC_PROFILE) return {};
    throw new ThocError("invalid_argument", `profile ${file}: ${(err as Error).message}`);
  }
  let v: unknown;
  try { v = JSON.parse(text); } catch (err) {
    throw new ThocError("invalid_argument", `profile ${file}: not JSON (${(err as Error).message}); expected {"addr": "HOST:PORT", "tlsCa": FILE, "tlsCert": FILE, "tlsKey": FILE}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ThocError("invalid_argument", `profile ${file}: expected a JSON object`);
  const out: Profile = {};
  for (const [k, x] of Object.entries(v)) {
    if (!(PROFILE_KEYS as readonly string[]).includes(k)) throw new ThocError("invalid_argument", `profile ${file}: unknown key "${k}" (known: ${PROFILE_KEYS.join(", ")})`);
    if (typeof x !== "string") throw new ThocError("invalid_argument", `profile ${file}: "${k}" must be a string`);
    // Relative file names are relative to the profile, so a profile and its certificates move together.
    out[k as keyof Profile] = k.startsWith("tls") && x && !path.isAbsolute(x) ? path.resolve(path.dirname(file), x) : x;
  }
  return out;
}

export interface Target {
  /** What grpc-js dials: HOST:PORT or unix:PATH. */
  address: string;
  /** For messages. */
  shown: string;
  local: boolean;
  /** The default socket, chosen only because the file exists (no flag, env or profile named it). */
  implicit?: boolean;
  tls?: { ca?: string; cert?: string; key?: string };
}

const isSocket = (p: string) => { try { return statSync(p).isSocket(); } catch { return false; } };

/** Flag > environment > profile > default, for every connection setting. */
export function resolveTarget(o: GlobalOpts, env: NodeJS.ProcessEnv = process.env, profile: Profile = readProfile()): Target {
  const pick = (flag: string | undefined, envName: string, prof: string | undefined) => flag ?? env[envName] ?? prof;
  // An empty address or socket is unset (the next source decides); an empty TLS file is "none".
  const where = (flag: string | undefined, envName: string, prof: string | undefined) => flag || env[envName] || prof || undefined;
  const addr = where(o.addr, "THOC_ADDR", profile.addr);
  if (!addr) {
    const explicit = where(o.socket, "THOC_SOCKET", profile.socket);
    const sock = explicit || DEFAULT_SOCKET;
    if (explicit || isSocket(sock)) return { address: `unix:${sock}`, shown: sock, local: true, ...(explicit ? {} : { implicit: true }) };
  }
  const address = addr ?? "127.0.0.1:7400";
  const ca = pick(o.tlsCa, "THOC_TLS_CA", profile.tlsCa) || undefined;
  const cert = pick(o.tlsCert, "THOC_TLS_CERT", profile.tlsCert) || undefined;
  const key = pick(o.tlsKey, "THOC_TLS_KEY", profile.tlsKey) || undefined;
  if (Boolean(cert) !== Boolean(key)) throw new ThocError("invalid_argument", `--tls-cert and --tls-key go together (got only ${cert ? "--tls-cert" : "--tls-key"}; or THOC_TLS_CERT/THOC_TLS_KEY, or tlsCert/tlsKey in ${profilePath(env)})`);
  return { address, shown: address, local: false, tls: ca || cert ? { ca, cert, key } : undefined };
}

/** Where the CLI connects, for messages (never throws). */
export function agentAddress(o: GlobalOpts): string {
  try { return resolveTarget(o).shown; } catch { return o.addr ?? process.env.THOC_ADDR ?? "127.0.0.1:7400"; }
}

const readPem = (f: string, flag: string) => {
  try { return readFileSync(f); } catch (err) {
    throw new ThocError("invalid_argument", `${flag}: cannot read ${f}: ${(err as Error).message}`);
  }
};

/** Whether something accepts connections on the unix socket (a stale file refuses them). */
export async function socketAnswers(file: string): Promise<boolean> {
  const net = await import("node:net");
  return new Promise((resolve) => {
    const c = net.connect(file);
    const done = (ok: boolean) => { c.destroy(); resolve(ok); };
    c.once("connect", () => done(true));
    c.once("error", (err: NodeJS.ErrnoException) => done(err.code !== "ECONNREFUSED" && err.code !== "ENOENT"));
    c.setTimeout(1000, () => done(true));
  });
}

/** A client of the service `pick` names, e.g. connect((p) => p.NodeService, g). */
export async function connect<T extends GenServiceMethods>(pick: (proto: Proto) => GenService<T>, o: GlobalOpts): Promise<Client<T>> {
  const [proto, { createClient, credentials }] = await Promise.all([import("../proto/index.js"), import("../rpc/index.js")]);
  const timeout = Number(o.timeout ?? 10_000);
  let t: Target;
  try { t = resolveTarget(o); } catch (err) {
    process.stderr.write(`thoc-node: ${(err as Error).message}\n`);
    process.exit(2);
  }
  // A socket file left behind by an agent that is gone (killed, or a --dev agent now on TCP) must not hide the TCP default.
  if (t.implicit && !(await socketAnswers(t.shown))) t = { address: "127.0.0.1:7400", shown: "127.0.0.1:7400", local: false };
  const tls = t.tls;
  const creds = tls
    ? credentials.createSsl(tls.ca ? readPem(tls.ca, "--tls-ca") : null, tls.key ? readPem(tls.key, "--tls-key") : null, tls.cert ? readPem(tls.cert, "--tls-cert") : null)
    : credentials.createInsecure();
  return createClient(pick(proto), t.address, { credentials: creds, defaultTimeoutMs: timeout });
}
