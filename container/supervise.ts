/**
 * What keeps records in line with the engine after a create: the engine's
 * event stream (a container that died is exited, or restarting under its
 * restart policy with back-off), the health checks of running containers,
 * and reconciliation each time the engine answers again (agent start, an
 * engine restart): records whose container vanished are marked, containers
 * this node labelled but has no record of are adopted, and containers that
 * were running when the agent lost sight of them get their restart policy.
 */
import type { Clock, Timer } from "../core/index.js";
import type { ContainerEngine, EngineContainer, EngineEvent, EngineIdentity } from "../engine/index.js";
import { ThocError } from "../errors/index.js";
import type { HealthPoller } from "./health.js";
import { ENGINE_PREFIX, LABEL, withEngine, type ContainerRecordStore } from "./record.js";
import { backoffMs, shouldRestart, type BackoffOptions } from "./restart.js";
import { validateContainerSpec } from "./spec.js";
import type { ContainerRecord, ContainerTrigger } from "./types.js";

/** The manager as its supervisor sees it (ContainerManager). */
export interface Supervised {
  readonly engine: ContainerEngine;
  readonly clock: Clock;
  readonly health: HealthPoller;
  readonly nodeId: string;
  readonly o: { records: ContainerRecordStore; node: string; engineUri?: string; log?: { info(o: object, m: string): void; warn(o: object, m: string): void } };
  list(): Promise<ContainerRecord[]>;
  save(r: ContainerRecord, by: ContainerTrigger): Promise<ContainerRecord>;
  isBusy(name: string): boolean;
  /** Runs fn holding the container's lock (events meanwhile are looked at after, as for any operation). */
  exclusive<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

interface PolicyState { failures: number; timer?: Timer }

/** How long open() waits for the first answer of the engine before the agent goes on without it. */
const FIRST_ANSWER_MS = 5000;
const RETRY_MIN_MS = 1000, RETRY_MAX_MS = 30_000;

const same = (a: ContainerRecord, b: ContainerRecord) => JSON.stringify(a) === JSON.stringify(b);

export class Supervisor {
  private ac?: AbortController;
  private up = false;
  private detail = "";
  /** The engine answered, or failed to, at least once. */
  private asked = false;
  private info?: EngineIdentity;
  private retry?: Timer;
  private readonly policy = new Map<string, PolicyState>();
  private readonly deferred = new Set<string>();

  constructor(private readonly m: Supervised, private readonly backoff: BackoffOptions) {}

  engineState(): { up: boolean; asked: boolean; detail: string; info?: EngineIdentity } {
    const detail = this.asked ? this.detail : `waiting for the container engine at ${this.m.o.engineUri ?? "the runtime URI"} to answer`;
    return { up: this.up, asked: this.asked, detail, ...(this.info ? { info: this.info } : {}) };
  }

  async open(): Promise<void> {
    this.ac = new AbortController();
    let answered!: () => void;
    const first = new Promise<void>((r) => { answered = r; });
    void this.loop(this.ac.signal, answered);
    let t: NodeJS.Timeout | undefined;
    await Promise.race([first, new Promise((r) => { t = setTimeout(r, FIRST_ANSWER_MS); t.unref(); })]).finally(() => clearTimeout(t));
  }

  close(): void {
    this.ac?.abort();
    this.retry?.cancel();
    for (const s of this.policy.values()) s.timer?.cancel();
    this.policy.clear();
  }

  /** Follows the engine's events; when the engine is unreachable, asks again with back-off (1 s .. 30 s). */
  private async loop(signal: AbortSignal, answered: () => void): Promise<void> {
    let wait = RETRY_MIN_MS;
    while (!signal.aborted) {
      try {
        // ping, not info(): podman's /version and /info run conmon, runc and dpkg-query every time.
        const info = await this.m.engine.ping();
        // Subscribed before reconciling, so nothing that happens meanwhile is missed.
        const it = this.m.engine.events(signal)[Symbol.asyncIterator]();
        let next = it.next();
        next.catch(() => {});
        await this.reconcile();
        if (!this.up) this.m.o.log?.info({ engine: info.engine, version: info.version, uri: info.uri }, "container engine connected");
        Object.assign(this, { up: true, asked: true, detail: `${info.engine} ${info.version} at ${info.uri}`, info });
        answered();
        wait = RETRY_MIN_MS;
        for (let n = await next; !n.done; n = await next) {
          next = it.next();
          next.catch(() => {});
          await this.onEvent(n.value).catch((err) => this.m.o.log?.warn({ err, event: n.value.action, container: n.value.name }, "container event handling failed"));
        }
        if (signal.aborted) return;
        throw new ThocError("unavailable", `the engine at ${info.uri} ended its event stream`);
      } catch (err) {
        if (signal.aborted) return;
        const msg = (err as Error).message;
        if (this.up || !this.asked) this.m.o.log?.warn({ err: msg }, "container engine unreachable; containers unavailable until it answers");
        this.up = false;
        this.asked = true;
        const uri = this.info?.uri ?? this.m.o.engineUri ?? "the runtime URI";
        this.detail = msg.includes(uri) ? msg : `no container engine at ${uri}: ${msg}`;
        answered();
      }
      await new Promise<void>((r) => {
        this.retry = this.m.clock.after(wait, r);
        signal.addEventListener("abort", () => r(), { once: true });
      });
      wait = Math.min(wait * 2, RETRY_MAX_MS);
    }
  }

  private async saveIfChanged(r: ContainerRecord, now: ContainerRecord, by: ContainerTrigger): Promise<ContainerRecord> {
    return same(r, now) ? r : this.m.save(now, by);
  }

  private async onEvent(e: EngineEvent): Promise<void> {
    if (!e.name.startsWith(ENGINE_PREFIX)) return;
    const name = e.name.slice(ENGINE_PREFIX.length);
    // An operation under way owns the record; what the engine did meanwhile is looked at once it is done (released()).
    if (this.m.isBusy(name)) { this.deferred.add(name); return; }
    const r = await this.m.o.records.get(name);
    if (!r || r.status === "creating" || !r.engineId || r.engineId !== e.id) return;
    await this.follow(r, e.action);
  }

  /** An operation on name ended: if the engine reported anything meanwhile, the container is looked at now. */
  released(name: string): void {
    if (!this.deferred.delete(name)) return;
    void (async () => {
      const r = await this.m.o.records.get(name);
      if (r?.engineId && r.status !== "creating" && !this.m.isBusy(name)) await this.follow(r, "recheck");
    })().catch((err) => this.m.o.log?.warn({ err, container: name }, "container recheck failed"));
  }

  private async follow(r: ContainerRecord, action: string): Promise<void> {
    const name = r.name;
    const removed = action === "remove" || action === "destroy";
    // A restart the policy has pending owns the container until it runs.
    if (!removed && this.policy.get(name)?.timer) return;
    const c = removed ? undefined : await this.m.engine.inspect(r.engineId);
    if (!c) {
      this.cancelRestart(name);
      this.m.health.unwatch(name);
      await this.m.save({ ...r, engineId: "", status: "error", health: "", detail: `the engine container was removed outside thoc-node: delete the container (thoc-node ct delete ${name}) and create it again` }, "engine");
      return;
    }
    const now = await this.saveIfChanged(r, withEngine(r, c), "engine");
    if (c?.state === "running") this.running(now, c);
    else { this.m.health.unwatch(name); await this.exited(now, c); }
  }

  /** A container runs: health checks from now (when it has a path and a TCP port). */
  running(r: ContainerRecord, c: EngineContainer | undefined): void {
    if (!c || c.state !== "running") { this.m.health.unwatch(r.name); return; }
    const port = c.ports.find((p) => p.protocol === "tcp");
    if (!r.spec.healthCheckPath || !port) { this.m.health.unwatch(r.name); return; }
    const url = (host: string) => `http://${host}:${port.hostPort}${r.spec.healthCheckPath}`;
    const host = !port.hostIp || port.hostIp === "0.0.0.0" ? "127.0.0.1" : port.hostIp === "::" ? "[::1]" : port.hostIp.includes(":") ? `[${port.hostIp}]` : port.hostIp;
    // Already checking this run of it (a recheck after the operation that started it): the count goes on.
    if (this.m.health.watching(r.name, url(host))) return;
    this.m.health.watch(r.name, { url: url(host), intervalMs: r.spec.healthIntervalS * 1000, retries: r.spec.healthRetries }, (healthy, why) => {
      void this.healthChanged(r.name, c.id, healthy, why).catch((err) => this.m.o.log?.warn({ err, container: r.name }, "health status update failed"));
    });
  }

  private async healthChanged(name: string, engineId: string, healthy: boolean, why: string): Promise<void> {
    const r = await this.m.o.records.get(name);
    if (!r || r.engineId !== engineId || (r.status !== "running" && r.status !== "unhealthy")) return;
    await this.m.save({ ...r, health: healthy ? "healthy" : "unhealthy", status: healthy ? "running" : "unhealthy", detail: healthy ? "" : why }, "health");
  }

  /** An exited container whose policy says so is started again after the back-off. */
  private async exited(r: ContainerRecord, c: EngineContainer): Promise<void> {
    if (r.desiredState !== "running" || !shouldRestart(r.spec.restartPolicy, c.exitCode)) return;
    const st = this.policy.get(r.name) ?? { failures: 0 };
    if (st.timer) return;
    // A run long enough counts as a success: the back-off starts over.
    if (c.startedAtMs && c.finishedAtMs - c.startedAtMs >= this.backoff.resetAfterMs) st.failures = 0;
    await this.schedule(r, st, `exited with code ${c.exitCode}`);
  }

  private async schedule(r: ContainerRecord, st: PolicyState, why: string): Promise<void> {
    const delay = backoffMs(st.failures++, this.backoff);
    this.policy.set(r.name, st);
    st.timer = this.m.clock.after(delay, () => { st.timer = undefined; void this.restartNow(r.name); });
    await this.m.save({ ...r, status: "restarting", health: "", detail: `${why}; restart policy ${r.spec.restartPolicy}: starting it again in ${delay / 1000} s` }, "restart-policy");
  }

  private async restartNow(name: string): Promise<void> {
    const r = await this.m.o.records.get(name);
    const st = this.policy.get(name);
    if (!r || !st || r.desiredState !== "running" || !r.engineId || this.m.isBusy(name)) return;
    try {
      await this.m.exclusive(name, async () => {
        await this.m.engine.start(r.engineId);
        const c = await this.m.engine.inspect(r.engineId);
        const now = await this.m.save(withEngine({ ...r, restartCount: r.restartCount + 1, health: "", detail: "" }, c), "restart-policy");
        if (c?.state === "running") this.running(now, c);
        else if (c) await this.exited(now, c);
      });
    } catch (err) {
      // The start itself failed (a port taken meanwhile, the engine away): another try, later.
      const cur = await this.m.o.records.get(name);
      // A user's start, stop or delete meanwhile took over (cancelRestart): not ours to retry.
      if (this.policy.get(name) !== st) return;
      if (cur && cur.desiredState === "running" && !st.timer) await this.schedule(cur, st, `the restart failed: ${(err as Error).message}`);
    }
  }

  /** Forgets a pending policy restart and the back-off (a user's start, stop, restart or delete). */
  cancelRestart(name: string): void {
    this.policy.get(name)?.timer?.cancel();
    this.policy.delete(name);
  }

  /** Brings records in line with the engine's containers of this node. */
  async reconcile(): Promise<{ adopted: string[]; missing: string[] }> {
    const mine = (await this.m.engine.list(`${LABEL.managed}=1`)).filter((c) => c.labels[LABEL.nodeId] === this.m.nodeId);
    const byUuid = new Map(mine.map((c) => [c.labels[LABEL.uuid] ?? "", c]));
    const adopted: string[] = [], missing: string[] = [];
    const records = await this.m.list();
    for (const r of records) {
      if (this.m.isBusy(r.name)) continue;
      const c = byUuid.get(r.uuid);
      byUuid.delete(r.uuid);
      if (!c || r.status === "creating") {
        const detail = r.status === "creating" ? "creation was interrupted: delete it and create it again" : `the engine container is gone: delete the container (thoc-node ct delete ${r.name}) and create it again`;
        if (!c) missing.push(r.name);
        this.cancelRestart(r.name);
        await this.saveIfChanged(r, { ...r, engineId: c?.id ?? "", status: "error", health: "", detail }, "reconcile");
        continue;
      }
      const wasUp = r.status === "running" || r.status === "unhealthy" || r.status === "restarting";
      if (this.policy.get(r.name)?.timer && c.state !== "running") continue;
      const now = await this.saveIfChanged(r, withEngine(r, c), "reconcile");
      if (c.state === "running") this.running(now, c);
      else if (wasUp) await this.exited(now, c);
    }
    const names = new Set(records.map((r) => r.name));
    for (const c of byUuid.values()) {
      const r = this.adoptable(c);
      if (!r || names.has(r.name)) continue;
      await this.m.save(r, "reconcile");
      if (c.state === "running") this.running(r, c);
      adopted.push(r.name);
    }
    if (adopted.length || missing.length) this.m.o.log?.info({ adopted, missing }, "reconciled containers with the engine");
    return { adopted, missing };
  }

  /** A record rebuilt from an engine container's labels (the spec is one of them), or undefined when they do not hold one. */
  private adoptable(c: EngineContainer): ContainerRecord | undefined {
    try {
      const spec = validateContainerSpec(JSON.parse(c.labels[LABEL.spec] ?? "") as Parameters<typeof validateContainerSpec>[0]);
      const base: ContainerRecord = {
        name: spec.name, uuid: c.labels[LABEL.uuid] ?? "", engineId: c.id, spec, status: "unknown", health: "", detail: `adopted from the engine (its record was lost)${spec.gpuDeviceIds.length ? `; its GPUs (${spec.gpuDeviceIds.join(", ")}) are not in the node's ledger until it is created again` : ""}`,
        desiredState: c.state === "running" ? "running" : "stopped", node: this.m.o.node, createdAt: c.startedAtMs || this.m.clock.now(), startedAt: 0,
        exitCode: 0, restartCount: 0, ports: [], gpus: [], imageId: c.imageId,
      };
      return withEngine(base, c);
    } catch (err) {
      this.m.o.log?.warn({ err: (err as Error).message, id: c.id, name: c.name }, "an engine container labelled as this node's has no readable spec: left alone");
      return undefined;
    }
  }
}
