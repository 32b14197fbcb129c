/**
 * Test face of core/: a throwaway CA and a server certificate signed by it,
 * made with the openssl CLI (a runtime dependency of the agent's packages), for
 * tests of the agent's TLS listeners with real clients.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, writeFileSync } from "node:fs";
import path from "node:path";

export interface TestCertificates {
  /** The CA certificate clients are told to trust. */
  caFile: string;
  certFile: string;
  keyFile: string;
}

/**
 * Writes ca.crt, server.crt and server.key (ECDSA P-256, 0600 key) into `dir`:
 * a CA, and a server certificate for `ips` (IP SANs) and `dns` names.
 */
export function makeTestCertificates(dir: string, ips: string[], dns: string[] = ["localhost"]): TestCertificates {
  const f = (n: string) => path.join(dir, n);
  const ssl = (...args: string[]) => execFileSync("openssl", args, { stdio: ["ignore", "pipe", "pipe"] });
  ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
    "-subj", "/CN=thoc test CA", "-keyout", f("ca.key"), "-out", f("ca.crt"),
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=thoc test server",
    "-keyout", f("server.key"), "-out", f("server.csr"));
  const san = [...ips.map((ip) => `IP:${ip}`), ...dns.map((d) => `DNS:${d}`)].join(",");
  writeFileSync(f("server.ext"), `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n`);
  ssl("x509", "-req", "-in", f("server.csr"), "-CA", f("ca.crt"), "-CAkey", f("ca.key"), "-CAcreateserial", "-days", "2",
    "-extfile", f("server.ext"), "-out", f("server.crt"));
  for (const k of ["server.key", "ca.key"]) chmodSync(f(k), 0o600);
  return { caFile: f("ca.crt"), certFile: f("server.crt"), keyFile: f("server.key") };
}
