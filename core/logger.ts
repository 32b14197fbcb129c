/**
 * Structured JSON lines on stdout (pino). Secrets are redacted by path here,
 * once, and nothing else in the agent logs a config object or a request body
 * unredacted.
 */
import { pino, type Logger, type LevelWithSilent } from "pino";

export type { Logger };

/** Field names whose values are never written to a log line, at any depth we log. */
export const REDACT_PATHS = [
  "secretKey", "*.secretKey", "*.*.secretKey",
  "password", "*.password", "*.*.password",
  "keys", "*.keys", "*.*.keys", "clusterKey", "*.clusterKey",
  "authorization", "*.authorization", "headers.authorization", "*.headers.authorization",
  "token", "*.token",
];

export function createLogger(level: LevelWithSilent, base: Record<string, unknown> = {}, dest?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid, ...base },
      redact: { paths: REDACT_PATHS, censor: "<redacted>" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    (dest ?? process.stdout) as pino.DestinationStream,
  );
}
