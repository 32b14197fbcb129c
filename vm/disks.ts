/** VM disks: qcow2 overlays over a base image (or blank), sized with qemu-img. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { ThocError } from "../errors/index.js";

const run = promisify(execFile);

async function qemuImg(args: string[], timeout = 60_000): Promise<string> {
  try {
    const { stdout } = await run("qemu-img", args, { timeout, maxBuffer: 16 << 20 });
    return stdout;
  } catch (err) {
    const e = err as { code?: string; stderr?: string; message: string };
    if (e.code === "ENOENT") throw new ThocError("failed_precondition", "qemu-img is not installed: apt-get install qemu-utils");
    throw new ThocError("invalid_argument", `qemu-img ${args[0]}: ${e.stderr?.trim() || e.message}`);
  }
}

export interface ImgInfo { format: string; virtualSize: number; actualSize: number; backing?: string }

export async function imgInfo(file: string): Promise<ImgInfo> {
  const j = JSON.parse(await qemuImg(["info", "--output=json", file])) as { format: string; "virtual-size": number; "actual-size"?: number; "backing-filename"?: string };
  return { format: j.format, virtualSize: j["virtual-size"], actualSize: j["actual-size"] ?? 0, backing: j["backing-filename"] };
}

/** A qcow2 overlay of sizeGB over base (qcow2 or raw), or a blank qcow2 when base is undefined. */
export async function createOverlay(file: string, sizeGB: number, base?: { file: string; format: string }): Promise<void> {
  const args = ["create", "-q", "-f", "qcow2"];
  if (base) args.push("-F", base.format, "-b", base.file);
  args.push(file, `${sizeGB}G`);
  await qemuImg(args);
}
