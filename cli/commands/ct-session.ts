/**
 * `ct exec`'s session over ContainerService.Exec (a bidi stream): the first
 * message starts the process; then stdin bytes (with -i), stdin's end, and
 * the terminal's size when it changes (with -t on a terminal, in raw mode so
 * keys such as Ctrl-C reach the process, not the CLI). Output goes to stdout
 * and stderr as the process wrote it; the last message's exit code is
 * returned, and becomes the CLI's.
 */
import type { ContainerService } from "../../proto/index.js";
import type { Client } from "../../rpc/index.js";
import { ThocError } from "../../errors/index.js";

type CtClient = Client<typeof ContainerService.method>;

export interface ExecArgs { name: string; command: string[]; tty: boolean; interactive: boolean; env: Record<string, string>; workdir: string }

interface Input { start?: { name: string; command: string[]; tty: boolean; stdin: boolean; env: Record<string, string>; workdir: string; rows: number; cols: number }; stdin?: Uint8Array; stdinEof?: boolean; rows?: number; cols?: number }

export async function execSession(client: CtClient, a: ExecArgs): Promise<number> {
  const out = process.stdout;
  const stdinTty = process.stdin.isTTY === true;
  const raw = a.tty && a.interactive && stdinTty;
  const size = () => ({ rows: out.isTTY ? out.rows : 0, cols: out.isTTY ? out.columns : 0 });
  const queue: Input[] = [];
  let wake: (() => void) | undefined;
  let finished = false;
  const push = (m?: Input) => { if (m) queue.push(m); const w = wake; wake = undefined; w?.(); };
  async function* input(): AsyncGenerator<Input> {
    yield { start: { name: a.name, command: a.command, tty: a.tty, stdin: a.interactive, env: a.env, workdir: a.workdir, ...size() } };
    for (;;) {
      while (queue.length) yield queue.shift()!;
      if (finished) return;
      await new Promise<void>((r) => { wake = r; });
    }
  }
  const onData = (b: Buffer) => push({ stdin: b });
  const onEnd = () => push({ stdinEof: true });
  const onResize = () => push({ rows: out.rows, cols: out.columns });
  if (a.interactive) {
    if (raw) process.stdin.setRawMode(true);
    process.stdin.on("data", onData);
    process.stdin.once("end", onEnd);
    process.stdin.resume();
  }
  // Node turns SIGWINCH into stdout's resize event.
  if (a.tty && out.isTTY) out.on("resize", onResize);
  let code: number | undefined;
  try {
    for await (const m of client.exec(input(), { timeoutMs: 0 })) {
      if (m.data.length) (m.stream === "stderr" ? process.stderr : out).write(m.data);
      if (m.exited) { code = m.exitCode; break; }
    }
  } finally {
    finished = true;
    push();
    if (a.interactive) {
      process.stdin.off("data", onData);
      process.stdin.off("end", onEnd);
      if (raw) process.stdin.setRawMode(false);
      process.stdin.pause();
      process.stdin.destroy();
    }
    out.off("resize", onResize);
  }
  if (code === undefined) throw new ThocError("unavailable", `exec in ${a.name}: the stream ended without the process's exit code (the agent or the container went away)`);
  return code;
}

/** `ct logs`: the engine's stdout and stderr as kept, to the same streams here; -f keeps following. */
export async function followLogs(client: CtClient, req: { name: string; follow: boolean; tail: number; timestamps: boolean }): Promise<void> {
  for await (const c of client.containerLogs(req, { timeoutMs: req.follow ? 0 : 60_000 })) (c.stream === "stderr" ? process.stderr : process.stdout).write(c.data);
}
