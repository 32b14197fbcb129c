/**
 * Leaving the process within a bound whatever libvirt does. process.exit()
 * joins every libuv pool thread, and a thread blocked in a libvirt call (a
 * libvirtd that accepted the connection and never answers, a poll with no
 * timeout) never returns, so exit() alone can hang forever. The backstop is
 * the kernel's: alarm(2) delivers SIGALRM, whose default action ends the
 * process, however stuck its threads or its event loop are. A process ended
 * that way shows "killed by SIGALRM" (status 142 in a shell); it is the last
 * resort, used only when the clean exit did not finish in time.
 */
import koffi from "koffi";

let alarm: ((seconds: number) => number) | null | undefined;

/**
 * Arms (or moves) the process's hard deadline: seconds from now the kernel
 * ends it. False when libc's alarm() cannot be reached (the exit is then
 * only as bounded as process.exit is).
 */
export function exitDeadline(seconds: number): boolean {
  if (alarm === null) return false;
  try {
    alarm ??= koffi.load("libc.so.6").func("unsigned int alarm(unsigned int)") as (s: number) => number;
    alarm(Math.max(1, Math.ceil(seconds)));
    return true;
  } catch {
    alarm = null;
    return false;
  }
}

/** process.exit(code), ended by SIGALRM graceSeconds later if a blocked thread holds the exit up. */
export function exitBounded(code: number, graceSeconds = 2): never {
  exitDeadline(graceSeconds);
  process.exit(code);
}
