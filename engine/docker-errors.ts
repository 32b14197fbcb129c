/**
 * Engine errors -> ThocError, once, here. Docker answers with HTTP statuses
 * that mostly say what went wrong (404, 409); podman's compatible service
 * answers 500 for several of the same failures (a name in use, a host port
 * in use, exec into a stopped container), so the message decides too.
 */
import { ThocError, type ErrorCode } from "../errors/index.js";

/** What dockerode / docker-modem reject with: an HTTP status and the engine's JSON body, or a socket error. */
interface ModemError { statusCode?: number; json?: unknown; message?: string; code?: string; reason?: string }

/** The engine's own message: the JSON body's "message" (both engines), else the modem's text. */
export function engineMessage(err: unknown): string {
  const e = (err ?? {}) as ModemError;
  const body = e.json;
  if (body && typeof body === "object" && typeof (body as { message?: unknown }).message === "string") {
    return (body as { message: string }).message.trim();
  }
  if (typeof body === "string" && body.trim()) return body.trim();
  return String(e.message ?? err).replace(/^\(HTTP code \d+\) [a-z -]+ - /, "").trim();
}

const PORT_IN_USE = [
  /listen (?:tcp|udp)\d? [^:]*:(\d+): bind: address already in use/i, // podman (rootful netavark, rootlessport)
  /Bind for [^:]*:(\d+) failed: port is already allocated/i, // docker
  /(?:0\.0\.0\.0|\[::\]|[\d.]+):(\d+).*address already in use/i, // docker-proxy
];

/** The host port an engine says is in use, if that is what it says. */
export function portInUse(message: string): number | undefined {
  for (const re of PORT_IN_USE) {
    const m = re.exec(message);
    if (m) return Number(m[1]);
  }
  return /address already in use|port is already allocated/i.test(message) ? 0 : undefined;
}

/** Socket errors: the engine is not there. */
const DOWN = new Set(["ECONNREFUSED", "ENOENT", "EACCES", "ECONNRESET", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "ENOTFOUND"]);

/**
 * Maps a dockerode failure to a ThocError. `what` names the object for the
 * message ("container thoc-web", "image localhost/bb:1"); `uri` is the
 * engine's address for "unreachable" messages.
 */
export function engineError(err: unknown, what: string, uri: string): ThocError {
  if (err instanceof ThocError) return err;
  const e = (err ?? {}) as ModemError;
  if (typeof e.code === "string" && DOWN.has(e.code)) {
    return new ThocError(
      "unavailable",
      `container engine at ${uri} is not reachable (${e.code}): start it (systemctl enable --now podman.socket, or podman system service --time=0 ${uri})`,
      { uri, errno: e.code },
      { cause: err },
    );
  }
  if (e.code === "ABORT_ERR" || (err as { name?: string })?.name === "AbortError") {
    return new ThocError("cancelled", `${what}: cancelled`, {}, { cause: err });
  }
  const status = typeof e.statusCode === "number" ? e.statusCode : 0;
  const msg = engineMessage(err);
  const text = `${what}: ${msg}`;
  const port = portInUse(msg);
  if (port !== undefined) {
    return new ThocError("resource_exhausted", port ? `${what}: host port ${port} is already in use` : `${what}: a host port is already in use (${msg})`, port ? { port } : {}, { cause: err });
  }
  if (/error setting rlimit/i.test(msg)) {
    // The engine asks for more open files / processes than it may give (rootful podman's default
    // 1048576 over the service's own hard limit, in a container or a systemd unit that lowers it).
    return new ThocError(
      "failed_precondition",
      `${text} (the engine's default ulimits exceed its own limits: set [containers] default_ulimits in /etc/containers/containers.conf, see docs/containers.md)`,
      {},
      { cause: err },
    );
  }
  let code: ErrorCode;
  if (status === 404 || /no such (container|image)|image not known|not found/i.test(msg)) code = "not_found";
  else if (/already in use|is already in use by|Conflict\. The container name/i.test(msg)) code = "already_exists";
  else if (status === 409 || status === 304 || /state improper|is not running|is paused|is restarting/i.test(msg)) code = "failed_precondition";
  else if (status === 400 || /invalid reference format|does not match any of the supported image formats|invalid argument/i.test(msg)) code = "invalid_argument";
  else if (status === 401 || status === 403 || /unauthorized|authentication required|denied/i.test(msg)) code = "permission_denied";
  else if (/connection refused|no such host|i\/o timeout|dial tcp|network is unreachable|TLS handshake/i.test(msg)) code = "unavailable";
  else code = "internal";
  return new ThocError(code, text, status ? { status } : {}, { cause: err });
}
