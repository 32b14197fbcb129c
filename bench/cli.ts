/**
 * CLI start-up benchmark: wall time of `thoc-node --help`, `status --json`,
 * `members --json` and `ring --json` against a local agent, median of N runs,
 * beside a bare `node -e 0` measured in the same run (the floor no CLI beats).
 * Target: every command but `agent` answers in <= 250 ms.
 *
 *   node dist/bench/cli.js [--addr HOST:PORT] [--runs N]
 * Without --addr it starts a --dev agent on 127.77.0.1 (data in a temp dir) and stops it afterwards.
 */
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { AgentProcess, CLI } from "../test/harness.js";

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const runs = Number(arg("--runs") ?? 10);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Wall milliseconds of running `node ...args` to exit; throws if it fails. */
function once(args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`node ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return ms;
}

let agent: AgentProcess | undefined;
let dir: string | undefined;
let addr = arg("--addr");
if (!addr) {
  dir = await mkdtemp(path.join(tmpdir(), "thoc-bench-cli-"));
  agent = new AgentProcess("bench-cli", "127.77.0.1", dir, { dev: true });
  await agent.start();
  addr = agent.grpcAddress;
}
try {
  // Round-robin, so load from other processes falls on every command alike.
  const cases: [string, string[]][] = [["node -e 0", ["-e", "0"]],
    ...[["--help"], ["status", "--json"], ["members", "--json"], ["ring", "--json"]].map((c): [string, string[]] => [c.join(" "), [CLI, "--addr", addr!, ...c]])];
  const ms = cases.map((): number[] => []);
  for (let i = 0; i < runs; i++) cases.forEach(([, args], j) => ms[j]!.push(once(args)));
  const floor = median(ms[0]!);
  console.log(`cli start-up, median of ${runs} (wall ms), agent ${addr}`);
  cases.forEach(([name], j) => {
    const m = median(ms[j]!);
    const note = j === 0 ? "" : `  (+${(m - floor).toFixed(0)} over node -e 0; ${m <= 250 ? "ok" : "over 250 ms"})`;
    console.log(`  ${name.padEnd(18)} ${m.toFixed(0).padStart(5)} ms${note}`);
  });
} finally {
  await agent?.kill();
  if (dir) await rm(dir, { recursive: true, force: true });
}
