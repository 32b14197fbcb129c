/**
 * The agent's gRPC API on a unix socket, for the CLI on the node itself: the
 * kernel tells who connected (SO_PEERCRED: uid, gid, pid at connect time), so
 * a local admin needs no certificate. The socket file's mode and group are the
 * first gate; the identity, checked per call by the server's authorize hook,
 * is the second.
 *
 * grpc-js cannot listen on a unix socket and report the peer's credentials,
 * so the connection is accepted here (net.Server), identified, and handed to
 * grpc-js with a connection injector. grpc-js gives a handler no way to its
 * socket except the peer string it builds from socket.remoteAddress, which a
 * unix socket leaves empty: the accepted socket gets a remoteAddress of its
 * own ("local:uid=…#n"), a string no TCP peer (an IP address) can produce,
 * and callerOf() looks the identity up by it.
 */
import { chmodSync, chownSync, lstatSync, mkdirSync, readFileSync, unlinkSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { ThocError } from "../errors/index.js";
import type { Caller } from "./identity.js";

type LocalCaller = Extract<Caller, { kind: "local" }>;

/** Peer string -> identity of every open local connection. */
const connections = new Map<string, LocalCaller>();
let counter = 0;

/** The identity of a call that arrived over a local socket (by its peer string), if it did. */
export function localCaller(peer: string): LocalCaller | undefined {
  return peer.startsWith("local:") ? connections.get(peer) : undefined;
}

type PeerCred = (fd: number) => { pid: number; uid: number; gid: number };
let peerCredFn: PeerCred | undefined;

/** getsockopt(fd, SOL_SOCKET, SO_PEERCRED) through libc (koffi, loaded only by the agent). */
async function loadPeerCred(): Promise<PeerCred> {
  if (peerCredFn) return peerCredFn;
  const { default: koffi } = await import("koffi");
  const libc = koffi.load("libc.so.6");
  const getsockopt = libc.func("int getsockopt(int fd, int level, int name, void *val, void *len)");
  const SOL_SOCKET = 1, SO_PEERCRED = 17;
  peerCredFn = (fd) => {
    const val = Buffer.alloc(12), len = Buffer.alloc(4);
    len.writeUInt32LE(12);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, val, len) !== 0) throw new ThocError("internal", "getsockopt(SO_PEERCRED) failed");
    // struct ucred { pid_t pid; uid_t uid; gid_t gid; } in host order (little-endian on x86-64 and arm64).
    return { pid: val.readInt32LE(0), uid: val.readUInt32LE(4), gid: val.readUInt32LE(8) };
  };
  return peerCredFn;
}

/**
 * Supplementary groups of a process, read right after it connected: SO_PEERCRED
 * has only the primary gid, and membership of the admin group is usually
 * supplementary. A process that is already gone counts with its primary gid only.
 */
export function processGroups(pid: number): number[] {
  try {
    const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("Groups:"));
    return (line?.slice(7).trim().split(/\s+/) ?? []).filter(Boolean).map(Number).filter(Number.isInteger);
  } catch {
    return [];
  }
}

/** The gid of a group in /etc/group, or undefined when there is no such group. */
export function groupId(name: string): number | undefined {
  try {
    for (const l of readFileSync("/etc/group", "utf8").split("\n")) {
      const [n, , gid] = l.split(":");
      if (n === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
    }
  } catch { /* no /etc/group: no such group */ }
  return undefined;
}

export interface LocalListenOptions {
  /** The socket is 0660 and owned by this group when set, else 0600. */
  gid?: number;
  /** Receives every accepted connection (after it is identified). */
  inject(socket: net.Socket): void;
}

/** Listens on a unix socket path, identifies every connection and injects it. Returns the server (close it to stop). */
export async function listenLocal(socketPath: string, opts: LocalListenOptions): Promise<net.Server> {
  const peerCred = await loadPeerCred();
  const fail = (why: string) => new ThocError("failed_precondition", `local socket ${socketPath}: ${why} (set localSocket to another path, or "" to turn it off)`, { key: "localSocket" });
  try {
    mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o755 });
  } catch (err) {
    throw fail(`cannot create its directory: ${(err as Error).message}`);
  }
  try {
    const st = lstatSync(socketPath);
    // A socket file left by an agent that did not stop cleanly (the data-dir lock keeps a live one from being here).
    if (!st.isSocket()) throw fail("exists and is not a socket");
    unlinkSync(socketPath);
  } catch (err) {
    if (err instanceof ThocError) throw err;
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw fail((err as Error).message);
  }
  const server = net.createServer((sock) => {
    let cred: { pid: number; uid: number; gid: number };
    try {
      cred = peerCred((sock as unknown as { _handle: { fd: number } })._handle.fd);
    } catch {
      sock.destroy();
      return;
    }
    const peer = `local:uid=${cred.uid},gid=${cred.gid},pid=${cred.pid}#${++counter}`;
    connections.set(peer, { kind: "local", ...cred, groups: processGroups(cred.pid) });
    Object.defineProperty(sock, "remoteAddress", { value: peer });
    sock.once("close", () => connections.delete(peer));
    opts.inject(sock);
  });
  // The socket file exists from bind() on; a restrictive umask keeps it closed to others until chmod below.
  // (listen() binds synchronously, so the umask is back before anything else runs.)
  const listening = new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.once("listening", () => { server.off("error", reject); resolve(); });
  });
  const old = process.umask(0o177);
  try { server.listen(socketPath); } finally { process.umask(old); }
  await listening.catch((err: Error) => { throw fail(err.message); });
  if (opts.gid !== undefined) {
    chownSync(socketPath, process.getuid?.() ?? 0, opts.gid);
    chmodSync(socketPath, 0o660);
  } else {
    chmodSync(socketPath, 0o600);
  }
  return server;
}
