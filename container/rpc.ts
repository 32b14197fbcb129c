/**
 * ContainerService for this node: protobuf in, ContainerManager calls,
 * protobuf out. The scheduler wraps it to answer for the whole cluster
 * (placement, routing a call to the container's node). The three image calls
 * come from the container image store (images-rpc.ts) when the subsystem has
 * one; without, they answer unimplemented.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ThocError } from "../errors/index.js";
import type { ExecSession } from "../engine/index.js";
import { ContainerService, type ContainerRuntimeInfoSchema, type ExecInput, type ExecOutputSchema } from "../proto/index.js";
import type { ImplOf } from "../rpc/index.js";
import type { ContainerManager } from "./manager.js";
import { containerToPb, statsToPb } from "./pb.js";
import { createOptionsFromPb, specFromPb } from "./spec.js";

type Impl = ImplOf<typeof ContainerService>;
export type ContainerImageHandlers = Pick<Impl, "importContainerImage" | "listContainerImages" | "deleteContainerImage">;

export interface ContainerServiceOptions {
  /** This node's id (Container.node_id, and CreateContainerRequest.node may name it). */
  nodeId: string;
  /** The runtime URI the agent was configured with (reported when the engine does not answer). */
  uri: string;
  images?: ContainerImageHandlers;
}

const need = (v: string, what: string) => {
  if (!v) throw new ThocError("invalid_argument", `${what}: missing`);
  return v;
};

const noImages = (): ContainerImageHandlers => {
  const why = () => new ThocError("unimplemented", "container images are not served by this agent (no container image store)");
  return {
    async importContainerImage() { throw why(); },
    async listContainerImages() { throw why(); },
    async deleteContainerImage() { throw why(); },
  };
};

export function containerService(m: ContainerManager, o: ContainerServiceOptions): Impl {
  const pb = (r: Parameters<typeof containerToPb>[0]) => containerToPb(r, o.nodeId);
  return {
    async createContainer(req) {
      if (req.node && req.node !== m.o.node && req.node !== o.nodeId) {
        throw new ThocError("failed_precondition", `this node is ${m.o.node}, not ${req.node}: send the create to that node or let the scheduler place it`, { node: req.node });
      }
      const spec = m.validate(specFromPb(req.spec));
      return { container: pb(await m.create(spec, createOptionsFromPb(req))) };
    },
    async listContainers(req) {
      const all = await m.list();
      const here = !req.node || req.node === m.o.node || req.node === o.nodeId;
      return { containers: here ? all.map(pb) : [] };
    },
    async getContainer(req) { return { container: pb(await m.get(need(req.name, "name"))) }; },
    async startContainer(req) { return { container: pb(await m.start(need(req.name, "name"))) }; },
    async stopContainer(req) { return { container: pb(await m.stop(need(req.name, "name"), { timeoutMs: req.timeoutMs })) }; },
    async restartContainer(req) { return { container: pb(await m.restart(need(req.name, "name"), { timeoutMs: req.timeoutMs })) }; },
    async deleteContainer(req) {
      return { name: req.name, volumesRemoved: await m.delete(need(req.name, "name"), { keepVolumes: req.keepVolumes }) };
    },
    async *containerLogs(req, ctx) {
      const logs = m.logs(need(req.name, "name"), { follow: req.follow, ...(req.tail ? { tail: req.tail } : {}), timestamps: req.timestamps, signal: ctx.signal });
      for await (const c of logs) yield { data: c.data, stream: c.stream };
    },
    exec: (reqs, ctx) => execStream(m, reqs, ctx.signal),
    async containerStats(req) { return statsToPb(req.name, await m.stats(need(req.name, "name"))); },
    async getContainerRuntime() { return runtimeInfo(m, o.uri); },
    ...(o.images ?? noImages()),
  };
}

/** What the engine is, asked now; an engine that does not answer is reported, not thrown. */
export async function runtimeInfo(m: ContainerManager, uri: string): Promise<MessageInitShape<typeof ContainerRuntimeInfoSchema>> {
  try {
    const i = await m.runtime();
    return {
      uri: i.uri, engine: i.engine, version: i.version, apiVersion: i.apiVersion, available: true, detail: "",
      cgroupManager: i.cgroupManager, cgroupVersion: i.cgroupVersion, ociRuntime: i.ociRuntime, gpus: i.gpus, portMapping: i.portMapping,
    };
  } catch (err) {
    return { uri, available: false, detail: ThocError.from(err).message };
  }
}

type Out = MessageInitShape<typeof ExecOutputSchema>;

/**
 * The exec stream: the first message starts the process, later ones carry
 * stdin, its end and terminal resizes; output streams back, and the last
 * message carries the exit code. A client that goes away kills the process.
 */
async function* execStream(m: ContainerManager, reqs: AsyncIterable<ExecInput>, signal: AbortSignal): AsyncIterable<Out> {
  const it = reqs[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done) return;
  const st = first.value.start;
  if (!st) throw new ThocError("invalid_argument", "exec: the first message must carry start (name, command)");
  if (!st.command.length) throw new ThocError("invalid_argument", "start.command: missing: give the command to run");
  const s = await m.exec(need(st.name, "start.name"), {
    command: st.command, tty: st.tty, stdin: st.stdin, env: { ...st.env }, ...(st.workdir ? { workdir: st.workdir } : {}),
    ...(st.rows ? { rows: st.rows } : {}), ...(st.cols ? { cols: st.cols } : {}),
  });
  const queue: Out[] = [];
  let wake: (() => void) | undefined;
  let exitCode: number | undefined;
  s.onOutput((stream, data) => { queue.push({ data, stream }); wake?.(); });
  const onAbort = () => s.kill();
  signal.addEventListener("abort", onAbort, { once: true });
  void pumpInput(s, first.value, it);
  void s.exit.then((code) => { exitCode = code; wake?.(); }, () => { exitCode = -1; wake?.(); });
  try {
    for (;;) {
      while (queue.length) yield queue.shift()!;
      if (exitCode !== undefined) break;
      await new Promise<void>((r) => { wake = r; });
      wake = undefined;
    }
    yield { exited: true, exitCode };
  } finally {
    signal.removeEventListener("abort", onAbort);
    if (exitCode === undefined) s.kill();
  }
}

async function pumpInput(s: ExecSession, first: ExecInput, it: AsyncIterator<ExecInput>): Promise<void> {
  const take = async (msg: ExecInput) => {
    if (msg.stdin.length) s.stdin?.write(Buffer.from(msg.stdin));
    if (msg.rows && msg.cols) await s.resize(msg.rows, msg.cols).catch(() => {});
    if (msg.stdinEof) s.stdin?.end();
  };
  try {
    await take({ ...first, rows: 0, cols: 0 });
    for (let n = await it.next(); !n.done; n = await it.next()) await take(n.value);
  } catch { /* the client went away: the abort kills the process */ }
  // A client that half-closes its side has no more input: the process sees EOF.
  if (s.stdin && !s.stdin.writableEnded) s.stdin.end();
}

/** The service of an agent whose containers are off (container.enabled: off): every call says so. */
export function disabledContainerService(why: string): Impl {
  const fail = () => new ThocError("failed_precondition", why);
  const impl: Record<string, unknown> = {};
  for (const method of ContainerService.methods) {
    impl[method.localName] = method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming"
      ? async function* () { throw fail(); }
      : async () => { throw fail(); };
  }
  return impl as Impl;
}
