/**
 * A stand-in for systemd's notification socket: a unix datagram socket the
 * test owns (a path, or an abstract name given to the agent as "@name"), whose
 * datagrams are recorded with the time they were read. Node has no unix
 * datagram sockets, so it is libc's through koffi, non-blocking and read
 * every few milliseconds from a timer, so the test's event loop stays free.
 *
 * The address is built here byte by byte, not with the agent's notifyAddress():
 * a mistake there must not be repeated here and so cancel out.
 */
import koffi from "koffi";
import { randomBytes } from "node:crypto";
import { unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

export interface Datagram {
  /** Date.now() when it was read (within POLL_MS of its arrival). */
  at: number;
  text: string;
  /** Its VAR=value assignments. */
  fields: Record<string, string>;
}

const AF_UNIX = 1, SOCK_DGRAM = 2, SOCK_NONBLOCK = 0o4000, SOCK_CLOEXEC = 0o2000000, MSG_DONTWAIT = 0x40;
const POLL_MS = 5;

interface Libc {
  socket(d: number, t: number, p: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  recv(fd: number, buf: Buffer, len: number, flags: number): number | bigint;
  close(fd: number): number;
}
let libc: Libc | undefined;
function load(): Libc {
  const l = koffi.load("libc.so.6");
  libc ??= {
    socket: l.func("int socket(int, int, int)") as Libc["socket"],
    bind: l.func("int bind(int, const void *, uint32_t)") as Libc["bind"],
    recv: l.func("long recv(int, _Out_ void *, size_t, int)") as Libc["recv"],
    close: l.func("int close(int)") as Libc["close"],
  };
  return libc;
}

export class NotifySocket {
  readonly received: Datagram[] = [];
  /** While true nothing is read: datagrams queue in the kernel until it is full (a service manager that stopped reading). */
  paused = false;
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  private constructor(
    /** What NOTIFY_SOCKET is set to. */
    readonly address: string,
    private readonly fd: number,
    private readonly file: string | undefined,
  ) {
    const buf = Buffer.alloc(4096);
    this.timer = setInterval(() => {
      while (!this.paused) {
        const n = Number(load().recv(this.fd, buf, buf.length, MSG_DONTWAIT));
        if (n < 0) return;
        const text = buf.subarray(0, n).toString("utf8");
        const fields: Record<string, string> = {};
        for (const line of text.split("\n")) {
          const i = line.indexOf("=");
          if (i > 0) fields[line.slice(0, i)] = line.slice(i + 1);
        }
        this.received.push({ at: Date.now(), text, fields });
      }
    }, POLL_MS);
  }

  /** Binds a fresh socket: a file in the temp dir, or (abstract) a random abstract name. */
  static open(kind: "path" | "abstract" = "path"): NotifySocket {
    const c = load();
    const name = `thoc-notify-${process.pid}-${randomBytes(4).toString("hex")}`;
    const file = kind === "path" ? path.join(tmpdir(), name) : undefined;
    const nameBytes = Buffer.from(file ?? name);
    // struct sockaddr_un: sa_family (u16, little-endian here), then sun_path: "path\0" or "\0name" (no NUL after).
    const addr = Buffer.concat([Buffer.from([AF_UNIX, 0]), file ? Buffer.concat([nameBytes, Buffer.from([0])]) : Buffer.concat([Buffer.from([0]), nameBytes])]);
    const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw new Error(`socket() failed: errno ${koffi.errno()}`);
    if (c.bind(fd, addr, addr.length) !== 0) {
      const errno = koffi.errno();
      c.close(fd);
      throw new Error(`bind(${file ?? "@" + name}) failed: errno ${errno}`);
    }
    return new NotifySocket(file ?? `@${name}`, fd, file);
  }

  /** Datagrams that set a variable (e.g. "READY"), in arrival order. */
  with(field: string): Datagram[] {
    return this.received.filter((d) => field in d.fields);
  }

  /** Resolves with the first datagram (from index `from` on) that pred accepts. */
  async next(pred: (d: Datagram) => boolean, timeoutMs = 20_000, from = 0): Promise<Datagram> {
    const t0 = Date.now();
    for (;;) {
      const d = this.received.slice(from).find(pred);
      if (d) return d;
      if (Date.now() - t0 > timeoutMs) throw new Error(`no matching notification within ${timeoutMs} ms; got:\n${this.received.map((x) => x.text).join("\n---\n")}`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    load().close(this.fd);
    if (this.file) try { unlinkSync(this.file); } catch { /* already gone */ }
  }
}
