/**
 * systemd's notification protocol (sd_notify(3)) on the wire: newline-separated
 * VAR=value assignments, one datagram each, sent to the AF_UNIX socket that
 * NOTIFY_SOCKET names ("/run/systemd/notify", or "@name" for an abstract
 * socket: a NUL first byte instead of the '@'). systemd documents the protocol
 * as stable, so it is spoken here directly.
 *
 * Node has no unix datagram sockets, so the socket is libc's, through koffi
 * (already loaded by the agent for libvirt). libc rather than libsystemd's
 * sd_notify(): libc is on every host, libsystemd.so.0 need not be (containers,
 * minimal images), and sending ourselves lets every send be MSG_DONTWAIT, so
 * a service manager that stops reading can never block the event loop. Not
 * spawning `systemd-notify` per message: systemd attributes a datagram to the
 * sender's cgroup/PID after the fact, and a helper that has already exited is
 * not our main PID (NotifyAccess=main drops it).
 */
import koffi from "koffi";
import { ThocError } from "../errors/index.js";

/** One sender of notification datagrams. */
export interface Notifier {
  /** Sends one datagram now; false when it could not be (the receiver's queue is full, or nobody listens). */
  send(message: string): boolean;
  close(): void;
}

/** Records what it is sent: the in-memory Notifier for tests of what the agent tells systemd. */
export class MemoryNotifier implements Notifier {
  readonly sent: string[] = [];
  /** While true, send() refuses like a full socket queue (EAGAIN). */
  full = false;
  closed = false;

  send(message: string): boolean {
    if (this.full || this.closed) return false;
    this.sent.push(message);
    return true;
  }

  close(): void { this.closed = true; }
}

/**
 * systemd reads at most this much of one datagram (NOTIFY_BUFFER_MAX, PIPE_BUF):
 * longer ones are cut, so a long STATUS is shortened here instead, readably.
 */
export const NOTIFY_MAX_BYTES = 4096;
const VALUE_MAX_CHARS = 1000;

/**
 * One datagram's text from assignments, in the order given. A value is one
 * line (a newline would start a new assignment: an error message in a STATUS
 * must not be able to say READY=1), and long values are shortened.
 */
export function encodeNotify(fields: Readonly<Record<string, string | number>>): string {
  const lines: string[] = [];
  for (const [k, v] of Object.entries(fields)) {
    if (!/^[A-Z][A-Z0-9_]*$/.test(k)) throw new ThocError("internal", `sd_notify: bad variable name ${JSON.stringify(k)}`);
    let s = String(v).replace(/[\r\n]+/g, " ");
    if (s.length > VALUE_MAX_CHARS) s = s.slice(0, VALUE_MAX_CHARS - 1) + "…";
    lines.push(`${k}=${s}`);
  }
  return lines.join("\n");
}

/** Parses one datagram back into its assignments (tests; the service manager's side of the protocol). */
export function decodeNotify(message: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of message.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

const AF_UNIX = 1;
/** sizeof(sun_path) in struct sockaddr_un on Linux. */
const SUN_PATH = 108;

/**
 * struct sockaddr_un for a NOTIFY_SOCKET value, exactly as long as the
 * address (the length is part of an abstract name: no trailing NUL for those,
 * as systemd binds them). A path's address carries its terminating NUL.
 * Throws for anything but a unix socket (systemd may also hand a VM
 * "vsock:CID:PORT", which this agent does not speak).
 */
export function notifyAddress(socket: string): Buffer {
  const abstract = socket.startsWith("@");
  if (!abstract && !socket.startsWith("/")) {
    throw new ThocError("invalid_argument", `NOTIFY_SOCKET=${socket}: not a unix socket path or @abstract name (vsock is not supported)`);
  }
  const name = Buffer.from(abstract ? socket.slice(1) : socket, "utf8");
  // An abstract name is NUL + name; a path is path + NUL; both within sun_path.
  if (name.length + 1 > SUN_PATH || name.length === 0 || (!abstract && name.includes(0))) {
    throw new ThocError("invalid_argument", `NOTIFY_SOCKET=${socket}: not a usable unix socket address (empty, too long or with a NUL byte)`);
  }
  const addr = Buffer.alloc(2 + 1 + name.length);
  // sa_family_t in host order (little-endian on x86-64 and arm64, as rpc/local.ts assumes too).
  addr.writeUInt16LE(AF_UNIX, 0);
  if (abstract) {
    addr[2] = 0;
    name.copy(addr, 3);
  } else {
    name.copy(addr, 2);
    addr[2 + name.length] = 0;
  }
  return addr;
}

interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  sendto(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrlen: number): number | bigint;
  close(fd: number): number;
}

let libc: Libc | undefined;

function loadLibc(): Libc {
  if (libc) return libc;
  const lib = koffi.load("libc.so.6");
  libc = {
    socket: lib.func("int socket(int domain, int type, int protocol)") as Libc["socket"],
    sendto: lib.func("long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)") as Libc["sendto"],
    close: lib.func("int close(int fd)") as Libc["close"],
  };
  return libc;
}

const SOCK_DGRAM = 2;
/** O_CLOEXEC: the VMs' helpers and anything else the agent spawns must not inherit the socket. */
const SOCK_CLOEXEC = 0o2000000;
/** Never wait on a receiver whose queue is full: the caller retries or drops (a keep-alive) instead. */
const MSG_DONTWAIT = 0x40;
/** No SIGPIPE if the service manager went away. */
const MSG_NOSIGNAL = 0x4000;

/**
 * A Notifier on a libc datagram socket, unconnected (sendto per message, as
 * sd_notify does), so a service manager that re-creates its socket is still
 * reached. Throws when libc or the socket cannot be had.
 */
export function openNotifier(socket: string): Notifier {
  const addr = notifyAddress(socket);
  const c = loadLibc();
  const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new ThocError("unavailable", `sd_notify: socket(AF_UNIX, SOCK_DGRAM) failed (errno ${koffi.errno()})`);
  let open = true;
  return {
    send(message) {
      if (!open) return false;
      const buf = Buffer.from(message, "utf8");
      const n = Number(c.sendto(fd, buf, Math.min(buf.length, NOTIFY_MAX_BYTES), MSG_DONTWAIT | MSG_NOSIGNAL, addr, addr.length));
      return n >= 0;
    },
    close() {
      if (open) c.close(fd);
      open = false;
    },
  };
}
