/**
 * `thoc-node image ...`: base images on the agent's node. Import streams the
 * files over gRPC with their SHA-256, which the agent checks on arrival.
 */
import { stat } from "node:fs/promises";
import type { Command } from "commander";
import type { ImageService, Image } from "../../proto/index.js";
import type { Client } from "../../rpc/index.js";
import { ThocError } from "../../errors/index.js";
import { agentAddress, connect, globalOpts } from "../connect.js";
import { bytes, fail, outputFormat, outputOptions, printJson, table } from "../output.js";
import { Progress } from "../progress.js";
import { fileChunks, sha256File } from "../transfer.js";


export function imageJson(i: Image | undefined): unknown {
  if (!i) return null;
  return {
    name: i.name, kind: i.kind, cmdline: i.cmdline || undefined, virtualSize: i.virtualSize || undefined,
    createdAt: new Date(Number(i.createdAtMs)).toISOString(), usedBy: i.usedBy,
    files: i.files.map((f) => ({ part: f.part, size: f.size, sha256: f.sha256, format: f.format || undefined })),
  };
}

export function registerImage(program: Command): void {
  const image = program.command("image").description("base images VMs boot from, kept on the node with checksums");
  const withClient = (fn: (client: Client<typeof ImageService.method>, ...a: never[]) => Promise<void>) =>
    async (...args: unknown[]) => {
      const g = globalOpts(args[args.length - 1] as Command);
      const client = await connect((p) => p.ImageService, g);
      try { await (fn as (...x: unknown[]) => Promise<void>)(client, ...args.slice(0, -1)); } catch (err) { fail(err, agentAddress(g)); } finally { client.close(); }
    };

  image.command("import <name> [file]").description("import a qcow2/raw disk image FILE, or a direct-kernel-boot image (--kernel, --initrd, --cmdline)")
    .option("--kernel <file>", "kernel for direct kernel boot").option("--initrd <file>", "initramfs for direct kernel boot")
    .option("--cmdline <text>", "kernel command line", "").option("--replace", "replace an existing image of that name")
    .option("--no-progress", "no progress on stderr (by default a bar on a terminal, else a line every few seconds)")
    .option("--json", "print one JSON document")
    .action(withClient(async (client, name: string, file: string | undefined, o: { kernel?: string; initrd?: string; cmdline: string; replace?: boolean; progress: boolean; json?: boolean }) => {
      const parts: [string, string][] = [];
      if (file) parts.push(["disk", file]);
      if (o.kernel) parts.push(["kernel", o.kernel]);
      if (o.initrd) parts.push(["initrd", o.initrd]);
      if (!parts.length) throw new ThocError("invalid_argument", "give a disk image FILE, or --kernel FILE [--initrd FILE] [--cmdline TEXT]");
      if (file && o.kernel) throw new ThocError("invalid_argument", "an image is a disk FILE or a --kernel, not both");
      const sums: Record<string, string> = {};
      let total = 0;
      for (const [part, f] of parts) {
        const s = await stat(f).catch(() => undefined);
        if (!s?.isFile()) throw new ThocError("invalid_argument", `${part} ${f}: no such file`);
        total += s.size;
      }
      // Both passes read every byte: a multi-GiB image spends a while in the checksum before the first byte goes out.
      const hashing = o.progress ? new Progress(`checksum ${name}`, total) : undefined;
      for (const [part, f] of parts) sums[part] = await sha256File(f, hashing);
      hashing?.finish();
      const sending = o.progress ? new Progress(`upload ${name}`, total) : undefined;
      async function* chunks() {
        yield { meta: { name, cmdline: o.cmdline, sha256: sums, replace: Boolean(o.replace) }, part: "", data: new Uint8Array() };
        for (const [part, f] of parts) {
          for await (const c of fileChunks(f, sending)) yield { part, data: c };
        }
        sending?.finish();
      }
      const { image: img } = await client.importImage(chunks(), { timeoutMs: 3_600_000 });
      if (o.json) printJson(imageJson(img)); else console.log(`image ${img?.name} imported (${img?.kind}, ${img?.files.map((f) => `${f.part} ${bytes(f.size)} sha256:${f.sha256.slice(0, 12)}`).join(", ")})`);
    }));

  outputOptions(image.command("list").description("images on the node"))
    .action(withClient(async (client, o: { output?: string; json?: boolean }) => {
      const format = outputFormat(o);
      const { images } = await client.listImages({});
      if (format === "json") return printJson(images.map(imageJson));
      const wide = format === "wide";
      console.log(table([["NAME", "KIND", "SIZE", "SHA256", "USED BY", ...(wide ? ["VIRTUAL SIZE", "CREATED", "FILES"] : [])], ...images.map((i) => [i.name, i.kind + (i.files[0]?.format ? `/${i.files[0].format}` : ""),
        bytes(i.files.reduce((n, f) => n + f.size, 0n)), i.files[0]?.sha256.slice(0, wide ? 64 : 16) ?? "", i.usedBy.join(",") || "-",
        ...(wide ? [i.virtualSize ? bytes(i.virtualSize) : "-", new Date(Number(i.createdAtMs)).toISOString(), i.files.map((f) => `${f.part}:${bytes(f.size)}`).join(",")] : [])])]));
    }));

  image.command("show <name>").description("one image").option("--json", "print one JSON document")
    .action(withClient(async (client, name: string, o: { json?: boolean }) => {
      const { image: i } = await client.getImage({ name });
      if (o.json) return printJson(imageJson(i));
      console.log(JSON.stringify(imageJson(i), (_k, x) => (typeof x === "bigint" ? Number(x) : x), 2));
    }));

  image.command("delete <name>").description("delete an image no VM uses")
    .action(withClient(async (client, name: string) => { await client.deleteImage({ name }); console.log(`image ${name} deleted`); }));
}
