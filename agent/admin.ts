/**
 * Admin HTTP: /metrics (Prometheus text), /healthz (the process answers),
 * /readyz (200 only when every subsystem is up; the body says which is not).
 */
import http from "node:http";
import type { Registry } from "prom-client";
import type { SubsystemHealth } from "../core/index.js";

export interface AdminDeps {
  registry: Registry;
  health(): { ready: boolean; subsystems: Record<string, SubsystemHealth> };
}

export function createAdminServer(deps: AdminDeps): http.Server {
  return http.createServer((req, res) => {
    const url = (req.url ?? "/").split("?")[0];
    const send = (code: number, type: string, body: string) => {
      res.writeHead(code, { "content-type": type, "cache-control": "no-store" });
      res.end(req.method === "HEAD" ? undefined : body);
    };
    if (req.method !== "GET" && req.method !== "HEAD") return send(405, "text/plain", "method not allowed\n");
    switch (url) {
      case "/healthz":
        return send(200, "text/plain", "ok\n");
      case "/readyz": {
        const h = deps.health();
        return send(h.ready ? 200 : 503, "application/json", JSON.stringify(h) + "\n");
      }
      case "/metrics":
        deps.registry.metrics().then(
          (text) => send(200, deps.registry.contentType, text),
          (err) => send(500, "text/plain", `metrics: ${(err as Error).message}\n`),
        );
        return;
      default:
        return send(404, "text/plain", "not found: try /metrics, /healthz or /readyz\n");
    }
  });
}

export function closeHttp(server: http.Server, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    const t = setTimeout(() => { server.closeAllConnections(); resolve(); }, timeoutMs);
    server.close(() => { clearTimeout(t); resolve(); });
    server.closeIdleConnections();
  });
}
