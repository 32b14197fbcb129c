/**
 * Test certificates with openssl (ECDSA P-256), in the subject format of
 * rpc/identity.ts: node = CN=<nodeId>, O=thoc, OU=node; operator = CN=<name>,
 * O=thoc, OU=viewer|operator|admin. Served to agents through their tls.* files.
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
const openssl = (...a: string[]) => execFileSync("openssl", a, { stdio: "ignore" });

export interface TestCa { dir: string; cert: string; key: string }
export interface TestCert { cert: string; key: string }

export function makeCa(dir: string, name = "ca"): TestCa {
  const cert = path.join(dir, `${name}.crt`), key = path.join(dir, `${name}.key`);
  openssl("req", "-x509", ...EC, "-keyout", key, "-out", cert, "-days", "2", "-subj", `/CN=thoc test ${name}`);
  return { dir, cert, key };
}

/** A certificate signed by `ca` for `subject` ("/CN=x/O=thoc/OU=admin"); `ips` makes it a server certificate too. */
export function issue(ca: TestCa, file: string, subject: string, ips: string[] = []): TestCert {
  const f = (ext: string) => path.join(ca.dir, `${file}.${ext}`);
  openssl("req", ...EC, "-keyout", f("key"), "-out", f("csr"), "-subj", subject);
  writeFileSync(f("ext"), (ips.length ? `subjectAltName=${ips.map((ip) => `IP:${ip}`).join(",")}\nextendedKeyUsage=serverAuth,clientAuth\n` : "extendedKeyUsage=clientAuth\n"));
  openssl("x509", "-req", "-in", f("csr"), "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-out", f("crt"), "-days", "2", "-extfile", f("ext"));
  return { cert: f("crt"), key: f("key") };
}

export const operatorSubject = (name: string, role: string) => `/CN=${name}/O=thoc/OU=${role}`;
export const nodeSubject = (id: string) => `/CN=${id}/O=thoc/OU=node`;
