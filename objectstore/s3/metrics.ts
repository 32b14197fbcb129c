/** thoc_s3_* Prometheus metrics: requests by operation and status, bytes in and out, latency, errors by S3 code. */
import client, { type Registry } from "prom-client";

export interface S3Metrics {
  observe(op: string, status: number, seconds: number, bytesIn: number, bytesOut: number, errorCode?: string): void;
  inflight: client.Gauge;
  connectionsRefused: client.Counter;
}

function get<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

export function createS3Metrics(registry: Registry): S3Metrics {
  const registers = [registry];
  const requests = get(registry, "thoc_s3_requests_total", () => new client.Counter({
    name: "thoc_s3_requests_total", help: "S3 requests served, by operation and HTTP status.", labelNames: ["operation", "status"], registers,
  }));
  const latency = get(registry, "thoc_s3_request_duration_seconds", () => new client.Histogram({
    name: "thoc_s3_request_duration_seconds", help: "S3 request latency from headers received to response end, by operation.", labelNames: ["operation"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300], registers,
  }));
  const bytesIn = get(registry, "thoc_s3_received_bytes_total", () => new client.Counter({
    name: "thoc_s3_received_bytes_total", help: "Request body bytes received (as sent, including aws-chunked framing), by operation.", labelNames: ["operation"], registers,
  }));
  const bytesOut = get(registry, "thoc_s3_sent_bytes_total", () => new client.Counter({
    name: "thoc_s3_sent_bytes_total", help: "Response body bytes sent, by operation.", labelNames: ["operation"], registers,
  }));
  const errors = get(registry, "thoc_s3_errors_total", () => new client.Counter({
    name: "thoc_s3_errors_total", help: "S3 error responses, by S3 error code.", labelNames: ["code"], registers,
  }));
  const inflight = get(registry, "thoc_s3_inflight_requests", () => new client.Gauge({
    name: "thoc_s3_inflight_requests", help: "S3 requests being served now.", registers,
  }));
  const connectionsRefused = get(registry, "thoc_s3_connections_refused_total", () => new client.Counter({
    name: "thoc_s3_connections_refused_total", help: "Connections closed on accept because s3.maxConnections were open.", registers,
  }));
  return {
    inflight, connectionsRefused,
    observe(op, status, seconds, bin, bout, errorCode) {
      requests.inc({ operation: op, status: String(status) });
      latency.observe({ operation: op }, seconds);
      if (bin) bytesIn.inc({ operation: op }, bin);
      if (bout) bytesOut.inc({ operation: op }, bout);
      if (errorCode) errors.inc({ code: errorCode });
    },
  };
}
