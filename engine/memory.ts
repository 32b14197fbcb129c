/**
 * MemoryEngine: a ContainerEngine in this process, for unit tests of the
 * container subsystem's logic (state machine, ports in use, exec with exit
 * codes, logs and events) where a real engine would make every test slow or
 * impossible (restart back-off, an engine that goes away). The main process
 * and execs run memory-script.ts's tiny shell. With `http: true` a running
 * container answers HTTP on its mapped TCP host ports on 127.0.0.1 (real
 * sockets: a port in use is refused as a real engine refuses it), so health
 * checks can be tested end to end. Test hooks: addImage, publishImage,
 * crash, setHttpStatus, occupyPort, setAvailable.
 */
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { PassThrough, type Readable } from "node:stream";
import type { Clock } from "../core/index.js";
import { ThocError } from "../errors/index.js";
import { archiveRefs } from "./memory-archive.js";
import { runScript, scriptOf } from "./memory-script.js";
import type {
  ContainerEngine, EngineContainer, EngineCreate, EngineEvent, EngineIdentity, EngineInfo, EnginePort, EngineStats, ExecOptions, ExecSession, LogOptions,
} from "./types.js";

interface LogEntry { stream: "stdout" | "stderr"; data: Buffer; timeMs: number }

/** What the engine reports of a container (less what the spec says), and what this engine keeps to play one. */
interface MemContainer extends Pick<EngineContainer, "id" | "imageId" | "state" | "exitCode" | "startedAtMs" | "finishedAtMs" | "ports"> {
  spec: EngineCreate;
  logs: LogEntry[];
  /** Wakes followers of the logs (new output or the process ended). */
  wake: Set<() => void>;
  kill?: AbortController;
  ended?: Promise<void>;
  servers: http.Server[];
  http: Map<string, number>;
  runningMs: number;
  requests: number;
}

export interface MemoryEngineOptions {
  /** Serve HTTP on mapped TCP host ports of running containers (127.0.0.1). */
  http?: boolean;
  clock?: Clock;
  uri?: string;
  /** Whether info() says GPUs (CDI devices) can be given. */
  gpus?: boolean;
}

const MiB = 1048576;

export class MemoryEngine implements ContainerEngine {
  readonly uri: string;
  private readonly images = new Map<string, { id: string; cmd: string[] }>();
  private readonly registry = new Set<string>();
  private readonly byId = new Map<string, MemContainer>();
  private readonly occupied = new Set<string>();
  private readonly listeners = new Set<(e: EngineEvent) => void>();
  private readonly wakers = new Set<() => void>();
  private readonly clock: Clock;
  private nextPort = 32768;
  private down?: string;
  /** Every call the engine answered, by method name (tests count pulls, loads...). */
  readonly calls = new Map<string, number>();

  constructor(private readonly o: MemoryEngineOptions = {}) {
    // Not realClock: its timers are unref'd, and a process sleeping in a container is work in progress, as in a real engine.
    this.clock = o.clock ?? { now: () => Date.now(), after: (ms, fn) => { const t = setTimeout(fn, ms); return { cancel: () => clearTimeout(t) }; } };
    this.uri = o.uri ?? "memory:";
  }

  // ---- test hooks ----

  /** An image present locally; cmd is its default command (default: runs until stopped). */
  addImage(ref: string, cmd: string[] = ["sleep", "inf"]): string {
    const id = `sha256:${createHash("sha256").update(ref).digest("hex")}`;
    this.images.set(ref, { id, cmd });
    return id;
  }

  /** An image a pull can fetch. */
  publishImage(ref: string): void { this.registry.add(ref); }

  /** The main process exits with code now (an OOM kill, a crash). */
  async crash(idOrName: string, code: number): Promise<void> {
    const c = this.find(idOrName);
    if (!c?.kill) throw new ThocError("failed_precondition", `container ${idOrName} is not running`);
    (c as { crashCode?: number }).crashCode = code;
    c.kill.abort();
    await c.ended;
  }

  /** What GET path answers on the container's ports (default 200). */
  setHttpStatus(idOrName: string, path: string, status: number): void {
    this.need(idOrName).http.set(path, status);
  }

  /** A host port something else holds (without `http`, where no real socket tells). */
  occupyPort(port: number, protocol: "tcp" | "udp" = "tcp"): void { this.occupied.add(`${port}/${protocol}`); }

  /** What the container was created with (devices, mounts, env as the engine got them). */
  createdWith(idOrName: string): EngineCreate { return structuredClone(this.need(idOrName).spec); }

  /** false: every call answers unavailable (the engine's socket went away) until set back. */
  setAvailable(up: boolean, why = "connection refused"): void {
    this.down = up ? undefined : why;
    // Open event streams fail as a broken connection's would.
    if (!up) for (const w of this.wakers) w();
  }

  // ---- ContainerEngine ----

  private count(m: string): void {
    this.calls.set(m, (this.calls.get(m) ?? 0) + 1);
    if (this.down) throw new ThocError("unavailable", `no container engine at ${this.uri}: ${this.down}`, { uri: this.uri });
  }

  async ping(): Promise<EngineIdentity> {
    this.count("ping");
    return { uri: this.uri, engine: "memory", version: "1", apiVersion: "1.41" };
  }

  async info(): Promise<EngineInfo> {
    this.count("info");
    return { uri: this.uri, engine: "memory", version: "1", apiVersion: "1.41", cgroupManager: "none", cgroupVersion: "2", ociRuntime: "memory", gpus: Boolean(this.o.gpus), portMapping: true };
  }

  async loadImage(archive: Readable): Promise<string[]> {
    this.count("loadImage");
    const chunks: Buffer[] = [];
    for await (const c of archive) chunks.push(Buffer.from(c as Buffer));
    const refs = archiveRefs(Buffer.concat(chunks));
    for (const r of refs) this.addImage(r);
    return refs;
  }

  private resolveImage(ref: string): { ref: string; id: string; cmd: string[] } | undefined {
    const tagged = /:[^/]+$/.test(ref) ? ref : `${ref}:latest`;
    for (const r of [ref, tagged, `localhost/${tagged}`]) {
      const i = this.images.get(r);
      if (i) return { ref: r, ...i };
    }
    for (const [r, i] of this.images) if (i.id === ref) return { ref: r, ...i };
    return undefined;
  }

  async imageId(ref: string): Promise<string | undefined> {
    this.count("imageId");
    return this.resolveImage(ref)?.id;
  }

  async pullImage(ref: string, auth?: { username: string; password: string }): Promise<void> {
    this.count("pullImage");
    void auth;
    if (!this.registry.has(ref)) throw new ThocError("not_found", `pull ${ref}: manifest unknown (no such image in the registry)`, { image: ref });
    this.addImage(ref);
  }

  async removeImage(ref: string): Promise<void> {
    this.count("removeImage");
    const i = this.resolveImage(ref);
    if (!i) throw new ThocError("not_found", `no such image: ${ref}`, { image: ref });
    const user = [...this.byId.values()].find((c) => c.imageId === i.id);
    if (user) throw new ThocError("failed_precondition", `image ${ref} is in use by container ${user.spec.name}`, { image: ref });
    this.images.delete(i.ref);
  }

  async create(c: EngineCreate): Promise<string> {
    this.count("create");
    if (this.find(c.name)) throw new ThocError("already_exists", `the container name "${c.name}" is already in use`, { name: c.name });
    const image = this.resolveImage(c.image);
    if (!image) throw new ThocError("not_found", `no such image: ${c.image}`, { image: c.image });
    const id = randomBytes(32).toString("hex");
    this.byId.set(id, {
      id, spec: structuredClone(c), imageId: image.id, state: "created", exitCode: 0, startedAtMs: 0, finishedAtMs: 0,
      ports: [], logs: [], wake: new Set(), servers: [], http: new Map(), runningMs: 0, requests: 0,
    });
    this.emit(id, c.name, "create");
    return id;
  }

  async start(id: string): Promise<void> {
    this.count("start");
    const c = this.need(id);
    if (c.state === "running") return;
    c.ports = await this.bind(c);
    const image = this.resolveImage(c.spec.image);
    const argv = c.spec.command?.length ? c.spec.command : image?.cmd ?? ["sleep", "inf"];
    const kill = new AbortController();
    Object.assign(c, { state: "running", startedAtMs: this.clock.now(), exitCode: 0, kill });
    delete (c as { crashCode?: number }).crashCode;
    this.emit(c.id, c.spec.name, "start");
    c.ended = (async () => {
      const code = await runScript(scriptOf(argv), {
        env: { ...c.spec.env }, signal: kill.signal, size: () => ({ rows: 24, cols: 80 }),
        out: (stream, data) => this.log(c, stream, data),
        sleep: (ms) => this.sleep(ms, kill.signal),
      }).catch(() => 1);
      const crashed = (c as { crashCode?: number }).crashCode;
      this.ended(c, crashed ?? code);
    })();
  }

  private ended(c: MemContainer, code: number): void {
    c.runningMs += this.clock.now() - c.startedAtMs;
    Object.assign(c, { state: "exited", exitCode: code, finishedAtMs: this.clock.now(), kill: undefined });
    for (const s of c.servers) s.close();
    c.servers = [];
    for (const w of c.wake) w();
    this.emit(c.id, c.spec.name, "die", code);
  }

  private sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const t = this.clock.after(ms, resolve);
      signal.addEventListener("abort", () => { t.cancel(); reject(new Error("killed")); }, { once: true });
    });
  }

  /** Binds the container's host ports, or refuses as an engine does when one is taken. */
  private async bind(c: MemContainer): Promise<EnginePort[]> {
    const taken = new Set([...this.occupied, ...[...this.byId.values()].filter((x) => x.state === "running").flatMap((x) => x.ports.map((p) => `${p.hostPort}/${p.protocol}`))]);
    const out: EnginePort[] = [];
    const servers: http.Server[] = [];
    try {
      for (const p of c.spec.ports) {
        const key = `${p.hostPort}/${p.protocol}`;
        if (p.hostPort && taken.has(key)) throw portInUse(p.hostPort);
        let hostPort = p.hostPort;
        if (this.o.http && p.protocol === "tcp") {
          const s = http.createServer((req, res) => {
            c.requests++;
            const status = c.http.get((req.url ?? "/").split("?")[0]!) ?? 200;
            res.writeHead(status, { "content-type": "text/plain" }).end(status < 400 ? "ok\n" : "failing\n");
          });
          await new Promise<void>((resolve, reject) => {
            s.once("error", (err: NodeJS.ErrnoException) => reject(err.code === "EADDRINUSE" ? portInUse(p.hostPort) : err));
            s.listen(p.hostPort, "127.0.0.1", () => resolve());
          });
          servers.push(s);
          hostPort = (s.address() as AddressInfo).port;
        } else if (!hostPort) {
          while (taken.has(`${this.nextPort}/${p.protocol}`)) this.nextPort++;
          hostPort = this.nextPort++;
        }
        taken.add(`${hostPort}/${p.protocol}`);
        out.push({ ...p, hostPort });
      }
    } catch (err) {
      for (const s of servers) s.close();
      throw err;
    }
    c.servers = servers;
    return out;
  }

  async stop(id: string, timeoutMs: number): Promise<void> {
    this.count("stop");
    void timeoutMs;
    const c = this.need(id);
    if (!c.kill) return;
    c.kill.abort();
    await c.ended;
    this.emit(c.id, c.spec.name, "stop");
  }

  async restart(id: string, timeoutMs: number): Promise<void> {
    this.count("restart");
    await this.stop(id, timeoutMs);
    await this.start(id);
    const c = this.need(id);
    this.emit(c.id, c.spec.name, "restart");
  }

  async remove(id: string, opts: { force: boolean }): Promise<void> {
    this.count("remove");
    const c = this.need(id);
    if (c.state === "running") {
      if (!opts.force) throw new ThocError("failed_precondition", `container ${c.spec.name} is running: stop it first or force the removal`, { name: c.spec.name });
      c.kill?.abort();
      await c.ended;
    }
    this.byId.delete(c.id);
    this.emit(c.id, c.spec.name, "remove");
  }

  async inspect(id: string): Promise<EngineContainer | undefined> {
    this.count("inspect");
    const c = this.find(id);
    return c && this.view(c);
  }

  async list(label: string): Promise<EngineContainer[]> {
    this.count("list");
    const [k, v] = label.split("=", 2) as [string, string | undefined];
    return [...this.byId.values()].filter((c) => k in c.spec.labels && (v === undefined || c.spec.labels[k] === v)).map((c) => this.view(c));
  }

  async *logs(id: string, opts: LogOptions): AsyncIterable<{ stream: "stdout" | "stderr"; data: Buffer }> {
    this.count("logs");
    const c = this.need(id);
    const fmt = (e: LogEntry) => ({ stream: e.stream, data: opts.timestamps ? Buffer.concat([Buffer.from(`${new Date(e.timeMs).toISOString()} `), e.data]) : e.data });
    let next = opts.tail ? Math.max(0, c.logs.length - opts.tail) : 0;
    for (;;) {
      while (next < c.logs.length) yield fmt(c.logs[next++]!);
      if (!opts.follow || c.state !== "running" || opts.signal?.aborted || !this.byId.has(c.id)) return;
      await new Promise<void>((resolve) => {
        const done = () => { c.wake.delete(done); opts.signal?.removeEventListener("abort", done); resolve(); };
        c.wake.add(done);
        opts.signal?.addEventListener("abort", done, { once: true });
      });
    }
  }

  async exec(id: string, opts: ExecOptions): Promise<ExecSession> {
    this.count("exec");
    const c = this.need(id);
    if (c.state !== "running") throw new ThocError("failed_precondition", `container ${c.spec.name} is not running (${c.state}): start it first`, { name: c.spec.name });
    const stdin = opts.stdin ? new PassThrough() : undefined;
    const kill = new AbortController();
    const size = { rows: opts.rows || 24, cols: opts.cols || 80 };
    const pending: ["stdout" | "stderr", Buffer][] = [];
    let listener: ((s: "stdout" | "stderr", d: Buffer) => void) | undefined;
    const out = (s: "stdout" | "stderr", d: Buffer) => {
      const stream = opts.tty ? "stdout" : s;
      if (listener) listener(stream, d); else pending.push([stream, d]);
    };
    // The process reads a copy, so a terminal can echo what is typed first.
    const procIn = stdin ? new PassThrough() : undefined;
    stdin?.on("data", (d: Buffer) => { if (opts.tty) out("stdout", Buffer.from(d)); procIn!.write(d); });
    stdin?.on("end", () => procIn!.end());
    c.kill?.signal.addEventListener("abort", () => kill.abort(), { once: true });
    // Starts on the next turn, so the caller attaches onOutput first (a real exec's output waits in the socket too).
    const exit = new Promise<void>((r) => setImmediate(r)).then(() => runScript(scriptOf(opts.command), {
      env: { ...c.spec.env, ...opts.env }, stdin: procIn, signal: kill.signal, size: () => size, out,
      sleep: (ms) => this.sleep(ms, kill.signal),
    })).catch(() => 126);
    return {
      stdin,
      onOutput(fn) { listener = fn; for (const [s, d] of pending.splice(0)) fn(s, d); },
      async resize(rows, cols) { size.rows = rows; size.cols = cols; },
      exit,
      kill: () => kill.abort(),
    };
  }

  async stats(id: string): Promise<EngineStats> {
    this.count("stats");
    const c = this.need(id);
    const running = c.state === "running";
    const ms = c.runningMs + (running ? this.clock.now() - c.startedAtMs : 0);
    const bytes = (n: number) => (running ? n : 0);
    return {
      cpuSeconds: ms / 1000 / 20, memoryBytes: bytes(4 * MiB), memoryLimitBytes: c.spec.memoryBytes || 8192 * MiB,
      netRxBytes: c.requests * 100, netTxBytes: c.requests * 150, blockReadBytes: bytes(4096), blockWriteBytes: bytes(c.logs.length * 64), pids: running ? 1 : 0,
      timestampMs: this.clock.now(),
    };
  }

  async *events(signal: AbortSignal): AsyncIterable<EngineEvent> {
    this.count("events");
    const queue: EngineEvent[] = [];
    let wake: (() => void) | undefined;
    const fn = (e: EngineEvent) => { queue.push(e); wake?.(); };
    this.listeners.add(fn);
    const onAbort = () => wake?.();
    signal.addEventListener("abort", onAbort);
    this.wakers.add(onAbort);
    try {
      for (;;) {
        while (queue.length) yield queue.shift()!;
        if (signal.aborted) return;
        if (this.down) throw new ThocError("unavailable", `no container engine at ${this.uri}: ${this.down}`, { uri: this.uri });
        await new Promise<void>((r) => { wake = r; });
        wake = undefined;
      }
    } finally {
      this.listeners.delete(fn);
      this.wakers.delete(onAbort);
      signal.removeEventListener("abort", onAbort);
    }
  }

  async close(): Promise<void> {
    for (const c of this.byId.values()) { for (const s of c.servers) s.close(); }
  }

  // ---- internals ----

  private find(idOrName: string): MemContainer | undefined {
    return this.byId.get(idOrName) ?? [...this.byId.values()].find((c) => c.spec.name === idOrName);
  }

  private need(idOrName: string): MemContainer {
    const c = this.find(idOrName);
    if (!c) throw new ThocError("not_found", `no such container: ${idOrName}`, { id: idOrName });
    return c;
  }

  private log(c: MemContainer, stream: "stdout" | "stderr", data: Buffer): void {
    c.logs.push({ stream: c.spec.tty ? "stdout" : stream, data, timeMs: this.clock.now() });
    for (const w of c.wake) w();
  }

  private view(c: MemContainer): EngineContainer {
    return {
      id: c.id, name: c.spec.name, image: c.spec.image, imageId: c.imageId, state: c.state, exitCode: c.exitCode,
      startedAtMs: c.startedAtMs, finishedAtMs: c.finishedAtMs, ports: c.ports.map((p) => ({ ...p })), labels: { ...c.spec.labels },
    };
  }

  private emit(id: string, name: string, action: string, exitCode?: number): void {
    const e: EngineEvent = { id, name, action, timeMs: this.clock.now(), ...(exitCode === undefined ? {} : { exitCode }) };
    for (const l of this.listeners) l(e);
  }
}

const portInUse = (port: number) =>
  new ThocError("resource_exhausted", `host port ${port} is already in use on this node`, { port });
