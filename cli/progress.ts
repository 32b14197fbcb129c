/**
 * Progress of a long transfer (image import), on stderr so stdout keeps the
 * command's answer (one JSON document with --json).
 *
 * On a terminal: one bar redrawn in place with the rate and the time left.
 * Anywhere else (a log, CI, a pipe): plain lines, one when it starts, then at
 * most one every `intervalMs`, and the last at 100%, with no carriage returns
 * or escape codes that would smear a log file.
 */
import { bytes } from "./output.js";

export interface ProgressState {
  label: string;
  done: number;
  total: number;
  elapsedMs: number;
}

/** 3s, 4m05s, 1h02m; "?" while there is no rate to tell from. */
export function formatEta(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.ceil(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** Bytes per second, from the average since the start (steady enough for a disk-speed upload). */
const rateOf = (p: ProgressState) => (p.elapsedMs > 0 ? (p.done * 1000) / p.elapsedMs : 0);
const pctOf = (p: ProgressState) => (p.total > 0 ? Math.min(100, Math.floor((p.done * 100) / p.total)) : 100);
const etaOf = (p: ProgressState) => {
  const rate = rateOf(p);
  if (p.done >= p.total) return "0s";
  return rate > 0 ? formatEta((p.total - p.done) / rate) : "?";
};

/** The terminal line: label, bar, percent, amounts, rate, ETA, fitted to `columns`. */
export function formatBar(p: ProgressState, columns = 80): string {
  const pct = pctOf(p);
  // Padded so the figures keep their width as they grow and the bar does not jump about.
  const total = bytes(p.total);
  const tail = ` ${String(pct).padStart(3)}%  ${bytes(p.done).padStart(total.length)} / ${total}  ${`${bytes(Math.round(rateOf(p)))}/s`.padStart(11)}  ETA ${etaOf(p).padEnd(6)}`;
  // What is left for the bar after the label, the brackets and the figures; no bar at all on a narrow terminal.
  const room = columns - 1 - p.label.length - 3 - tail.length;
  if (room < 10) return `${p.label}${tail}`.slice(0, Math.max(0, columns - 1));
  const width = Math.min(room, 40);
  const filled = Math.round((width * pct) / 100);
  return `${p.label} [${"#".repeat(filled)}${"-".repeat(width - filled)}]${tail}`;
}

/** A plain log line: "uploading disk: 140.0 MiB of 270.0 MiB (51%), 35.2 MiB/s, ETA 4s". */
export function formatLine(p: ProgressState): string {
  return `${p.label}: ${bytes(p.done)} of ${bytes(p.total)} (${pctOf(p)}%), ${bytes(Math.round(rateOf(p)))}/s, ETA ${etaOf(p)}`;
}

export interface ProgressOut {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  out?: ProgressOut;
  /** Plain lines: at most one per interval. */
  intervalMs?: number;
  /** The bar: redrawn at most this often (a redraw per 1 MiB chunk would flood a slow terminal). */
  redrawMs?: number;
  now?: () => number;
}

export class Progress {
  private done = 0;
  private readonly start: number;
  private lastShown = -Infinity;
  private finished = false;
  private readonly out: ProgressOut;
  private readonly tty: boolean;
  private readonly intervalMs: number;
  private readonly redrawMs: number;
  private readonly now: () => number;

  constructor(private readonly label: string, private readonly total: number, o: ProgressOptions = {}) {
    this.out = o.out ?? process.stderr;
    this.tty = this.out.isTTY === true;
    this.intervalMs = o.intervalMs ?? 5000;
    this.redrawMs = o.redrawMs ?? 100;
    this.now = o.now ?? Date.now;
    this.start = this.now();
    this.show();
  }

  add(n: number): void {
    this.done += n;
    if (this.done >= this.total) return this.finish();
    const gap = this.tty ? this.redrawMs : this.intervalMs;
    if (this.now() - this.lastShown >= gap) this.show();
  }

  /** The 100% line (and the bar's newline); once. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.done = Math.max(this.done, this.total);
    this.show();
    if (this.tty) this.out.write("\n");
  }

  private show(): void {
    const t = this.now();
    this.lastShown = t;
    const p = { label: this.label, done: this.done, total: this.total, elapsedMs: t - this.start };
    // \r and clear-to-end-of-line: the new line may be shorter than the last.
    // A pty with no size set (script(1) off a terminal, some CI) says 0 columns: draw for 80.
    if (this.tty) this.out.write(`\r${formatBar(p, this.out.columns || 80)}\x1b[K`);
    else this.out.write(formatLine(p) + "\n");
  }
}
