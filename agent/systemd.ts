/**
 * What the agent tells systemd (Type=notify) and when: STATUS lines as it
 * starts, READY=1 once /readyz would answer 200 (every subsystem up, not
 * merely start() returned: a node joining a cluster is not ready until it has
 * the ring), WATCHDOG=1 keep-alives from the event loop, STOPPING=1 when
 * shutdown begins. systemctl status shows the latest STATUS.
 *
 * The keep-alives are timers on the event loop on purpose: a loop blocked by
 * a runaway computation or a synchronous call stops them, and systemd (after
 * WatchdogSec) kills and restarts the agent. A thread would keep pinging for
 * a process that no longer serves anything.
 *
 * Before READY, with a watchdog, each keep-alive also extends the start
 * timeout (EXTEND_TIMEOUT_USEC by one watchdog period): the start may take as
 * long as it needs (a large store to open, seeds not answering yet; the agent
 * retries those itself, so a restart would add nothing), but only while the
 * loop runs. Without a watchdog, TimeoutStartSec= bounds the start as usual.
 *
 * Without NOTIFY_SOCKET (a shell, the tests) none of this exists.
 */
import { realClock, type Clock, type Logger, type SubsystemHealth, type Timer } from "../core/index.js";
import { encodeNotify, openNotifier, type Notifier } from "./sd-notify.js";

/** What the agent reports about itself (Agent.health(), the same as /readyz). */
export type HealthSource = () => { ready: boolean; subsystems: Record<string, SubsystemHealth> };

/** What systemd asked of this process, from its environment. */
export interface NotifyEnv {
  socket: string;
  /** Keep-alive deadline in µs (WATCHDOG_USEC), when it is meant for this process. */
  watchdogUsec?: number;
}

/**
 * Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID, and removes them from
 * env (as sd_notify's unset_environment does): a child process (QEMU helpers,
 * anything spawned) must not talk to systemd as if it were the agent.
 * WATCHDOG_PID names the process the watchdog is for; another one's (a
 * wrapper that exec'd us under a different pid) means no keep-alives here.
 */
export function notifyEnv(env: NodeJS.ProcessEnv, pid: number): NotifyEnv | undefined {
  const socket = env.NOTIFY_SOCKET;
  const usec = env.WATCHDOG_USEC, wpid = env.WATCHDOG_PID;
  delete env.NOTIFY_SOCKET;
  delete env.WATCHDOG_USEC;
  delete env.WATCHDOG_PID;
  if (!socket) return undefined;
  const n = usec !== undefined && /^\d+$/.test(usec) ? Number(usec) : 0;
  const forUs = wpid === undefined || wpid === "" || Number(wpid) === pid;
  return n > 0 && forUs ? { socket, watchdogUsec: n } : { socket };
}

export interface SystemdOptions {
  notifier: Notifier;
  log: Logger;
  watchdogUsec?: number;
  clock?: Clock;
  /** How often readiness is looked at before READY=1 (ms), and the status line refreshed after it. */
  pollMs?: { starting: number; serving: number };
}

/** A message that did not go (full queue) is tried again this much later. */
const RETRY_MS = 200;

export class Systemd {
  private readonly clock: Clock;
  private readonly poll: { starting: number; serving: number };
  private watchdog?: Timer;
  private readiness?: Timer;
  private retry?: Timer;
  /** Messages (never keep-alives) waiting for room in the receiver's queue, oldest first. */
  private readonly pending: string[] = [];
  private lastStatus = "";
  private ready = false;
  private stopped = false;
  private warned = false;

  constructor(private readonly o: SystemdOptions) {
    this.clock = o.clock ?? realClock;
    this.poll = o.pollMs ?? { starting: 250, serving: 10_000 };
  }

  /** The keep-alive period: half of systemd's deadline, as sd_watchdog_enabled(3) advises. */
  get watchdogMs(): number | undefined {
    return this.o.watchdogUsec ? Math.max(1, Math.floor(this.o.watchdogUsec / 2000)) : undefined;
  }

  /** Starts the keep-alives (nothing without a watchdog). The first goes out at once. */
  startWatchdog(): void {
    const every = this.watchdogMs;
    if (every === undefined || this.watchdog) return;
    const tick = () => {
      // Dropped when the queue is full: the next one is half a deadline away.
      this.o.notifier.send(this.ready || this.stopped ? "WATCHDOG=1" : encodeNotify({ WATCHDOG: 1, EXTEND_TIMEOUT_USEC: this.o.watchdogUsec! }));
      this.watchdog = this.clock.after(every, tick);
    };
    tick();
  }

  /** A step of the start is done: the status line says so. */
  progress(step: string): void {
    if (!this.ready && !this.stopped) this.status(`starting: ${step}`);
  }

  /**
   * After Agent.start(): READY=1 as soon as health says ready (at once if it
   * already does), then the status line follows the agent's health.
   */
  watch(health: HealthSource): void {
    const look = () => {
      if (this.stopped) return;
      const h = health();
      const line = statusLine(h);
      if (h.ready && !this.ready) {
        this.ready = true;
        this.lastStatus = line;
        this.send(encodeNotify({ READY: 1, STATUS: line }));
        this.o.log.info("told systemd: ready");
      } else {
        this.status(line);
      }
      this.readiness = this.clock.after(this.ready ? this.poll.serving : this.poll.starting, look);
    };
    look();
  }

  /** Shutdown begins: systemd shows "deactivating" and the reason, and stops expecting readiness. */
  stopping(reason: string): void {
    if (this.stopped) return;
    this.stopped = true;
    this.readiness?.cancel();
    this.lastStatus = `stopping: ${reason}`;
    this.send(encodeNotify({ STOPPING: 1, STATUS: this.lastStatus }));
  }

  /** The start failed: the last status line says why (the exit code says that it did). */
  failed(message: string): void {
    this.stopped = true;
    this.readiness?.cancel();
    this.send(encodeNotify({ STATUS: `failed to start: ${message}` }));
  }

  close(): void {
    this.watchdog?.cancel();
    this.readiness?.cancel();
    this.retry?.cancel();
    this.o.notifier.close();
  }

  private status(line: string): void {
    if (line === this.lastStatus) return;
    this.lastStatus = line;
    this.send(encodeNotify({ STATUS: line }));
  }

  /** In order: nothing overtakes a message still waiting for room. */
  private send(message: string): void {
    if (this.pending.length === 0 && this.o.notifier.send(message)) return;
    this.pending.push(message);
    if (!this.warned) {
      this.warned = true;
      this.o.log.warn("systemd's notification socket does not take messages now; retrying");
    }
    this.retry ??= this.clock.after(RETRY_MS, () => this.flush());
  }

  private flush(): void {
    this.retry = undefined;
    while (this.pending.length && this.o.notifier.send(this.pending[0]!)) this.pending.shift();
    if (this.pending.length) this.retry = this.clock.after(RETRY_MS, () => this.flush());
  }
}

/**
 * The status line for a health report: "serving (membership: 3 alive, …; …)"
 * when ready, else which parts are not up and why.
 */
export function statusLine(h: ReturnType<HealthSource>): string {
  const parts = Object.entries(h.subsystems);
  if (h.ready) {
    const details = parts.filter(([, s]) => s.detail).map(([n, s]) => `${n}: ${s.detail}`);
    return details.length ? `serving (${details.join("; ")})` : "serving";
  }
  const notUp = parts.filter(([, s]) => s.status !== "up").map(([n, s]) => `${n} ${s.status}${s.detail ? ` (${s.detail})` : ""}`);
  return `not ready: ${notUp.join("; ")}`;
}

/**
 * The link to systemd for this process, or undefined when it was not started
 * by a service manager that listens (no NOTIFY_SOCKET) or the socket cannot be
 * used (logged: under Type=notify, systemd will then time the start out).
 */
export function connectSystemd(log: Logger, env: NodeJS.ProcessEnv = process.env, pid = process.pid): Systemd | undefined {
  const e = notifyEnv(env, pid);
  if (!e) return undefined;
  try {
    const notifier = openNotifier(e.socket);
    log.info({ notifySocket: e.socket, watchdogUsec: e.watchdogUsec }, "telling systemd about readiness" + (e.watchdogUsec ? " and sending watchdog keep-alives" : ""));
    return new Systemd({ notifier, log, ...(e.watchdogUsec ? { watchdogUsec: e.watchdogUsec } : {}) });
  } catch (err) {
    log.error({ err, notifySocket: e.socket }, "cannot talk to systemd's notification socket: a Type=notify unit will time this start out");
    return undefined;
  }
}
