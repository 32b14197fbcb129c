/**
 * `thoc-node s3 key create | list | delete`: S3 access keys. The secret is
 * printed once, by create; list never shows secrets.
 */
import type { Command } from "commander";
import type { KeyService, S3Key } from "../../proto/index.js";
import type { Client } from "../../rpc/index.js";
import { agentAddress, connect, globalOpts } from "../connect.js";
import { fail, outputFormat, outputOptions, printJson, table } from "../output.js";

const keyJson = (k: S3Key) => ({
  accessKeyId: k.accessKeyId, owner: k.owner, description: k.description || undefined, root: k.root,
  createdAt: k.createdAtMs ? new Date(Number(k.createdAtMs)).toISOString() : undefined,
});

export function registerS3(program: Command): void {
  const key = program.command("s3").description("S3 object storage").command("key").description("S3 access keys (for aws, rclone, SDKs)");
  const run = (fn: (client: Client<typeof KeyService.method>, ...a: never[]) => Promise<void>) =>
    async (...args: unknown[]) => {
      const g = globalOpts(args[args.length - 1] as Command);
      const client = await connect((p) => p.KeyService, g);
      try { await (fn as (...x: unknown[]) => Promise<void>)(client, ...args.slice(0, -1)); } catch (err) { fail(err, agentAddress(g)); } finally { client.close(); }
    };

  key.command("create").description("create an access key; its secret is shown now and never again")
    .option("--owner <name>", "identity that owns the buckets this key creates", "root")
    .option("--description <text>", "a note to recognise the key by", "")
    .option("--json", "print one JSON document")
    .action(run(async (client, o: { owner: string; description: string; json?: boolean }) => {
      const r = await client.createKey({ owner: o.owner, description: o.description });
      if (!r.key) throw new Error("agent returned no key");
      if (o.json) return printJson({ ...keyJson(r.key), secretKey: r.secretKey });
      process.stdout.write([
        table([["access key id", r.key.accessKeyId], ["secret key", r.secretKey], ["owner", r.key.owner]]),
        "",
        "The secret is shown only now: store it (e.g. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).",
        "",
      ].join("\n"));
    }));

  outputOptions(key.command("list").description("list access keys (never their secrets)"))
    .action(run(async (client, o: { output?: string; json?: boolean }) => {
      const format = outputFormat(o);
      const { keys } = await client.listKeys({});
      if (format === "json") return printJson(keys.map(keyJson));
      const wide = format === "wide";
      // Wide: the ROOT column on its own (the table folds it into DESCRIPTION).
      const rows: string[][] = [["ACCESS KEY ID", "OWNER", "CREATED", ...(wide ? ["ROOT"] : []), "DESCRIPTION"]];
      for (const k of keys) {
        const j = keyJson(k);
        const created = j.createdAt ?? (k.root ? "(config)" : "");
        rows.push([j.accessKeyId, j.owner, created, ...(wide ? [k.root ? "yes" : "no"] : []), k.root && !wide ? `root${j.description ? `: ${j.description}` : ""}` : j.description ?? ""]);
      }
      console.log(table(rows));
    }));

  key.command("delete <accessKeyId>").description("delete an access key; requests signed with it fail from now on")
    .option("--json", "print one JSON document")
    .action(run(async (client, id: string, o: { json?: boolean }) => {
      await client.deleteKey({ accessKeyId: id });
      if (o.json) printJson({ deleted: id });
      else console.log(`deleted ${id}`);
    }));
}
