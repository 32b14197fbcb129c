/**
 * What the real-client S3 tests share: a clean environment for aws-cli and
 * rclone (these keys, no user config, rclone remote `t:` at the endpoint),
 * and aws-cli v1 found on PATH (Debian's /usr/bin/aws is v2).
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Only PATH, HOME, LANG, TMPDIR and pyenv's variables (a pyenv shim of aws-cli v1 needs them) pass through. */
export function cliEnv(endpoint: string, access: string, secret: string, region = "us-east-1"): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const k of ["PATH", "HOME", "LANG", "TMPDIR", "PYENV_ROOT", "PYENV_VERSION"]) if (process.env[k]) env[k] = process.env[k];
  return {
    ...env, AWS_ACCESS_KEY_ID: access, AWS_SECRET_ACCESS_KEY: secret, AWS_DEFAULT_REGION: region,
    AWS_CONFIG_FILE: "/dev/null", AWS_SHARED_CREDENTIALS_FILE: "/dev/null", AWS_PAGER: "",
    RCLONE_CONFIG: "/dev/null", RCLONE_CONFIG_T_TYPE: "s3", RCLONE_CONFIG_T_PROVIDER: "Other", RCLONE_CONFIG_T_ENV_AUTH: "false",
    RCLONE_CONFIG_T_ACCESS_KEY_ID: access, RCLONE_CONFIG_T_SECRET_ACCESS_KEY: secret, RCLONE_CONFIG_T_ENDPOINT: endpoint,
    RCLONE_CONFIG_T_REGION: region, RCLONE_CONFIG_T_FORCE_PATH_STYLE: "true",
  };
}

/** aws-cli v1: the first `aws` on PATH that reports itself as 1.x (pyenv's shim), or undefined. */
export async function findAwsV1(): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    const p = path.join(dir, "aws");
    if (!dir || !existsSync(p)) continue;
    const v = await run(p, ["--version"]).then((r) => r.stdout + r.stderr, () => "");
    if (/^aws-cli\/1\./.test(v.trim())) return p;
  }
  return undefined;
}
