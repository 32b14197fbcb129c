/** `ct create`'s flags: every accepted form, and a clear refusal naming the flag for each malformed one. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { buildContainerSpec, parseEnv, parseLabels, parsePort, parsePorts, parseVolume, parseVolumes, whole, parseCpus } from "./ct-args.js";

const bad = (fn: () => unknown, re: RegExp) => assert.throws(fn, (e: { code?: string; message: string }) => {
  assert.equal(e.code, "invalid_argument", e.message);
  assert.match(e.message, re);
  return true;
});

test("--port: container port alone, host:container, with a host IP (v4, [v6]) and /udp", () => {
  assert.deepEqual(parsePort("80"), { containerPort: 80, hostPort: 0, protocol: "tcp", hostIp: "" });
  assert.deepEqual(parsePort("8080:80"), { containerPort: 80, hostPort: 8080, protocol: "tcp", hostIp: "" });
  assert.deepEqual(parsePort("5353:53/udp"), { containerPort: 53, hostPort: 5353, protocol: "udp", hostIp: "" });
  assert.deepEqual(parsePort("127.0.0.1:8080:80/tcp"), { containerPort: 80, hostPort: 8080, protocol: "tcp", hostIp: "127.0.0.1" });
  assert.deepEqual(parsePort("[::1]:8443:443"), { containerPort: 443, hostPort: 8443, protocol: "tcp", hostIp: "::1" });
});

test("--port: malformed forms, ports out of range, bad protocols and addresses are refused naming the flag", () => {
  bad(() => parsePort("8080:80/sctp"), /^--port 8080:80\/sctp: protocol "sctp": use tcp or udp$/);
  bad(() => parsePort("70000:80"), /^--port 70000:80: host port 70000 is not in 1-65535$/);
  bad(() => parsePort("8080:0"), /container port 0 is not in 1-65535/);
  bad(() => parsePort("web:80"), /host port "web" is not a number \(use \[HOST_IP:\]HOST_PORT:CONTAINER_PORT/);
  bad(() => parsePort("8080:"), /^--port 8080:: use \[HOST_IP:\]HOST_PORT:CONTAINER_PORT\[\/tcp\|udp\] or CONTAINER_PORT/);
  bad(() => parsePort("1.2.3:8080:80"), /"1\.2\.3" is not an IP address/);
  bad(() => parsePort("a:b:c:d"), /use \[HOST_IP:\]HOST_PORT/);
  bad(() => parsePort(""), /use \[HOST_IP:\]HOST_PORT/);
  bad(() => parsePort("-1"), /container port "-1" is not a number/);
});

test("--port: one host port twice is refused (same protocol and overlapping addresses); different protocol, address or engine-picked ports are fine", () => {
  bad(() => parsePorts(["8080:80", "8080:81"]), /^--port 8080:81: host port 8080\/tcp is already mapped by --port 8080:80$/);
  bad(() => parsePorts(["127.0.0.1:8080:80", "8080:81"]), /already mapped by --port 127\.0\.0\.1:8080:80/);
  bad(() => parsePorts(["8080:80", "10.0.0.1:8080:81"]), /already mapped/);
  assert.equal(parsePorts(["8080:80", "8080:80/udp", "80", "81"]).length, 4);
  assert.equal(parsePorts(["127.0.0.1:8080:80", "127.0.0.2:8080:80"]).length, 2);
});

test("--env: KEY=VALUE with '=' and empty values; a missing '=', a bad key or a key twice is refused", () => {
  assert.deepEqual(parseEnv(["A=1", "B=x=y", "C=", "_d9=ok"]), { A: "1", B: "x=y", C: "", _d9: "ok" });
  bad(() => parseEnv(["FOO"]), /^--env FOO: use KEY=VALUE/);
  bad(() => parseEnv(["1X=y"]), /^--env 1X=y: the key "1X" must be letters, digits and '_', not starting with a digit$/);
  bad(() => parseEnv(["A-B=1"]), /the key "A-B"/);
  bad(() => parseEnv(["=v"]), /the key ""/);
  bad(() => parseEnv(["A=1", "A=2"]), /^--env A is given twice$/);
});

test("--volume: NAME:/path[:ro|rw]; host paths, bad names, relative or traversing paths, bad modes and one path twice are refused", () => {
  assert.deepEqual(parseVolume("data:/var/lib/data"), { name: "data", containerPath: "/var/lib/data", readOnly: false });
  assert.deepEqual(parseVolume("models.v1:/models/:ro"), { name: "models.v1", containerPath: "/models", readOnly: true });
  assert.deepEqual(parseVolume("x_1:/x:rw"), { name: "x_1", containerPath: "/x", readOnly: false });
  bad(() => parseVolume("/srv/data:/data"), /^--volume \/srv\/data:\/data: "\/srv\/data" is a host path; a volume is a NAME kept on the node/);
  bad(() => parseVolume("Data:/data"), /the volume name "Data" must be 1-63 lower-case/);
  bad(() => parseVolume("data"), /^--volume data: use NAME:\/container\/path\[:ro\]$/);
  bad(() => parseVolume("data:data"), /the container path "data" must be absolute/);
  bad(() => parseVolume("data:/a/../etc"), /must not contain "\." or "\.\." segments/);
  bad(() => parseVolume("data:/"), /"\/" cannot be mounted over/);
  bad(() => parseVolume("data:/x:rx"), /the mode "rx" must be ro or rw/);
  bad(() => parseVolume("a:/x:ro:z"), /use NAME:\/container\/path\[:ro\]/);
  bad(() => parseVolumes(["a:/x", "b:/x/"]), /^--volume b:\/x\/: \/x is already mounted by --volume a:\/x$/);
});

test("labels, whole numbers, CPUs", () => {
  assert.deepEqual(parseLabels(["team=web", "app.kubernetes.io/name=x"]), { team: "web", "app.kubernetes.io/name": "x" });
  bad(() => parseLabels(["thoc.name=x"]), /thoc\.\* labels are reserved/);
  bad(() => parseLabels(["novalue"]), /use KEY=VALUE/);
  assert.equal(whole("12", "--memory"), 12);
  assert.equal(whole(undefined, "--memory"), undefined);
  bad(() => whole("1.5", "--memory"), /^--memory 1\.5: give a whole number$/);
  bad(() => whole("0", "--health-retries", 1, 1000), /from 1 to 1000/);
  assert.equal(parseCpus("0.5"), 0.5);
  assert.equal(parseCpus(".25"), 0.25);
  bad(() => parseCpus("-1"), /--cpus -1: give a number of CPUs/);
  bad(() => parseCpus("two"), /--cpus two/);
});

test("buildContainerSpec: the whole request from flags and the command after --; inference implied by a model; registry password from a file", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "thoc-ctargs-"));
  const pw = path.join(dir, "pw");
  writeFileSync(pw, "s3cret\n");
  const s = buildContainerSpec("web", {
    image: "bb", port: ["8080:80"], env: ["A=1"], volume: ["data:/data:ro"], gpu: ["GPU-0"], label: ["team=x"], health: "/healthz", healthInterval: "2", healthRetries: "4",
    cpus: "1.5", memory: "256", restart: "always", modelId: "llama", modelPath: "/models/llama", registryUser: "bob", registryPasswordFile: pw,
  }, ["httpd", "-f", "-p", "80"]);
  assert.deepEqual(s, {
    name: "web", kind: "inference", image: "bb", registryAuth: { username: "bob", password: "s3cret" },
    ports: [{ containerPort: 80, hostPort: 8080, protocol: "tcp", hostIp: "" }], volumes: [{ name: "data", containerPath: "/data", readOnly: true }],
    env: { A: "1" }, command: ["httpd", "-f", "-p", "80"], labels: { team: "x" }, cpus: 1.5, memoryMb: 256, gpuDeviceIds: ["GPU-0"],
    healthCheckPath: "/healthz", healthIntervalS: 2, healthRetries: 4, restartPolicy: "always", modelId: "llama", modelPath: "/models/llama",
  });
  const plain = buildContainerSpec("a1", { image: "docker.io/library/nginx:1.27" }, []);
  assert.equal(plain.kind, "app");
  assert.equal(plain.registryAuth, undefined);
  bad(() => buildContainerSpec("Web", { image: "bb" }, []), /container name "Web": use 1-63 lower-case/);
  bad(() => buildContainerSpec("web", {}, []), /--image is required/);
  bad(() => buildContainerSpec("web", { image: "bb", kind: "app", modelId: "x" }, []), /--model-id and --model-path are for --kind inference/);
  bad(() => buildContainerSpec("web", { image: "bb", health: "healthz", port: ["80"] }, []), /--health healthz: give an HTTP path/);
  bad(() => buildContainerSpec("web", { image: "bb", health: "/healthz" }, []), /add a --port/);
  bad(() => buildContainerSpec("web", { image: "bb", registryUser: "bob" }, []), /--registry-user and --registry-password-file go together/);
  bad(() => buildContainerSpec("web", { image: "bb", registryUser: "bob", registryPasswordFile: path.join(dir, "nope") }, []), /--registry-password-file .*nope: cannot read it/);
  bad(() => buildContainerSpec("web", { image: "bb", gpu: ["GPU-0", "GPU-0"] }, []), /--gpu GPU-0 is given twice/);
  bad(() => buildContainerSpec("web", { image: "bb", group: "G" }, []), /--group G/);
  bad(() => buildContainerSpec("web", { image: "bb", modelPath: "models" }, []), /--model-path models: the container path "models" must be absolute/);
});
