/**
 * Files the configuration names (TLS certificates and keys), read while the
 * config is checked: a missing file or a private key others can read is a
 * configuration error (exit 2) found before any port is bound or anything is
 * written to the data dir.
 */
import { readFileSync, statSync } from "node:fs";
import { configError } from "./resolve.js";

/** The file's bytes; configError naming key when it cannot be read. */
export function readConfigFile(file: string, key: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw configError(key, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * A private key: refused when group or others have any access to it, as ssh
 * refuses an open identity file, since a key others can read is a key others
 * may already hold. The message is the chmod that fixes it.
 */
export function readKeyFile(file: string, key: string): Buffer {
  const data = readConfigFile(file, key);
  const mode = statSync(file).mode & 0o777;
  if (mode & 0o077) {
    throw configError(key, `${file} is a private key readable by group or others (mode ${mode.toString(8).padStart(4, "0")}): run chmod 600 ${file}`);
  }
  return data;
}
