/**
 * The CLI loads only what a command needs: every command but `agent` answers
 * without loading the subsystems, the agent, native modules or the logger
 * (their load time is most of a slow CLI). Each run records every module the
 * process loads: ESM through a resolve hook, CommonJS from require.cache at exit.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { AgentProcess, CLI, REPO_ROOT, loopbackBlock } from "./harness.js";

/** Preloaded with --import: logs each resolved ESM URL (the hook runs off-thread) and, at exit, every CommonJS file. */
const RECORDER = `
import { register, createRequire } from "node:module";
import { appendFileSync } from "node:fs";
const out = process.env.THOC_LOAD_LOG;
register("data:text/javascript," + encodeURIComponent(\`
  import { appendFileSync } from "node:fs";
  export async function resolve(spec, ctx, next) {
    const r = await next(spec, ctx);
    appendFileSync(\${JSON.stringify(out)}, r.url + "\\\\n");
    return r;
  }\`));
process.on("exit", () => appendFileSync(out, Object.keys(createRequire(process.cwd() + "/").cache).join("\\n") + "\\n"));
`;

const FORBIDDEN: [string, RegExp][] = [
  ["koffi", /\/node_modules\/koffi\//],
  ["classic-level (LevelDB)", /\/node_modules\/(classic-level|abstract-level)\//],
  ["systeminformation", /\/node_modules\/systeminformation\//],
  ["pino", /\/node_modules\/pino\//],
  ["a subsystem, cluster/ or agent/", /\/dist\/(agent|membership|objectstore|vm|hypervisor|engine|container|cluster|scheduler)\//],
];

let dir = "";
let runs = 0;
before(async () => { dir = await mkdtemp(path.join(tmpdir(), "thoc-cli-load-")); });
after(async () => { await rm(dir, { recursive: true, force: true }); });

/** Runs the CLI with the recorder; returns its exit code, stderr and every module it loaded. */
async function load(args: string[]): Promise<{ code: number | null; stderr: string; modules: string[] }> {
  const log = path.join(dir, `run-${++runs}.log`);
  const p = spawn(process.execPath, ["--import", `data:text/javascript,${encodeURIComponent(RECORDER)}`, CLI, ...args], {
    cwd: REPO_ROOT, env: { ...process.env, THOC_LOAD_LOG: log }, stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  p.stderr!.on("data", (b: Buffer) => (stderr += b));
  const code = await new Promise<number | null>((resolve) => p.on("exit", resolve));
  const modules = (await readFile(log, "utf8").catch(() => "")).split("\n").filter(Boolean);
  return { code, stderr, modules };
}

function assertLean(args: string[], modules: string[]): void {
  // The recorder works: it saw the CLI itself (a run that recorded nothing must not pass).
  assert.ok(modules.some((m) => m.endsWith("/dist/cli/main.js")), `recorder saw no dist/cli/main.js for ${args.join(" ")}`);
  for (const [what, re] of FORBIDDEN) {
    const hit = modules.filter((m) => re.test(m));
    assert.deepEqual(hit, [], `thoc-node ${args.join(" ")} loaded ${what}`);
  }
}

// -V is left out: it loads core/ for VERSION, and core/index.ts carries the logger (pino).
test("--help and keygen load neither the gRPC client nor anything the agent needs", async () => {
  for (const args of [["--help"], ["vm", "create", "--help"], ["ct", "create", "--help"], ["keygen"]]) {
    const r = await load(args);
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    assertLean(args, r.modules);
    assert.deepEqual(r.modules.filter((m) => /\/node_modules\/@grpc\/grpc-js\//.test(m)), [], `${args.join(" ")} loaded grpc-js`);
  }
});

test("commands against an address with no agent fail without loading the agent's modules", async () => {
  const addr = `${loopbackBlock()}.1:7400`;
  for (const args of [["status"], ["members", "--json"], ["ring"], ["vm", "list"], ["ct", "list"], ["image", "list"], ["s3", "key", "list"], ["cluster", "token", "create"], ["events"]]) {
    const r = await load(["--addr", addr, "--timeout", "3000", ...args]);
    assert.equal(r.code, 1, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /cannot reach the agent|deadline/i);
    assertLean(args, r.modules);
  }
});

test("status, members and ring against a running --dev agent answer without loading the agent's modules", async () => {
  const d = await mkdtemp(path.join(tmpdir(), "thoc-cli-load-agent-"));
  const agent = new AgentProcess("cli-load", `${loopbackBlock()}.1`, d, { dev: true });
  try {
    await agent.start();
    for (const args of [["status", "--json"], ["members", "--json"], ["ring", "--json"], ["events", "--json"]]) {
      const r = await load(["--addr", agent.grpcAddress, ...args]);
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      assert.ok(r.modules.some((m) => m.endsWith("/dist/rpc/client.js")), "the gRPC client was loaded (the call really went through it)");
      assertLean(args, r.modules);
    }
  } finally {
    await agent.kill();
    await rm(d, { recursive: true, force: true });
  }
});
