/**
 * The one error type of thoc-node. Every failure that crosses a boundary
 * (gRPC, S3, CLI) is a ThocError with a code; the code is mapped exactly once
 * to a gRPC status (here) and to an S3 error (objectstore/s3 maps codes it
 * knows more precisely). Unknown errors are wrapped at the edge with
 * ThocError.from(), which keeps the cause but never leaks its stack to clients.
 */
import type { status as GrpcStatus } from "@grpc/grpc-js";

export type ErrorCode =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "failed_precondition"
  | "resource_exhausted"
  | "unavailable"
  | "permission_denied"
  | "unauthenticated"
  | "deadline_exceeded"
  | "aborted"
  | "cancelled"
  | "unimplemented"
  | "data_loss"
  | "internal";

/**
 * The gRPC status codes (a fixed part of the gRPC protocol) written as numbers
 * rather than read from grpc-js at run time: errors/ is loaded by every CLI
 * command, and grpc-js is the heaviest module a `--help` would otherwise load.
 * errors.test.ts checks each against grpc-js's own enum.
 */
const GRPC: Record<ErrorCode, GrpcStatus> = {
  invalid_argument: 3, // INVALID_ARGUMENT
  not_found: 5, // NOT_FOUND
  already_exists: 6, // ALREADY_EXISTS
  failed_precondition: 9, // FAILED_PRECONDITION
  resource_exhausted: 8, // RESOURCE_EXHAUSTED
  unavailable: 14, // UNAVAILABLE
  permission_denied: 7, // PERMISSION_DENIED
  unauthenticated: 16, // UNAUTHENTICATED
  deadline_exceeded: 4, // DEADLINE_EXCEEDED
  aborted: 10, // ABORTED
  cancelled: 1, // CANCELLED
  unimplemented: 12, // UNIMPLEMENTED
  data_loss: 15, // DATA_LOSS
  internal: 13, // INTERNAL
};

const FROM_GRPC = new Map<number, ErrorCode>(
  Object.entries(GRPC).map(([code, st]) => [st as number, code as ErrorCode]),
);

/** Extra, structured facts about a failure (quorum counts, the bad key...). */
export type ErrorDetails = Record<string, string | number | boolean | undefined>;

export class ThocError extends Error {
  override readonly name = "ThocError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: ErrorDetails = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  get grpcStatus(): GrpcStatus {
    return GRPC[this.code];
  }

  /**
   * Wraps anything thrown into a ThocError. A ThocError passes through; a
   * grpc-js ServiceError keeps its status; Node system errors (ECONNREFUSED,
   * EADDRINUSE, ENOSPC...) get a code that says what kind of trouble it is.
   */
  static from(err: unknown, fallback: ErrorCode = "internal"): ThocError {
    if (err instanceof ThocError) return err;
    if (err && typeof err === "object") {
      const e = err as { code?: unknown; details?: unknown; message?: unknown; name?: unknown };
      const message = typeof e.message === "string" ? e.message : String(err);
      if (typeof e.code === "number" && FROM_GRPC.has(e.code) && "metadata" in e) {
        const text = typeof e.details === "string" && e.details ? e.details : message;
        return new ThocError(FROM_GRPC.get(e.code)!, text, {}, { cause: err });
      }
      if (typeof e.code === "string") {
        const sys = SYSTEM_CODES[e.code];
        if (sys) return new ThocError(sys, message, { errno: e.code }, { cause: err });
      }
      if (e.name === "AbortError") return new ThocError("cancelled", message, {}, { cause: err });
      return new ThocError(fallback, message, {}, { cause: err });
    }
    return new ThocError(fallback, String(err));
  }
}

const SYSTEM_CODES: Record<string, ErrorCode> = {
  ECONNREFUSED: "unavailable",
  ECONNRESET: "unavailable",
  EHOSTUNREACH: "unavailable",
  ENETUNREACH: "unavailable",
  ETIMEDOUT: "deadline_exceeded",
  EPIPE: "unavailable",
  ENOENT: "not_found",
  EEXIST: "already_exists",
  ENOSPC: "resource_exhausted",
  EDQUOT: "resource_exhausted",
  EMFILE: "resource_exhausted",
  EADDRINUSE: "failed_precondition",
  EADDRNOTAVAIL: "invalid_argument",
  EACCES: "permission_denied",
  EPERM: "permission_denied",
};

/**
 * A listener that cannot bind, said the same way for every port the agent
 * opens: what (e.g. "S3 API"), where, and the flag that moves it. In use ->
 * failed_precondition (another agent, or pick another port); other errors
 * keep their kind.
 */
export function listenError(err: unknown, what: string, address: string, flag: string): ThocError {
  const e = err as NodeJS.ErrnoException;
  const errno = typeof e?.code === "string" ? e.code : /EADDRINUSE|address already in use|No address added/i.test(String(e?.message)) ? "EADDRINUSE" : "";
  const why: Record<string, string> = {
    EADDRINUSE: `address already in use (another agent running? choose another ${flag} or --bind)`,
    EADDRNOTAVAIL: "no such local address; check --bind",
    // Also "cannot bind" (exit 3): an address no interface of this host can listen on.
    EINVAL: "not an address this host can listen on; check --bind",
    EAFNOSUPPORT: "this host does not support that address family; check --bind",
    EACCES: `permission denied; use a port above 1023 or grant CAP_NET_BIND_SERVICE`,
  };
  const text = why[errno] ?? (e?.message ?? String(err));
  return new ThocError(why[errno] ? "failed_precondition" : "unavailable", `${what}: cannot listen on ${address}: ${text}`, { address, ...(errno ? { errno } : {}) }, { cause: err });
}

/** Quorum failure: carries how many replicas answered and how many were needed. */
export function quorumError(op: string, got: number, needed: number, of: number, why?: string): ThocError {
  return new ThocError(
    "unavailable",
    `${op}: quorum not reached (${got} of ${needed} needed, ${of} replicas${why ? `: ${why}` : ""})`,
    { got, needed, replicas: of },
  );
}

export const invalid = (message: string, details?: ErrorDetails) =>
  new ThocError("invalid_argument", message, details);
export const notFound = (message: string, details?: ErrorDetails) =>
  new ThocError("not_found", message, details);
