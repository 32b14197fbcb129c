/**
 * The Docker API's stream framing (logs and exec without a TTY): each frame
 * is an 8-byte header [stream, 0, 0, 0, size (uint32 BE)] and size bytes;
 * stream 1 = stdout, 2 = stderr (0 = stdin echo, delivered as stdout). With a
 * TTY there is no framing: everything is stdout. Also the exec session over
 * a hijacked connection.
 */
import type { Duplex } from "node:stream";
import type Dockerode from "dockerode";
import { ThocError } from "../errors/index.js";
import type { ExecSession } from "./types.js";

export type Chunk = { stream: "stdout" | "stderr"; data: Buffer };

/** Incremental demultiplexer: push bytes in any split, get whole frames out. */
export class Demuxer {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly tty: boolean) {}

  push(data: Buffer): Chunk[] {
    if (this.tty) return data.length ? [{ stream: "stdout", data }] : [];
    this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : data;
    const out: Chunk[] = [];
    while (this.buf.length >= 8) {
      const size = this.buf.readUInt32BE(4);
      if (this.buf.length < 8 + size) break;
      const kind = this.buf[0];
      out.push({ stream: kind === 2 ? "stderr" : "stdout", data: this.buf.subarray(8, 8 + size) });
      this.buf = this.buf.subarray(8 + size);
    }
    return out;
  }
}

/** Reads a stream to its end as demultiplexed chunks. */
export async function* demuxStream(stream: AsyncIterable<Buffer | string> | Iterable<Buffer | string>, tty: boolean): AsyncGenerator<Chunk> {
  const d = new Demuxer(tty);
  for await (const b of stream) yield* d.push(typeof b === "string" ? Buffer.from(b) : b);
}

/**
 * One exec session over the hijacked connection. Output that arrives before
 * the caller registers onOutput is kept and handed over then. The exit code
 * comes from exec inspect once the connection ended: the process has
 * exited by then, but the engine may record its code a moment later, so
 * inspect is polled until it says the process is no longer running.
 */
export function execSession(exec: Dockerode.Exec, sock: Duplex, tty: boolean, stdin: boolean, resize: (rows: number, cols: number) => Promise<void>, wrap: (e: unknown) => ThocError): ExecSession {
  const demux = new Demuxer(tty);
  let killed = false;
  const early: Chunk[] = [];
  const listeners: Array<(s: "stdout" | "stderr", d: Buffer) => void> = [];
  sock.on("data", (b: Buffer) => {
    for (const c of demux.push(b)) {
      if (listeners.length === 0) early.push(c);
      else for (const fn of listeners) fn(c.stream, c.data);
    }
  });
  const ended = new Promise<void>((resolve) => {
    sock.once("end", resolve);
    sock.once("close", resolve);
    sock.once("error", () => resolve());
  });
  const exit = (async () => {
    await ended;
    for (let i = 0; ; i++) {
      const info = await exec.inspect().catch((e: unknown) => { throw wrap(e); });
      if (!info.Running && info.ExitCode !== null && info.ExitCode !== undefined) return info.ExitCode;
      if (i >= 100) {
        throw killed
          ? new ThocError("failed_precondition", "exec: session dropped; without a TTY the process may still run in the container (the Docker API cannot kill an exec)")
          : new ThocError("internal", "exec: the process's connection ended but the engine still reports it running");
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  // A caller that never awaits exit must not see an unhandled rejection.
  exit.catch(() => undefined);
  return {
    stdin: stdin ? sock : undefined,
    onOutput(fn) {
      listeners.push(fn);
      for (const c of early.splice(0)) fn(c.stream, c.data);
    },
    resize,
    exit,
    kill() {
      // The Docker API has no exec kill: dropping the connection hangs up the TTY / closes the pipes.
      killed = true;
      sock.destroy();
    },
  };
}
