/**
 * The engine's JSON -> the seam's types: bound ports, events, stats, and the
 * JSON-lines progress bodies of image load and pull.
 */
import type Dockerode from "dockerode";
import type { EngineEvent, EnginePort, EngineStats } from "./types.js";

export const ms = (t: string | undefined) => {
  const v = t ? Date.parse(t) : NaN;
  return Number.isFinite(v) && v > 0 ? v : 0;
};

export interface RawStats {
  read?: string;
  cpu_stats?: { cpu_usage?: { total_usage?: number } };
  memory_stats?: { usage?: number; limit?: number; stats?: Record<string, number> };
  networks?: Record<string, { rx_bytes?: number; tx_bytes?: number }>;
  blkio_stats?: { io_service_bytes_recursive?: Array<{ op: string; value: number }> | null };
  pids_stats?: { current?: number };
}

/** Bound ports: as bound while running (host port chosen for 0), else as asked. IPv4 and IPv6 twins count once. */
export function portsOf(i: Dockerode.ContainerInspectInfo): EnginePort[] {
  const live = i.NetworkSettings?.Ports as Record<string, Array<{ HostIp: string; HostPort: string }> | null> | undefined;
  const asked = i.HostConfig?.PortBindings as Record<string, Array<{ HostIp?: string; HostPort?: string }> | null> | undefined;
  const src = live && Object.values(live).some((v) => v?.length) ? live : asked ?? {};
  const out: EnginePort[] = [];
  const seen = new Set<string>();
  for (const [key, binds] of Object.entries(src)) {
    const [port, proto] = key.split("/");
    for (const b of binds ?? []) {
      const p: EnginePort = { containerPort: Number(port), hostPort: Number(b.HostPort ?? 0) || 0, protocol: proto === "udp" ? "udp" : "tcp", hostIp: b.HostIp === "0.0.0.0" || b.HostIp === "::" ? "" : b.HostIp ?? "" };
      const k = `${p.containerPort}/${p.protocol}/${p.hostPort}`;
      if (!seen.has(k)) { seen.add(k); out.push(p); }
    }
  }
  return out;
}

export function toEvent(line: string): EngineEvent | undefined {
  let m: { id?: string; Action?: string; status?: string; Actor?: { ID?: string; Attributes?: Record<string, string> }; time?: number; timeNano?: number; Type?: string };
  try {
    m = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (m.Type && m.Type !== "container") return undefined;
  const attrs = m.Actor?.Attributes ?? {};
  const action = m.Action ?? m.status ?? "";
  // Podman puts containerExitCode on every event; it means something only on die.
  const code = attrs.exitCode ?? (action === "die" ? attrs.containerExitCode : undefined);
  return {
    id: m.Actor?.ID ?? m.id ?? "",
    name: attrs.name ?? "",
    action,
    ...(action === "die" && code !== undefined && code !== "" ? { exitCode: Number(code) } : {}),
    timeMs: m.timeNano ? Math.floor(m.timeNano / 1e6) : (m.time ?? 0) * 1000,
  };
}

/** Reads a JSON-lines progress body (load, pull) to its end. */
export async function readJsonLines(s: NodeJS.ReadableStream): Promise<Array<Record<string, unknown>>> {
  let text = "";
  for await (const b of s as AsyncIterable<Buffer | string>) text += String(b);
  const out: Array<Record<string, unknown>> = [];
  // Podman sometimes sends concatenated objects without newlines: split between "}{" too.
  for (const line of text.replace(/}\s*{/g, "}\n{").split("\n")) {
    const t = line.trim();
    if (!t) continue;
    try {
      out.push(JSON.parse(t) as Record<string, unknown>);
    } catch {
      out.push({ stream: t });
    }
  }
  return out;
}

/** One-shot stats -> EngineStats (CPU seconds from cpu_usage.total_usage in ns). */
export function statsOf(s: RawStats): EngineStats {
  let rx = 0, tx = 0, rd = 0, wr = 0;
  for (const n of Object.values(s.networks ?? {})) { rx += n.rx_bytes ?? 0; tx += n.tx_bytes ?? 0; }
  for (const b of s.blkio_stats?.io_service_bytes_recursive ?? []) {
    if (/^read$/i.test(b.op)) rd += b.value;
    else if (/^write$/i.test(b.op)) wr += b.value;
  }
  const m = s.memory_stats ?? {};
  // Docker counts the page cache in usage; `docker stats` subtracts it, and so do we (podman gives usage only).
  const cache = m.stats?.inactive_file ?? m.stats?.total_inactive_file ?? 0;
  return {
    cpuSeconds: (s.cpu_stats?.cpu_usage?.total_usage ?? 0) / 1e9,
    memoryBytes: Math.max(0, (m.usage ?? 0) - cache),
    memoryLimitBytes: m.limit ?? 0,
    netRxBytes: rx, netTxBytes: tx, blockReadBytes: rd, blockWriteBytes: wr,
    pids: s.pids_stats?.current ?? 0,
    timestampMs: ms(s.read) || Date.now(),
  };
}
