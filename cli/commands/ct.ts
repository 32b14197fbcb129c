/**
 * `thoc-node ct ...`: containers (docs/containers.md). Every subcommand is one
 * ContainerService call; any agent answers for the whole cluster (a create is
 * placed by the scheduler leader, a call naming a container goes to its node).
 * Flags are checked here before any call (ct-args.ts); `ct exec` is a bidi
 * stream whose exit code becomes the CLI's (ct-session.ts).
 */
import { randomUUID } from "node:crypto";
import { stat } from "node:fs/promises";
import { Option, type Command } from "commander";
import type { ContainerService, Container, ContainerImage } from "../../proto/index.js";
import { ThocError } from "../../errors/index.js";
import type { Client } from "../../rpc/index.js";
import { agentAddress, connect, globalOpts, type GlobalOpts } from "../connect.js";
import { bytes, fail, outputFormat, outputOptions, printJson, table, type OutputFormat } from "../output.js";
import { Progress } from "../progress.js";
import { fileChunks, sha256File } from "../transfer.js";
import { buildContainerSpec, invalid, parseEnv, whole, type CreateFlags } from "./ct-args.js";
import { execSession, followLogs } from "./ct-session.js";

type CtClient = Client<typeof ContainerService.method>;
/** Create may pull an image and stop waits out the stop timeout: at least this long, whatever --timeout says. */
const SLOW_MS = 600_000;
const slow = (g: GlobalOpts) => ({ timeoutMs: Math.max(Number(g.timeout ?? 10_000), SLOW_MS) });
/** A repeatable option's values (no default: commander would print "(default: [])" in the help). */
const collect = (v: string, prev: string[] | undefined) => [...(prev ?? []), v];
const iso = (ms: bigint) => (ms ? new Date(Number(ms)).toISOString() : undefined);

export function portsOf(c: Container): string {
  const bound = c.ports.length ? c.ports : c.spec?.ports ?? [];
  return bound.map((p) => `${p.hostIp ? `${p.hostIp.includes(":") ? `[${p.hostIp}]` : p.hostIp}:` : ""}${p.hostPort || "?"}->${p.containerPort}/${p.protocol || "tcp"}`).join(",") || "-";
}

export function ctJson(c: Container | undefined): unknown {
  if (!c) return null;
  const s = c.spec;
  return {
    name: c.name, id: c.id || undefined, status: c.status, health: c.health || undefined, node: c.node, nodeId: c.nodeId || undefined,
    kind: s?.kind || "app", image: s?.image, imageId: c.imageId || undefined, command: s?.command.length ? s.command : undefined,
    ports: (c.ports.length ? c.ports : s?.ports ?? []).map((p) => ({ containerPort: p.containerPort, hostPort: p.hostPort, protocol: p.protocol || "tcp", hostIp: p.hostIp || undefined })),
    volumes: s?.volumes.map((v) => ({ name: v.name, containerPath: v.containerPath, readOnly: v.readOnly })),
    env: s?.env, labels: s && Object.keys(s.labels).length ? s.labels : undefined,
    cpus: s?.cpus || undefined, memoryMB: s?.memoryMb || undefined, gpus: c.gpuDevices.length ? c.gpuDevices : undefined,
    healthCheck: s?.healthCheckPath ? { path: s.healthCheckPath, intervalS: s.healthIntervalS || undefined, retries: s.healthRetries || undefined } : undefined,
    restartPolicy: s?.restartPolicy || undefined, restartCount: c.restartCount, exitCode: c.status === "exited" ? c.exitCode : undefined,
    model: s?.modelId || s?.modelPath ? { id: s.modelId || undefined, path: s.modelPath || undefined } : undefined,
    registryAuth: c.registryAuthSet ? { username: s?.registryAuth?.username, passwordSet: true } : undefined,
    group: c.group || undefined, desiredState: c.desiredState || undefined,
    createdAt: iso(c.createdAtMs), startedAt: iso(c.startedAtMs), detail: c.detail || undefined,
  };
}

const HEADER = ["NAME", "NODE", "STATUS", "IMAGE", "PORTS", "CPUS", "MEMORY", "GPU"];
const WIDE = ["KIND", "HEALTH", "RESTARTS", "ID", "GROUP", "CREATED"];

function row(c: Container, format: OutputFormat): (string | number)[] {
  const s = c.spec;
  const r: (string | number)[] = [c.name, c.node || "-", c.status, s?.image ?? "", portsOf(c), s?.cpus || "-", s?.memoryMb ? `${s.memoryMb} MiB` : "-", c.gpuDevices.join(",") || "-"];
  if (format !== "wide") return r;
  return [...r, s?.kind || "app", c.health || "-", c.restartCount, c.id ? c.id.slice(0, 12) : "-", c.group || "-", iso(c.createdAtMs) ?? "-"];
}

function printContainer(c: Container | undefined, json?: boolean): void {
  if (json) return printJson(ctJson(c));
  if (!c) return;
  const j = ctJson(c) as Record<string, unknown>;
  console.log(table(Object.entries(j).filter(([, x]) => x !== undefined).map(([k, x]) => [k, typeof x === "object" ? JSON.stringify(x) : String(x)])));
}

export function ctImageJson(i: ContainerImage | undefined): unknown {
  if (!i) return null;
  return { name: i.name, sha256: i.sha256, size: i.size, importedAt: iso(i.importedAtMs), refs: i.refs };
}

export function registerCt(program: Command): void {
  const ct = program.command("ct").description("containers of the cluster (podman or Docker on each node): any agent answers for every container");
  const run = (fn: (g: GlobalOpts, client: CtClient, ...a: never[]) => Promise<void>) =>
    async (...args: unknown[]) => {
      const cmd = args[args.length - 1] as Command;
      const g = globalOpts(cmd);
      const client = await connect((p) => p.ContainerService, g);
      try { await (fn as (...x: unknown[]) => Promise<void>)(g, client, ...args.slice(0, -1)); } catch (err) { fail(err, agentAddress(g)); } finally { client.close(); }
    };
  // Checked before connecting: a bad flag never costs a call.
  const checked = <A extends unknown[]>(check: (...a: A) => void, fn: (g: GlobalOpts, client: CtClient, ...a: A) => Promise<void>) => {
    const go = run(fn as never);
    return async (...args: unknown[]) => {
      try { check(...(args.slice(0, -1) as A)); } catch (err) { fail(err); }
      return go(...args);
    };
  };

  ct.command("create <name> [command...]").description("create and start a container; the image's command is replaced by what follows --")
    .option("--image <ref>", "an imported image (ct image list) or a registry reference, e.g. docker.io/library/nginx:1.27")
    .option("-p, --port <map>", "publish a port: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp], or CONTAINER_PORT (repeatable)", collect)
    .option("-e, --env <KEY=VALUE>", "an environment variable (repeatable)", collect)
    .option("-v, --volume <NAME:/path[:ro]>", "a named volume kept on the node, mounted at /path (repeatable)", collect)
    .option("--gpu <id>", "a GPU of the node's inventory, e.g. GPU-0 (repeatable; thoc-node vm gpus)", collect)
    .option("--label <KEY=VALUE>", "a label kept on the container (repeatable)", collect)
    .option("--health <path>", "HTTP path polled on the first mapped port, e.g. /healthz")
    .option("--health-interval <s>", "seconds between health checks (default 5)").option("--health-retries <n>", "failed checks before unhealthy (default 3)")
    .addOption(new Option("--kind <kind>", "app, or inference (with --model-id/--model-path)").choices(["app", "inference"]))
    .option("--model-id <id>", "inference: the model, passed as THOC_MODEL_ID").option("--model-path <path>", "inference: the model's path in the container, passed as THOC_MODEL_PATH")
    .option("--cpus <n>", "CPUs reserved and the limit, e.g. 0.5 (default: none)").option("--memory <mib>", "memory reserved and the limit in MiB (default: none)")
    .addOption(new Option("--restart <policy>", "when the node restarts it: no, on-failure (default) or always").choices(["no", "on-failure", "always"]))
    .option("--node <node>", "run on this node (name or id); default: the scheduler leader picks one")
    .option("--group <name>", "anti-affinity group: no two workloads (VMs or containers) of the group on one node")
    .option("--no-start", "create without starting")
    .option("--registry-user <user>", "registry user for a private image").option("--registry-password-file <file>", "file holding the registry password (- for stdin); never stored")
    .option("--json", "print one JSON document")
    .addHelpText("after", "\nExample:\n  thoc-node ct create web --image bb --port 8080:80 -- httpd -f -p 80")
    .action(async (name: string, command: string[], o: CreateFlags, cmd: Command) => {
      let spec: ReturnType<typeof buildContainerSpec>;
      // Before connecting: a bad flag never costs a call (and the password file is read once).
      try { spec = buildContainerSpec(name, o, command); } catch (err) { fail(err); }
      return run(async (g, client) => {
        // One id for every try: a retry after a lost answer or a leader change gets the same container, never a second one.
        const req = { spec, noStart: o.start === false, node: o.node ?? "", group: o.group ?? "", requestId: randomUUID() };
        let c: Container | undefined;
        for (let attempt = 0; ; attempt++) {
          try { ({ container: c } = await client.createContainer(req, slow(g))); break; } catch (err) {
            if (!(err instanceof ThocError) || err.code !== "unavailable" || attempt >= 2) throw err;
            await new Promise((r) => setTimeout(r, 1000));
          }
        }
        if (o.json) printJson(ctJson(c)); else console.log(`container ${c?.name} ${c?.status} on ${c?.node}${c?.ports.length ? ` (${portsOf(c)})` : ""}`);
      })(cmd);
    });

  outputOptions(ct.command("list").description("every container of the cluster (--node: one node's)").option("--node <node>", "only this node's containers (name or id)"))
    .action(run(async (_g, client, o: { output?: string; json?: boolean; node?: string }) => {
      const format = outputFormat(o);
      const { containers } = await client.listContainers({ node: o.node ?? "" });
      if (format === "json") return printJson(containers.map(ctJson));
      console.log(table([[...HEADER, ...(format === "wide" ? WIDE : [])], ...containers.map((c) => row(c, format))]));
    }));

  ct.command("show <name>").description("one container").option("--json", "print one JSON document")
    .action(run(async (_g, client, name: string, o: { json?: boolean }) => printContainer((await client.getContainer({ name })).container, o.json)));

  ct.command("start <name>").description("start a stopped container").option("--json", "print one JSON document")
    .action(run(async (g, client, name: string, o: { json?: boolean }) => {
      const { container: c } = await client.startContainer({ name }, slow(g));
      if (o.json) printJson(ctJson(c)); else console.log(`container ${name} ${c?.status}`);
    }));

  for (const [verb, desc] of [["stop", "SIGTERM, then SIGKILL after the timeout"], ["restart", "stop (as ct stop), then start"]] as const) {
    ct.command(`${verb} <name>`).description(desc)
      .option("--timeout-ms <ms>", "wait after SIGTERM before SIGKILL (default: the node's container.stopTimeout)")
      .option("--json", "print one JSON document")
      .action(checked((_n: string, o: { timeoutMs?: string }) => { whole(o.timeoutMs, "--timeout-ms"); }, async (g, client, name: string, o: { timeoutMs?: string; json?: boolean }) => {
        const req = { name, timeoutMs: whole(o.timeoutMs, "--timeout-ms") ?? 0 };
        const { container: c } = verb === "stop" ? await client.stopContainer(req, slow(g)) : await client.restartContainer(req, slow(g));
        if (o.json) printJson(ctJson(c)); else console.log(`container ${name} ${c?.status}`);
      }));
  }

  ct.command("delete <name>").description("delete a container with its named volumes (unless --keep-volumes) and GPU allocations")
    .option("--keep-volumes", "keep its named volumes on the node").option("--force", "the container's node is down: remove its record now; the node deletes the container when it comes back")
    .option("--json", "print one JSON document")
    .action(run(async (g, client, name: string, o: { keepVolumes?: boolean; force?: boolean; json?: boolean }) => {
      const r = await client.deleteContainer({ name, keepVolumes: Boolean(o.keepVolumes), force: Boolean(o.force) }, slow(g));
      if (o.json) return printJson({ name: r.name || name, volumesRemoved: r.volumesRemoved });
      console.log(`container ${name} deleted${r.volumesRemoved.length ? ` (volumes removed: ${r.volumesRemoved.join(", ")})` : ""}`);
    }));

  ct.command("logs <name>").description("the container's stdout and stderr").option("-f, --follow", "keep printing new output")
    .option("--tail <lines>", "only the last LINES lines").option("-t, --timestamps", "prefix each line with its time")
    .action(checked((_n: string, o: { tail?: string }) => { whole(o.tail, "--tail"); }, async (_g, client, name: string, o: { follow?: boolean; tail?: string; timestamps?: boolean }) => {
      await followLogs(client, { name, follow: Boolean(o.follow), tail: whole(o.tail, "--tail") ?? 0, timestamps: Boolean(o.timestamps) });
    }));

  ct.command("exec <name> [command...]").description("run a command in a running container; its exit code is this command's (thoc-node ct exec web -it -- sh)")
    .option("-i, --interactive", "send stdin to the process").option("-t, --tty", "give it a terminal (raw mode here, resized with this window)")
    .option("-e, --env <KEY=VALUE>", "an environment variable for the process (repeatable)", collect)
    .option("-w, --workdir <dir>", "working directory in the container")
    .action(checked((_n: string, command: string[], o: { env?: string[]; workdir?: string }) => {
      if (!command.length) invalid("give the command after --, e.g. thoc-node ct exec web -- ls -l /");
      parseEnv(o.env ?? []);
      if (o.workdir !== undefined && !o.workdir.startsWith("/")) invalid(`--workdir ${o.workdir}: give an absolute path`);
    }, async (_g, client, name: string, command: string[], o: { interactive?: boolean; tty?: boolean; env?: string[]; workdir?: string }) => {
      const code = await execSession(client, { name, command, tty: Boolean(o.tty), interactive: Boolean(o.interactive), env: parseEnv(o.env ?? []), workdir: o.workdir ?? "" });
      process.exitCode = code;
    }));

  ct.command("stats <name>").description("CPU, memory, network, block I/O and process figures").option("--json", "print one JSON document")
    .action(run(async (_g, client, name: string, o: { json?: boolean }) => {
      const s = await client.containerStats({ name });
      const j = { name: s.name || name, cpuPercent: Number(s.cpuPercent.toFixed(2)), cpuSeconds: s.cpuSeconds, memoryBytes: s.memoryBytes, memoryLimitBytes: s.memoryLimitBytes,
        netRxBytes: s.netRxBytes, netTxBytes: s.netTxBytes, blockReadBytes: s.blockReadBytes, blockWriteBytes: s.blockWriteBytes, pids: s.pids, at: iso(s.timestampMs) };
      if (o.json) return printJson(j);
      console.log(table([["cpu", `${s.cpuSeconds.toFixed(2)} s (${s.cpuPercent.toFixed(1)} %)`],
        ["memory", `${bytes(s.memoryBytes)}${s.memoryLimitBytes ? ` of ${bytes(s.memoryLimitBytes)}` : ""}`], ["net rx/tx", `${bytes(s.netRxBytes)} / ${bytes(s.netTxBytes)}`],
        ["block read/write", `${bytes(s.blockReadBytes)} / ${bytes(s.blockWriteBytes)}`], ["pids", s.pids]]));
    }));

  ct.command("runtime").description("this node's container engine: podman or Docker, version, cgroups, OCI runtime, GPUs").option("--json", "print one JSON document")
    .action(run(async (_g, client, o: { json?: boolean }) => {
      const { $typeName: _t, ...r } = await client.getContainerRuntime({});
      if (o.json) return printJson(r);
      if (!r.available) return console.log(table([["available", "no"], ["uri", r.uri || "-"], ["detail", r.detail]]));
      console.log(table([["engine", `${r.engine} ${r.version} (API ${r.apiVersion})`], ["uri", r.uri], ["cgroups", `${r.cgroupManager} v${r.cgroupVersion}`],
        ["oci runtime", r.ociRuntime], ["port mapping", r.portMapping ? "yes" : "no"], ["gpus", r.gpus ? "yes (CDI)" : "no"], ...(r.detail ? [["detail", r.detail]] : [])]));
    }));

  registerCtImage(ct, run);
}

type Runner = (fn: (g: GlobalOpts, client: CtClient, ...a: never[]) => Promise<void>) => (...args: unknown[]) => Promise<void>;

function registerCtImage(ct: Command, run: Runner): void {
  const image = ct.command("image").description("container images without a registry: archives kept in the cluster's object store");
  image.command("import <name> <file>").description("import a docker save / podman save / OCI archive as NAME[:TAG] (ct create --image NAME)")
    .option("--replace", "replace an image of that name").option("--no-progress", "no progress on stderr (by default a bar on a terminal, else a line every few seconds)")
    .option("--json", "print one JSON document")
    .action(run(async (_g, client, name: string, file: string, o: { replace?: boolean; progress: boolean; json?: boolean }) => {
      const st = await stat(file).catch(() => undefined);
      if (!st?.isFile()) invalid(`${file}: no such file`);
      const hashing = o.progress ? new Progress(`checksum ${name}`, st.size) : undefined;
      const sum = await sha256File(file, hashing);
      hashing?.finish();
      const sending = o.progress ? new Progress(`upload ${name}`, st.size) : undefined;
      async function* chunks() {
        yield { name, size: BigInt(st!.size), sha256: sum, replace: Boolean(o.replace), data: new Uint8Array() };
        for await (const c of fileChunks(file, sending)) yield { data: c };
        sending?.finish();
      }
      const img = await client.importContainerImage(chunks(), { timeoutMs: 3_600_000 });
      if (o.json) printJson(ctImageJson(img)); else console.log(`container image ${img.name} imported (${bytes(img.size)} sha256:${img.sha256.slice(0, 12)}${img.refs.length ? `, holds ${img.refs.join(", ")}` : ""})`);
    }));

  outputOptions(image.command("list").description("imported container images"))
    .action(run(async (_g, client, o: { output?: string; json?: boolean }) => {
      const format = outputFormat(o);
      const { images } = await client.listContainerImages({});
      if (format === "json") return printJson(images.map(ctImageJson));
      const wide = format === "wide";
      console.log(table([["NAME", "SIZE", "SHA256", "IMPORTED", ...(wide ? ["REFS"] : [])],
        ...images.map((i) => [i.name, bytes(i.size), i.sha256.slice(0, wide ? 64 : 16), iso(i.importedAtMs) ?? "-", ...(wide ? [i.refs.join(",") || "-"] : [])])]));
    }));

  image.command("delete <name>").description("delete an imported image (nodes keep a loaded copy while containers use it)")
    .action(run(async (_g, client, name: string) => { await client.deleteContainerImage({ name }); console.log(`container image ${name} deleted`); }));
}
