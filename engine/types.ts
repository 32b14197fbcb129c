/**
 * The container engine seam: what the container subsystem needs from a
 * Docker-API engine (podman's Docker-compatible service or Docker Engine).
 * Two implementations: DockerEngine (docker-engine.ts, through dockerode on
 * the engine's socket) and MemoryEngine (memory.ts, in-process, for unit
 * tests of the subsystem's logic). Errors are ThocErrors: not_found (no such
 * container/image), already_exists (name taken), failed_precondition
 * (e.g. exec into a stopped container), resource_exhausted (host port in
 * use), unavailable (engine unreachable), invalid_argument.
 */
import type { Readable, Writable } from "node:stream";

export interface EngineInfo {
  /** Where the engine was reached, e.g. unix:///run/podman/podman.sock. */
  uri: string;
  /** "podman" | "docker". */
  engine: string;
  version: string;
  apiVersion: string;
  cgroupManager: string;
  /** "1" | "2" | "hybrid". */
  cgroupVersion: string;
  ociRuntime: string;
  /** Whether GPUs can be given (CDI specs present / nvidia runtime). */
  gpus: boolean;
  portMapping: boolean;
}

/** Who answers at the URI, from a cheap ping (no package or storage walk). */
export interface EngineIdentity { uri: string; engine: string; version: string; apiVersion: string }

export interface EnginePort { containerPort: number; hostPort: number; protocol: "tcp" | "udp"; hostIp: string }
export interface EngineMount { /** Absolute host path (the subsystem resolves named volumes to a dir). */ source: string; target: string; readOnly: boolean }

export interface EngineCreate {
  /** The engine's container name (the subsystem uses thoc-<name>). */
  name: string;
  image: string;
  command?: string[];
  env: Record<string, string>;
  labels: Record<string, string>;
  ports: EnginePort[];
  mounts: EngineMount[];
  /** 0: no limit. */
  cpus: number;
  memoryBytes: number;
  /** Device paths or CDI names (nvidia.com/gpu=0). */
  devices: string[];
  tty?: boolean;
}

export type EngineState = "created" | "running" | "paused" | "restarting" | "exited" | "dead" | "removing" | "unknown";

export interface EngineContainer {
  id: string;
  name: string;
  image: string;
  imageId: string;
  state: EngineState;
  exitCode: number;
  startedAtMs: number;
  finishedAtMs: number;
  /** Ports as bound (host port chosen when 0 was asked). */
  ports: EnginePort[];
  labels: Record<string, string>;
}

export interface EngineStats {
  cpuSeconds: number;
  memoryBytes: number;
  memoryLimitBytes: number;
  netRxBytes: number;
  netTxBytes: number;
  blockReadBytes: number;
  blockWriteBytes: number;
  pids: number;
  timestampMs: number;
}

export interface EngineEvent { id: string; name: string; action: string; exitCode?: number; timeMs: number }

export interface ExecOptions { command: string[]; tty: boolean; stdin: boolean; env?: Record<string, string>; workdir?: string; rows?: number; cols?: number }

/** A running exec: write stdin, read output, resize, wait for the exit code. */
export interface ExecSession {
  stdin: Writable | undefined;
  /** Demultiplexed output; with a TTY everything comes as "stdout". */
  onOutput(fn: (stream: "stdout" | "stderr", data: Buffer) => void): void;
  resize(rows: number, cols: number): Promise<void>;
  /** Resolves with the exit code once the process ended and all output was delivered. */
  exit: Promise<number>;
  kill(): void;
}

export interface LogOptions { follow: boolean; tail?: number; timestamps?: boolean; signal?: AbortSignal }

export interface ContainerEngine {
  /**
   * Reachability and who answers, cheaply: the agent's supervision asks this,
   * never info(), because podman's /version and /info run conmon, runc and
   * dpkg-query each time (seconds of CPU on a small host).
   */
  ping(): Promise<EngineIdentity>;
  info(): Promise<EngineInfo>;
  /** Loads a docker-save / OCI archive; returns the RepoTags / refs it holds. */
  loadImage(archive: Readable): Promise<string[]>;
  /** Whether an image reference is present locally; its id if so. */
  imageId(ref: string): Promise<string | undefined>;
  /** Pulls from a registry; auth never logged. */
  pullImage(ref: string, auth?: { username: string; password: string }): Promise<void>;
  removeImage(ref: string): Promise<void>;
  create(c: EngineCreate): Promise<string>;
  start(id: string): Promise<void>;
  /** SIGTERM then SIGKILL after timeoutMs. */
  stop(id: string, timeoutMs: number): Promise<void>;
  restart(id: string, timeoutMs: number): Promise<void>;
  remove(id: string, opts: { force: boolean }): Promise<void>;
  inspect(id: string): Promise<EngineContainer | undefined>;
  /** Containers carrying a label (the subsystem labels its own: thoc.managed=1). */
  list(label: string): Promise<EngineContainer[]>;
  logs(id: string, opts: LogOptions): AsyncIterable<{ stream: "stdout" | "stderr"; data: Buffer }>;
  exec(id: string, opts: ExecOptions): Promise<ExecSession>;
  stats(id: string): Promise<EngineStats>;
  /** Container events (start, die, oom, ...) until the signal aborts. */
  events(signal: AbortSignal): AsyncIterable<EngineEvent>;
  close(): Promise<void>;
}
