/**
 * Pieces the S3 benchmarks share: SigV4 headers for UNSIGNED-PAYLOAD requests
 * (cheap for the client, so the agent's cost dominates), a raw Node HTTP
 * server in its own process for the loopback baseline, and per-process CPU.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, createHmac } from "node:crypto";
import { readFile } from "node:fs/promises";
import http from "node:http";

const hmac = (k: string | Buffer, s: string) => createHmac("sha256", k).update(s).digest();

/** Returns a signer: SigV4 headers (UNSIGNED-PAYLOAD) for method + host + path (+ canonical query string: sorted, encoded) with these credentials. */
export function sigv4(access: string, secret: string, region: string): (method: string, host: string, p: string, query?: string) => Record<string, string> {
  return (method, host, p, query = "") => {
    const amzDate = new Date().toISOString().replace(/[:-]|\.\d{3}/g, "");
    const day = amzDate.slice(0, 8);
    const signed = "host;x-amz-content-sha256;x-amz-date";
    const canon = [method, p, query, `host:${host}`, "x-amz-content-sha256:UNSIGNED-PAYLOAD", `x-amz-date:${amzDate}`, "", signed, "UNSIGNED-PAYLOAD"].join("\n");
    const scope = `${day}/${region}/s3/aws4_request`;
    const sts = ["AWS4-HMAC-SHA256", amzDate, scope, createHash("sha256").update(canon).digest("hex")].join("\n");
    const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), "s3"), "aws4_request");
    return {
      "x-amz-date": amzDate, "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
      authorization: `AWS4-HMAC-SHA256 Credential=${access}/${scope}, SignedHeaders=${signed}, Signature=${hmac(key, sts).toString("hex")}`,
    };
  };
}

/**
 * A raw Node HTTP server in a process of its own: GET /<n> streams n bytes
 * (the loopback ceiling for GET), PUT reads and drops the body (for PUT).
 */
export async function rawServer(host: string): Promise<{ base: URL; stop: () => void }> {
  const code = `const http=require("http");const b=Buffer.alloc(${1 << 20},7);
    http.createServer((q,s)=>{if(q.method==="PUT"){q.on("data",()=>{});q.on("end",()=>s.end());return}
      let n=Number(q.url.slice(1));s.writeHead(200,{"content-length":n});const w=()=>{while(n>0){const c=n<b.length?b.subarray(0,n):b;n-=c.length;if(!s.write(c))return s.once("drain",w)}s.end()};w()})
      .listen(0,"${host}",function(){console.log(this.address().port)})`;
  const child: ChildProcess = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((r) => child.stdout!.once("data", (b: Buffer) => r(Number(b.toString().trim()))));
  return { base: new URL(`http://${host}:${port}`), stop: () => child.kill() };
}

/** CPU seconds a process has used (all its threads). */
export async function cpuSeconds(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/stat`, "utf8");
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** Sends a request body in 1 MiB slices, waiting for drain (a benchmark client must not buffer a 64 MiB body in the socket), then ends it; no body: just ends. */
export function writeBody(req: import("node:http").ClientRequest, body: Buffer | undefined): void {
  if (!body) {
    req.end();
    return;
  }
  let off = 0;
  const pump = (): void => {
    while (off < body.length) {
      const c = body.subarray(off, off + (1 << 20));
      off += c.length;
      if (!req.write(c)) {
        req.once("drain", pump);
        return;
      }
    }
    req.end();
  };
  pump();
}

/**
 * A raw S3 client over `agent`: one SigV4 (UNSIGNED-PAYLOAD) request, a body
 * written in 1 MiB slices (writeBody), the answer counted and dropped (and
 * hashed with `hash`); an error answer rejects with its S3 code and message.
 */
export function s3Requester(access: string, secret: string, region: string, agent: http.Agent) {
  const authHeaders = sigv4(access, secret, region);
  return (base: URL, method: string, p: string, body?: Buffer, hash = false): Promise<{ bytes: number; sha256?: string }> => new Promise((resolve, reject) => {
    const req = http.request({
      host: base.hostname, port: base.port, method, path: p, agent,
      headers: { ...authHeaders(method, base.host, p), ...(method === "PUT" ? { "content-length": String(body?.length ?? 0) } : {}) },
    }, (res) => {
      let bytes = 0;
      let text = "";
      const h = hash ? createHash("sha256") : undefined;
      res.on("data", (c: Buffer) => { bytes += c.length; h?.update(c); if (res.statusCode! >= 300 && text.length < 400) text += c.toString(); });
      res.on("end", () => (res.statusCode! < 300 ? resolve({ bytes, sha256: h?.digest("hex") })
        : reject(new Error(`${method} ${base.host}${p}: HTTP ${res.statusCode} ${(/<Code>(.*?)<\/Code>.*?<Message>(.*?)<\/Message>/s.exec(text) ?? [text]).slice(1).join(": ")}`))));
      res.on("error", reject);
    });
    req.on("error", reject);
    writeBody(req, body);
  });
}
