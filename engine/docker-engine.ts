/**
 * ContainerEngine over the Docker Engine API through dockerode: podman's
 * Docker-compatible service (podman system service / podman.socket) or
 * Docker itself, on container.runtimeUri. Every engine failure leaves as a
 * ThocError (docker-errors.ts). Registry credentials travel only in the
 * X-Registry-Auth header and never reach a log line or an error message.
 */
import http from "node:http";
import type { Readable, Duplex } from "node:stream";
import type Dockerode from "dockerode";
import { ThocError } from "../errors/index.js";
import type { Logger } from "../core/index.js";
import { engineError } from "./docker-errors.js";
import { engineInfo, isPodman, parseRuntimeUri, CDI_DIRS, type InfoSources } from "./docker-info.js";
import { ms, portsOf, readJsonLines, statsOf, toEvent, type RawStats } from "./docker-parse.js";
import { demuxStream, execSession, type Chunk } from "./docker-stream.js";
import type {
  ContainerEngine, EngineContainer, EngineCreate, EngineEvent, EngineIdentity, EngineInfo, EngineState, EngineStats,
  ExecOptions, ExecSession, LogOptions,
} from "./types.js";

export interface DockerEngineOptions {
  /** unix:///run/podman/podman.sock (default), unix:///var/run/docker.sock, tcp://host:port. */
  uri?: string;
  log?: Logger;
  /** How long info() waits for the engine (the health check's probe). */
  probeTimeoutMs?: number;
  /** Where CDI specs are looked for (tests point this elsewhere). */
  cdiDirs?: string[];
}

export const DEFAULT_RUNTIME_URI = "unix:///run/podman/podman.sock";
const INFO_TTL_MS = 60_000;

const STATES = new Set<EngineState>(["created", "running", "paused", "restarting", "exited", "dead", "removing"]);
/** Podman's own state names, as its compatible API sometimes lets them through. */
const PODMAN_STATES: Record<string, EngineState> = { configured: "created", initialized: "created", stopped: "exited", stopping: "running" };


export class DockerEngine implements ContainerEngine {
  readonly uri: string;
  private readonly ep: ReturnType<typeof parseRuntimeUri>;
  private client?: Promise<Dockerode>;
  private readonly local: boolean;
  private readonly streams = new Set<AbortController>();
  private podman?: boolean;
  private facts?: { at: number; src: InfoSources };

  constructor(private readonly o: DockerEngineOptions = {}) {
    this.uri = o.uri ?? DEFAULT_RUNTIME_URI;
    this.ep = parseRuntimeUri(this.uri);
    this.local = "socketPath" in this.ep;
  }

  /**
   * dockerode (with ssh2 and protobufjs behind it) takes a second or more to
   * load: only when the engine is first used, not when engine/ is imported.
   */
  private api(): Promise<Dockerode> {
    this.client ??= import("dockerode").then((m) => new m.default(this.ep));
    return this.client;
  }

  private err(what: string) {
    return (e: unknown): never => { throw engineError(e, what, this.uri); };
  }

  /**
   * Reachability every call (GET /_ping, cheap); the facts themselves are
   * cached for a minute: podman's /version runs conmon and runc to learn
   * their versions and /info walks its storage (1-3 s each on a small host),
   * and they change only when the engine is reconfigured.
   */
  async info(): Promise<EngineInfo> {
    const abortSignal = AbortSignal.timeout(this.o.probeTimeoutMs ?? 20_000);
    if (this.facts && Date.now() - this.facts.at < INFO_TTL_MS) {
      await this.raw("GET", "/_ping", { 200: true }, abortSignal).catch(this.err("engine ping"));
      // The local parts (CDI specs, cgroup mounts) are read afresh: cheap, and GPUs may just have been set up.
      return engineInfo(this.uri, this.facts.src, this.local, this.o.cdiDirs ?? CDI_DIRS);
    }
    // podman's own /libpod/info (network backend, cgroup manager as podman sees them); Docker answers 404.
    const [version, info, libpod] = await Promise.all([
      this.raw<InfoSources["version"]>("GET", "/version", { 200: true }, abortSignal),
      this.raw<InfoSources["info"]>("GET", "/info", { 200: true }, abortSignal),
      this.raw<InfoSources["libpod"]>("GET", "/v4.0.0/libpod/info", { 200: true }, abortSignal).catch(() => undefined),
    ]).catch(this.err("engine info"));
    this.podman = isPodman(version);
    const src: InfoSources = { version, info, ...(this.podman && libpod ? { libpod } : {}) };
    this.facts = { at: Date.now(), src };
    return engineInfo(this.uri, src, this.local, this.o.cdiDirs ?? CDI_DIRS);
  }

  /**
   * GET /_ping, reading who answers from its headers (podman: Libpod-Api-Version
   * and Server: Libpod/4.3.1; Docker: Server: Docker/27.x; both Api-Version).
   * Cheap: no conmon/runc/dpkg-query runs, unlike /version and /info.
   */
  async ping(): Promise<EngineIdentity> {
    const timeoutMs = this.o.probeTimeoutMs ?? 20_000;
    const ep = this.ep;
    const headers = await new Promise<http.IncomingHttpHeaders>((resolve, reject) => {
      const req = http.request({ ...("socketPath" in ep ? { socketPath: ep.socketPath } : { host: ep.host, port: ep.port }), path: "/_ping", method: "GET", timeout: timeoutMs }, (res) => {
        res.resume();
        if (res.statusCode !== 200) reject(Object.assign(new Error(`ping answered HTTP ${res.statusCode}`), { statusCode: res.statusCode }));
        else resolve(res.headers);
      });
      req.on("timeout", () => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: "ETIMEDOUT" })));
      req.on("error", reject);
      req.end();
    }).catch(this.err("engine ping"));
    const server = String(headers.server ?? "");
    const libpod = headers["libpod-api-version"];
    const podman = libpod !== undefined || /^libpod\//i.test(server);
    const version = podman ? String(libpod ?? /libpod\/([^\s]+)/i.exec(server)?.[1] ?? "") : /docker\/([^\s]+)/i.exec(server)?.[1] ?? "";
    if (this.podman === undefined) this.podman = podman;
    return { uri: this.uri, engine: podman ? "podman" : "docker", version, apiVersion: String(headers["api-version"] ?? "") };
  }

  /** A plain JSON call through the modem (endpoints dockerode has no method for, or types without a signal). */
  private async raw<T>(method: string, path: string, statusCodes: Record<number, boolean | string> = { 200: true }, abortSignal?: AbortSignal, query?: Record<string, string | number>): Promise<T> {
    // docker-modem appends the query to a path ending in "?" (and chops the last character of a
    // path with a "?" when there is no query): the query goes in `options`, never in the path.
    const p = query ? `${path}?` : path;
    const d = await this.api();
    return new Promise<T>((resolve, reject) => {
      d.modem.dial({ path: p, method, statusCodes, options: query ?? {}, ...(abortSignal ? { abortSignal } : {}) }, (e: unknown, data: unknown) => (e ? reject(e) : resolve(data as T)));
    });
  }

  private async isPodman(): Promise<boolean> {
    if (this.podman === undefined) this.podman = isPodman(await (await this.api()).version().catch(this.err("engine version")));
    return this.podman;
  }

  async loadImage(archive: Readable): Promise<string[]> {
    const res = (await (await this.api()).loadImage(archive, { quiet: true }).catch((e: unknown) => {
      const t = engineError(e, "image load", this.uri);
      throw t.code === "internal" ? new ThocError("invalid_argument", `${t.message} (not a docker-save or OCI image archive?)`, {}, { cause: e }) : t;
    })) as NodeJS.ReadableStream;
    const refs: string[] = [];
    for (const m of await readJsonLines(res)) {
      const err = m.error ?? (m.errorDetail as { message?: string } | undefined)?.message;
      if (err) throw new ThocError("invalid_argument", `image load: ${String(err)}`);
      const text = String(m.stream ?? m.status ?? "");
      // "Loaded image: a:1", podman's "Loaded image(s): a:1,b:2", Docker's "Loaded image ID: sha256:..."
      const hit = /Loaded image(?:\(s\))?(?: ID)?: (.+)/.exec(text);
      if (hit) refs.push(...hit[1]!.split(",").map((s) => s.trim()).filter(Boolean));
    }
    if (refs.length === 0) throw new ThocError("invalid_argument", "image load: the engine loaded nothing from the archive");
    return refs;
  }

  async imageId(ref: string): Promise<string | undefined> {
    try {
      return (await (await this.api()).getImage(ref).inspect()).Id;
    } catch (e) {
      const t = engineError(e, `image ${ref}`, this.uri);
      if (t.code === "not_found") return undefined;
      throw t;
    }
  }

  async pullImage(ref: string, auth?: { username: string; password: string }): Promise<void> {
    this.o.log?.info({ image: ref, withAuth: !!auth }, "container engine: pulling image");
    // Scrubs the password out of anything the engine echoes back.
    const scrub = (t: ThocError) => (auth?.password && t.message.includes(auth.password) ? new ThocError(t.code, t.message.split(auth.password).join("<redacted>"), t.details) : t);
    const opts = auth ? { authconfig: { username: auth.username, password: auth.password } } : {};
    let res: NodeJS.ReadableStream;
    try {
      res = (await (await this.api()).pull(ref, opts)) as NodeJS.ReadableStream;
    } catch (e) {
      throw scrub(engineError(e, `image pull ${ref}`, this.uri));
    }
    // The engine says 200 first and reports a failed pull inside the progress stream.
    for (const m of await readJsonLines(res)) {
      const msg = (m.errorDetail as { message?: string } | undefined)?.message ?? m.error;
      if (msg) throw scrub(engineError({ statusCode: 500, json: { message: String(msg) } }, `image pull ${ref}`, this.uri));
    }
  }

  async removeImage(ref: string): Promise<void> {
    await (await this.api()).getImage(ref).remove({}).catch(this.err(`image ${ref}`));
  }

  async create(c: EngineCreate): Promise<string> {
    const exposed: Record<string, object> = {};
    const bindings: Record<string, Array<{ HostIp: string; HostPort: string }>> = {};
    for (const p of c.ports) {
      const key = `${p.containerPort}/${p.protocol}`;
      exposed[key] = {};
      (bindings[key] ??= []).push({ HostIp: p.hostIp ?? "", HostPort: p.hostPort ? String(p.hostPort) : "" });
    }
    const cdi = c.devices.filter((d) => d.includes("="));
    const paths = c.devices.filter((d) => !d.includes("="));
    // Podman takes CDI names where device paths go; Docker (25+) wants them as a "cdi" device request.
    const podman = await this.isPodman();
    const devices = (podman ? c.devices : paths).map((d) => ({ PathOnHost: d, PathInContainer: d.includes("=") ? "" : d, CgroupPermissions: "rwm" }));
    const body: Dockerode.ContainerCreateOptions = {
      name: c.name,
      Image: c.image,
      ...(c.command?.length ? { Cmd: c.command } : {}),
      Env: Object.entries(c.env).map(([k, v]) => `${k}=${v}`),
      Labels: c.labels,
      Tty: !!c.tty,
      ExposedPorts: exposed,
      HostConfig: {
        PortBindings: bindings,
        Mounts: c.mounts.map((m) => ({ Type: "bind" as const, Source: m.source, Target: m.target, ReadOnly: m.readOnly })),
        ...(c.cpus > 0 ? { NanoCpus: Math.round(c.cpus * 1e9) } : {}),
        ...(c.memoryBytes > 0 ? { Memory: c.memoryBytes } : {}),
        Devices: devices,
        ...(!podman && cdi.length ? { DeviceRequests: [{ Driver: "cdi", DeviceIDs: cdi }] } : {}),
        // Restarts are the container subsystem's (its policy, back-off and counts), never the engine's.
        RestartPolicy: { Name: "no" },
      },
    };
    const ct = await (await this.api()).createContainer(body).catch(this.err(`container ${c.name}`));
    return ct.id;
  }

  async start(id: string): Promise<void> {
    await (await this.api()).getContainer(id).start().catch(this.err(`container ${id}`));
  }

  async stop(id: string, timeoutMs: number): Promise<void> {
    await (await this.api()).getContainer(id).stop({ t: Math.max(0, Math.ceil(timeoutMs / 1000)) }).catch(this.err(`container ${id}`));
  }

  async restart(id: string, timeoutMs: number): Promise<void> {
    await (await this.api()).getContainer(id).restart({ t: Math.max(0, Math.ceil(timeoutMs / 1000)) }).catch(this.err(`container ${id}`));
  }

  async remove(id: string, opts: { force: boolean }): Promise<void> {
    // v: anonymous volumes an image declares go with the container (ours are bind mounts).
    await (await this.api()).getContainer(id).remove({ force: opts.force, v: true }).catch(this.err(`container ${id}`));
  }

  async inspect(id: string): Promise<EngineContainer | undefined> {
    let i: Dockerode.ContainerInspectInfo;
    try {
      i = await (await this.api()).getContainer(id).inspect();
    } catch (e) {
      const t = engineError(e, `container ${id}`, this.uri);
      if (t.code === "not_found") return undefined;
      throw t;
    }
    const raw = (i.State.Status ?? "").toLowerCase();
    const state: EngineState = STATES.has(raw as EngineState) ? (raw as EngineState) : PODMAN_STATES[raw] ?? "unknown";
    return {
      id: i.Id,
      name: i.Name.replace(/^\//, ""),
      image: i.Config.Image,
      imageId: i.Image,
      state,
      exitCode: i.State.ExitCode ?? 0,
      startedAtMs: ms(i.State.StartedAt),
      finishedAtMs: ms(i.State.FinishedAt),
      ports: portsOf(i),
      labels: i.Config.Labels ?? {},
    };
  }

  async list(label: string): Promise<EngineContainer[]> {
    const all = await (await this.api()).listContainers({ all: true, filters: { label: [label] } }).catch(this.err("container list"));
    // The summary lacks exit codes and times: inspect each (a container removed meanwhile is skipped).
    const out = await Promise.all(all.map((c) => this.inspect(c.Id)));
    return out.filter((c): c is EngineContainer => c !== undefined);
  }

  async *logs(id: string, opts: LogOptions): AsyncIterable<Chunk> {
    const info = await (await this.api()).getContainer(id).inspect().catch(this.err(`container ${id}`));
    const ac = new AbortController();
    const onAbort = () => ac.abort();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    this.streams.add(ac);
    try {
      const q = { stdout: true, stderr: true, timestamps: !!opts.timestamps, ...(opts.tail !== undefined ? { tail: opts.tail } : {}), abortSignal: ac.signal };
      const tty = !!info.Config.Tty;
      if (!opts.follow) {
        const buf = (await (await this.api()).getContainer(id).logs({ ...q, follow: false }).catch(this.err(`container ${id}`))) as unknown as Buffer;
        yield* demuxStream([Buffer.isBuffer(buf) ? buf : Buffer.from(String(buf))], tty);
        return;
      }
      const s = (await (await this.api()).getContainer(id).logs({ ...q, follow: true }).catch(this.err(`container ${id}`))) as unknown as Readable;
      try {
        yield* demuxStream(s, tty);
      } catch (e) {
        if (ac.signal.aborted) return;
        throw engineError(e, `container ${id} logs`, this.uri);
      } finally {
        s.destroy();
      }
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
      this.streams.delete(ac);
    }
  }

  async exec(id: string, o: ExecOptions): Promise<ExecSession> {
    const ct = (await this.api()).getContainer(id);
    const ex = await ct.exec({
      Cmd: o.command, AttachStdin: o.stdin, AttachStdout: true, AttachStderr: true, Tty: o.tty,
      ...(o.env ? { Env: Object.entries(o.env).map(([k, v]) => `${k}=${v}`) } : {}),
      ...(o.workdir ? { WorkingDir: o.workdir } : {}),
    }).catch(this.err(`container ${id}`));
    const sock = (await ex.start({ hijack: true, stdin: o.stdin, Tty: o.tty }).catch(this.err(`exec in ${id}`))) as Duplex;
    // Podman answers an exec resize with 201, which dockerode's resize takes for an error.
    const resize = async (rows: number, cols: number) => {
      await this.raw("POST", `/exec/${ex.id}/resize`, { 200: true, 201: true, 404: "no such exec", 500: "server error" }, undefined, { h: rows, w: cols }).catch(this.err(`exec in ${id}`));
    };
    if (o.tty && o.rows && o.cols) await resize(o.rows, o.cols).catch(() => undefined);
    return execSession(ex, sock, o.tty, o.stdin, resize, (e) => engineError(e, `exec in ${id}`, this.uri));
  }

  async stats(id: string): Promise<EngineStats> {
    const s = (await (await this.api()).getContainer(id).stats({ stream: false, "one-shot": true } as { stream: false }).catch(this.err(`container ${id}`))) as unknown as RawStats;
    return statsOf(s);
  }

  async *events(signal: AbortSignal): AsyncIterable<EngineEvent> {
    const ac = new AbortController();
    const onAbort = () => ac.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    this.streams.add(ac);
    try {
      if (signal.aborted) return;
      const s = (await (await this.api()).getEvents({ filters: { type: ["container"] }, abortSignal: ac.signal }).catch(this.err("engine events"))) as unknown as Readable;
      let rest = "";
      try {
        for await (const b of s) {
          rest += String(b);
          let nl: number;
          while ((nl = rest.indexOf("\n")) >= 0) {
            const line = rest.slice(0, nl).trim();
            rest = rest.slice(nl + 1);
            const ev = line ? toEvent(line) : undefined;
            if (ev) yield ev;
          }
        }
      } catch (e) {
        if (ac.signal.aborted) return;
        throw engineError(e, "engine events", this.uri);
      } finally {
        s.destroy();
      }
      if (!ac.signal.aborted) throw new ThocError("unavailable", `container engine at ${this.uri} closed its event stream`);
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.streams.delete(ac);
    }
  }

  async close(): Promise<void> {
    for (const ac of this.streams) ac.abort();
    this.streams.clear();
  }
}
