/** A busybox initramfs for direct-kernel boot tests and benchmarks (busybox-static, cpio, gzip). */
import { execFileSync } from "node:child_process";
import { chmod, copyFile, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";

export const MARKER = "THOC-BOOT-OK";

/** The newest /boot/vmlinuz-* (Debian's linux-image-amd64). */
export function hostKernel(): string {
  const k = execFileSync("sh", ["-c", "ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1"], { encoding: "utf8" }).trim();
  if (!k) throw new Error("no /boot/vmlinuz-*: apt-get install linux-image-amd64");
  return k;
}

/** Builds dir/initrd.gz: /init prints the marker every second and echoes what arrives on the console as got:LINE. */
export async function buildInitramfs(dir: string): Promise<string> {
  const root = path.join(dir, "initramfs");
  for (const d of ["bin", "dev", "proc", "sys"]) await mkdir(path.join(root, d), { recursive: true });
  await copyFile("/bin/busybox", path.join(root, "bin", "busybox"));
  await chmod(path.join(root, "bin", "busybox"), 0o755);
  await writeFile(path.join(root, "init"), [
    "#!/bin/busybox sh",
    "/bin/busybox --install -s /bin",
    "mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev 2>/dev/null",
    `echo "${MARKER} init"`,
    "i=0",
    `while true; do i=$((i+1)); echo "${MARKER} $i"; if read -t 1 line; then echo "got:$line"; fi; done`,
    "",
  ].join("\n"), { mode: 0o755 });
  const out = path.join(dir, "initrd.gz");
  execFileSync("sh", ["-c", `cd '${root}' && find . | cpio -o -H newc 2>/dev/null | gzip -1 > '${out}'`]);
  return out;
}
