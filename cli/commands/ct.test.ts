/**
 * `thoc-node ct` through the real binary against a gRPC server on a port-0
 * listener implementing ContainerService: the requests the CLI sends (the
 * spec from the flags and the command after --), its output, bad flags
 * refused before any call, `ct exec`'s exit code and stdin, `ct logs -f`
 * streaming, and `ct image import` streaming a file with its SHA-256 into
 * the real image store over a real (single-node) object store.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { ContainerSchema, ContainerService, type Container, type CreateContainerRequest, type ExecStart } from "../../proto/index.js";
import { RpcServer, type ImplOf } from "../../rpc/index.js";
import { ThocError } from "../../errors/index.js";
import { ContainerImageStore, containerImageHandlers } from "../../container/index.js";
import { openDevStore, type DevStore } from "../../objectstore/testutil.js";
import { CLI, REPO_ROOT } from "../../test/harness.js";

let dir = "";
let server: RpcServer;
let addr = "";
let dev: DevStore;
const calls: { method: string; req: unknown }[] = [];
const containers = new Map<string, Container>();
/** Resolved by a test to let `ct logs -f` see its second line. */
let releaseLogs: () => void = () => {};
let logsCancelled = false;

function impl(store: ContainerImageStore): ImplOf<typeof ContainerService> {
  const seen = (method: string, req: unknown) => { calls.push({ method, req }); };
  const get = (name: string) => {
    const c = containers.get(name);
    if (!c) throw new ThocError("not_found", `container ${name} not found (thoc-node ct list)`);
    return c;
  };
  return {
    async createContainer(req: CreateContainerRequest) {
      seen("create", req);
      const s = req.spec!;
      const c = create(ContainerSchema, {
        name: s.name, id: "abcdef0123456789", status: req.noStart ? "stopped" : "running", spec: s, node: "n1", group: req.group, createdAtMs: 1_700_000_000_000n,
        ports: s.ports.map((p) => ({ containerPort: p.containerPort, hostPort: p.hostPort || 32768, protocol: p.protocol, hostIp: p.hostIp })),
      });
      containers.set(s.name, c);
      return { container: c };
    },
    async listContainers(req) { seen("list", req); return { containers: [...containers.values()] }; },
    async getContainer(req) { return { container: get(req.name) }; },
    async startContainer(req) { const c = get(req.name); c.status = "running"; return { container: c }; },
    async stopContainer(req) { seen("stop", req); const c = get(req.name); c.status = "stopped"; return { container: c }; },
    async restartContainer(req) { seen("restart", req); return { container: get(req.name) }; },
    async deleteContainer(req) {
      seen("delete", req);
      const c = get(req.name);
      containers.delete(req.name);
      return { name: req.name, volumesRemoved: req.keepVolumes ? [] : c.spec?.volumes.map((v) => v.name) ?? [] };
    },
    async *containerLogs(req, ctx) {
      seen("logs", req);
      get(req.name);
      yield { data: Buffer.from("out 1\n"), stream: "stdout" };
      yield { data: Buffer.from("err 1\n"), stream: "stderr" };
      if (!req.follow) return;
      ctx.signal.addEventListener("abort", () => { logsCancelled = true; });
      await new Promise<void>((r) => { releaseLogs = r; });
      yield { data: Buffer.from("out 2\n"), stream: "stdout" };
    },
    async *exec(reqs) {
      const it = reqs[Symbol.asyncIterator]();
      const start = (await it.next()).value?.start as ExecStart;
      seen("exec", start);
      get(start.name);
      const [cmd, ...args] = start.command;
      if (cmd === "exit") { yield { data: Buffer.from(`bye ${args[0]}\n`), stream: "stderr" }; yield { exited: true, exitCode: Number(args[0]) }; return; }
      if (cmd === "cat") {
        // Echoes stdin until its end; with a TTY, until a "q" (a terminal sends no end).
        for (let r = await it.next(); !r.done; r = await it.next()) {
          if (r.value.rows) yield { data: Buffer.from(`[resize ${r.value.rows}x${r.value.cols}]`), stream: "stdout" };
          if (r.value.stdin.length) yield { data: Buffer.from(Buffer.from(r.value.stdin).toString().toUpperCase()), stream: "stdout" };
          if (r.value.stdinEof || (start.tty && Buffer.from(r.value.stdin).includes(0x71))) break;
        }
        yield { data: Buffer.from(`\n[tty=${start.tty} size=${start.rows}x${start.cols}]\n`), stream: "stdout" };
        yield { exited: true, exitCode: start.tty ? 7 : 0 };
        return;
      }
      throw new ThocError("failed_precondition", `container ${start.name} is not running`);
    },
    async containerStats(req) {
      return { name: req.name, cpuPercent: 12.345, cpuSeconds: 3.5, memoryBytes: 10n << 20n, memoryLimitBytes: 256n << 20n, netRxBytes: 2048n, netTxBytes: 1024n, blockReadBytes: 0n, blockWriteBytes: 4096n, pids: 3, timestampMs: 1_700_000_000_000n };
    },
    ...containerImageHandlers(store),
    async getContainerRuntime() {
      return { uri: "unix:///run/podman/podman.sock", engine: "podman", version: "4.3.1", apiVersion: "1.41", available: true, cgroupManager: "cgroupfs", cgroupVersion: "1", ociRuntime: "runc", gpus: false, portMapping: true };
    },
  };
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "thoc-ct-cli-"));
  dev = await openDevStore({ dir: path.join(dir, "store") });
  server = new RpcServer();
  server.add(ContainerService, impl(new ContainerImageStore(dev.blobs)));
  addr = `127.0.0.1:${await server.listen("127.0.0.1", 0)}`;
});
after(async () => {
  server.forceShutdown();
  await dev.dispose().catch(() => {});
  await rm(dir, { recursive: true, force: true });
});

interface Run { code: number | null; stdout: string; stderr: string }
function cli(args: string[], o: { input?: string; onStdout?: (s: string, kill: () => void) => void } = {}): Promise<Run> {
  // No THOC_* settings or profile of the machine's: only --addr decides.
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: dir, XDG_CONFIG_HOME: dir };
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, "--addr", addr, ...args], { env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    p.stdout.on("data", (b: Buffer) => { stdout += b; o.onStdout?.(stdout, () => p.kill()); });
    p.stderr.on("data", (b: Buffer) => (stderr += b));
    if (o.input !== undefined) p.stdin.end(o.input); else p.stdin.end();
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}
const lastCall = (method: string) => calls.filter((c) => c.method === method).at(-1)?.req as Record<string, unknown> | undefined;

test("ct create: the spec from the flags and the command after --, one request id; list, show, stop, delete", async () => {
  const r = await cli(["ct", "create", "web", "--image", "bb", "--port", "8080:80", "-p", "53/udp", "-e", "A=1", "--env", "B=x=y", "-v", "data:/data", "--cpus", "0.5", "--memory", "64", "--restart", "always", "--group", "g1", "--", "httpd", "-f", "-p", "80"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "container web running on n1 (8080->80/tcp,32768->53/udp)\n");
  const req = lastCall("create") as unknown as CreateContainerRequest;
  assert.deepEqual(req.spec?.command, ["httpd", "-f", "-p", "80"]);
  assert.deepEqual(req.spec?.env, { A: "1", B: "x=y" });
  assert.deepEqual(req.spec?.ports.map((p) => [p.hostPort, p.containerPort, p.protocol]), [[8080, 80, "tcp"], [0, 53, "udp"]]);
  assert.deepEqual(req.spec?.volumes.map((v) => [v.name, v.containerPath, v.readOnly]), [["data", "/data", false]]);
  assert.deepEqual([req.spec?.cpus, req.spec?.memoryMb, req.spec?.restartPolicy, req.spec?.kind, req.group, req.noStart], [0.5, 64, "always", "app", "g1", false]);
  assert.match(req.requestId, /^[0-9a-f-]{36}$/);

  const list = await cli(["ct", "list"]);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^NAME\s+NODE\s+STATUS\s+IMAGE\s+PORTS\s+CPUS\s+MEMORY\s+GPU\n/);
  assert.match(list.stdout, /^web\s+n1\s+running\s+bb\s+8080->80\/tcp,32768->53\/udp\s+0\.5\s+64 MiB\s+-$/m);
  const wide = await cli(["ct", "list", "-o", "wide", "--node", "n1"]);
  assert.match(wide.stdout, /GPU\s+KIND\s+HEALTH\s+RESTARTS\s+ID\s+GROUP\s+CREATED\n/);
  assert.match(wide.stdout, /\sapp\s+-\s+0\s+abcdef012345\s+g1\s+2023-11-14T22:13:20\.000Z$/m);
  assert.equal((lastCall("list") as { node: string }).node, "n1");
  const json = JSON.parse((await cli(["ct", "list", "--json"])).stdout) as { name: string; command: string[]; ports: unknown[] }[];
  assert.deepEqual(json[0]?.command, ["httpd", "-f", "-p", "80"]);
  assert.deepEqual(json[0]?.ports, [{ containerPort: 80, hostPort: 8080, protocol: "tcp" }, { containerPort: 53, hostPort: 32768, protocol: "udp" }]);
  const show = await cli(["ct", "show", "web"]);
  assert.match(show.stdout, /^status\s+running$/m);
  assert.match(show.stdout, /^volumes\s+\[\{"name":"data","containerPath":"\/data","readOnly":false\}\]$/m);
  const missing = await cli(["ct", "show", "nope"]);
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, "thoc-node: container nope not found (thoc-node ct list)\n");

  const stop = await cli(["ct", "stop", "web", "--timeout-ms", "1500"]);
  assert.equal(stop.stdout, "container web stopped\n");
  assert.equal((lastCall("stop") as { timeoutMs: number }).timeoutMs, 1500);
  const del = await cli(["ct", "delete", "web"]);
  assert.equal(del.stdout, "container web deleted (volumes removed: data)\n");
  assert.deepEqual([(lastCall("delete") as { keepVolumes: boolean }).keepVolumes, (lastCall("delete") as { force: boolean }).force], [false, false]);
});

test("bad --port/--env/--volume/--kind: one line naming the flag, exit 2, and no call reaches the server", async () => {
  const before = calls.length;
  const cases: [string[], RegExp][] = [
    [["--port", "8080:80/sctp"], /^thoc-node: --port 8080:80\/sctp: protocol "sctp": use tcp or udp\n$/],
    [["--port", "99999:80"], /host port 99999 is not in 1-65535/],
    [["-p", "8080:80", "-p", "8080:81"], /host port 8080\/tcp is already mapped by --port 8080:80/],
    [["--env", "NOVALUE"], /^thoc-node: --env NOVALUE: use KEY=VALUE/],
    [["--volume", "/etc:/etc"], /is a host path; a volume is a NAME kept on the node/],
    [["--volume", "data:../x"], /the container path "\.\.\/x" must be absolute/],
  ];
  const runs = await Promise.all(cases.map(([flags]) => cli(["ct", "create", "web2", "--image", "bb", ...flags])));
  for (const [i, r] of runs.entries()) {
    assert.equal(r.code, 2, `${cases[i]![0].join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, cases[i]![1]);
    assert.equal(r.stdout, "");
  }
  const kind = await cli(["ct", "create", "web2", "--image", "bb", "--kind", "vm"]);
  assert.equal(kind.code, 2);
  assert.match(kind.stderr, /argument 'vm' is invalid\. Allowed choices are app, inference\./);
  const exec = await cli(["ct", "exec", "web2"]);
  assert.equal(exec.code, 2);
  assert.match(exec.stderr, /give the command after --/);
  assert.equal(calls.length, before, "nothing was sent");
});

test("ct exec: the process's exit code becomes the CLI's, stderr stays stderr; -i sends stdin and its end", async () => {
  await cli(["ct", "create", "sh1", "--image", "bb"]);
  for (const n of [0, 3, 42]) {
    const r = await cli(["ct", "exec", "sh1", "--", "exit", String(n)]);
    assert.equal(r.code, n, r.stderr);
    assert.equal(r.stderr, `bye ${n}\n`);
    assert.equal(r.stdout, "");
  }
  const cat = await cli(["ct", "exec", "-i", "sh1", "-e", "X=1", "-w", "/tmp", "--", "cat"], { input: "hello\nworld\n" });
  assert.equal(cat.code, 0, cat.stderr);
  assert.equal(cat.stdout, "HELLO\nWORLD\n\n[tty=false size=0x0]\n");
  const start = lastCall("exec") as unknown as ExecStart;
  assert.deepEqual([start.stdin, start.tty, start.env, start.workdir, start.command], [true, false, { X: "1" }, "/tmp", ["cat"]]);
  const stopped = await cli(["ct", "exec", "sh1", "--", "whatever"]);
  assert.equal(stopped.code, 1);
  assert.equal(stopped.stderr, "thoc-node: container sh1 is not running\n");
});

test("ct exec -it on a terminal: raw mode (keys go through unbuffered), the window size, exit code", { skip: spawnSync("script", ["--version"]).status === 0 ? false : "script(1) is not installed" }, async () => {
  const cmd = [process.execPath, CLI, "--addr", addr, "ct", "exec", "-it", "sh1", "--", "cat"].map((x) => `'${x}'`).join(" ");
  // stty sets the pty's size before the CLI starts; "abq" without Enter: raw mode passes each key at once.
  const p = spawn("script", ["-qefc", `stty rows 33 cols 101; ${cmd}`, "/dev/null"], { cwd: REPO_ROOT, stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  p.stdout.on("data", (b: Buffer) => (out += b));
  // Typed once the server has the session: the CLI set raw mode before it started the call.
  const execs = calls.filter((c) => c.method === "exec").length;
  for (let i = 0; i < 300 && calls.filter((c) => c.method === "exec").length === execs; i++) await new Promise((r) => setTimeout(r, 100));
  p.stdin.write("abq");
  const code = await new Promise<number | null>((r) => p.on("exit", r));
  assert.match(out, /ABQ/);
  assert.match(out, /\[tty=true size=33x101\]/);
  assert.equal(code, 7, out);
});

test("ct logs: stdout and stderr apart; -f keeps streaming until the server ends it; ctrl-c cancels the stream", async () => {
  await cli(["ct", "create", "log1", "--image", "bb"]);
  const once = await cli(["ct", "logs", "log1", "--tail", "10", "-t"]);
  assert.equal(once.code, 0, once.stderr);
  assert.equal(once.stdout, "out 1\n");
  assert.equal(once.stderr, "err 1\n");
  assert.deepEqual([(lastCall("logs") as { tail: number }).tail, (lastCall("logs") as { follow: boolean }).follow, (lastCall("logs") as { timestamps: boolean }).timestamps], [10, false, true]);
  let released = false;
  const follow = await cli(["ct", "logs", "-f", "log1"], {
    onStdout: (s) => {
      // The first line arrived while the call is still open: release the second one.
      if (s === "out 1\n" && !released) { released = true; setTimeout(() => releaseLogs(), 300); }
    },
  });
  assert.equal(follow.code, 0, follow.stderr);
  assert.equal(follow.stdout, "out 1\nout 2\n");
  // Killed while following: the server sees the call cancelled.
  logsCancelled = false;
  const killed = await cli(["ct", "logs", "-f", "log1"], { onStdout: (_s, kill) => kill() });
  assert.notEqual(killed.code, 0);
  for (let i = 0; i < 50 && !logsCancelled; i++) await new Promise((r) => setTimeout(r, 100));
  assert.ok(logsCancelled, "the server's stream was cancelled");
  releaseLogs();
  const bad = await cli(["ct", "logs", "log1", "--tail", "-3"]);
  assert.equal(bad.code, 2);
});

test("ct stats and ct runtime", async () => {
  const s = await cli(["ct", "stats", "log1"]);
  assert.equal(s.code, 0, s.stderr);
  assert.match(s.stdout, /^cpu\s+3\.50 s \(12\.3 %\)$/m);
  assert.match(s.stdout, /^memory\s+10\.0 MiB of 256\.0 MiB$/m);
  assert.equal((JSON.parse((await cli(["ct", "stats", "log1", "--json"])).stdout) as { cpuPercent: number }).cpuPercent, 12.35);
  const rt = await cli(["ct", "runtime"]);
  assert.match(rt.stdout, /^engine\s+podman 4\.3\.1 \(API 1\.41\)$/m);
  assert.match(rt.stdout, /^cgroups\s+cgroupfs v1$/m);
  assert.equal((JSON.parse((await cli(["ct", "runtime", "--json"])).stdout) as { ociRuntime: string }).ociRuntime, "runc");
});

test("ct image import streams the file with its SHA-256 into the store; an existing name, a file that is no image and a missing file are refused; list; delete", async () => {
  const d = await mkdtemp(path.join(dir, "img-"));
  const config = Buffer.from('{"os":"linux","architecture":"amd64"}');
  const id = createHash("sha256").update(config).digest("hex");
  await writeFile(path.join(d, `${id}.json`), config);
  await writeFile(path.join(d, "layer.tar"), Buffer.alloc(3 << 20, 1));
  await writeFile(path.join(d, "manifest.json"), JSON.stringify([{ Config: `${id}.json`, RepoTags: ["localhost/bb:1"], Layers: ["layer.tar"] }]));
  const file = path.join(dir, "bb.tar");
  execFileSync("tar", ["-cf", file, "-C", d, `${id}.json`, "layer.tar", "manifest.json"]);
  const sum = createHash("sha256").update(await readFile(file)).digest("hex");
  const r = await cli(["ct", "image", "import", "bb", file, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const img = JSON.parse(r.stdout) as { name: string; sha256: string; size: number; refs: string[] };
  assert.deepEqual([img.name, img.sha256, img.size, img.refs], ["bb:latest", sum, (await readFile(file)).length, ["localhost/bb:1"]]);
  assert.match(r.stderr, /^checksum bb: .*\(100%\)/m);
  assert.match(r.stderr, /^upload bb: .*\(100%\)/m);
  const again = await cli(["ct", "image", "import", "bb", file, "--no-progress"]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /container image bb:latest already exists: delete it first \(thoc-node ct image delete bb:latest\) or import with --replace/);
  const rep = await cli(["ct", "image", "import", "bb", file, "--no-progress", "--replace"]);
  assert.equal(rep.code, 0, rep.stderr);
  assert.equal(rep.stderr, "");
  assert.match(rep.stdout, /^container image bb:latest imported \(3\.0 MiB sha256:[0-9a-f]{12}, holds localhost\/bb:1\)\n$/);
  const notImage = path.join(dir, "notimage.tar");
  await writeFile(notImage, "hello");
  const ni = await cli(["ct", "image", "import", "x", notImage, "--no-progress"]);
  assert.equal(ni.code, 2);
  assert.match(ni.stderr, /container image x:latest: not a container image archive/);
  const none = await cli(["ct", "image", "import", "x", path.join(dir, "missing.tar")]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /missing\.tar: no such file/);
  const list = await cli(["ct", "image", "list"]);
  assert.match(list.stdout, /^NAME\s+SIZE\s+SHA256\s+IMPORTED\n/);
  assert.match(list.stdout, new RegExp(`^bb:latest\\s+3\\.0 MiB\\s+${sum.slice(0, 16)}\\s+\\d{4}-`, "m"));
  assert.match((await cli(["ct", "image", "list", "-o", "wide"])).stdout, /\slocalhost\/bb:1$/m);
  const del = await cli(["ct", "image", "delete", "bb"]);
  assert.equal(del.stdout, "container image bb deleted\n");
  assert.equal((await cli(["ct", "image", "list", "--json"])).stdout, "[]\n");
});
