/** validateContainerSpec and the protobuf mapping: every refusal names its field; secrets never come back. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { ContainerSpecSchema, CreateContainerRequestSchema } from "../proto/index.js";
import { containerToPb, specToPb } from "./pb.js";
import { createOptionsFromPb, envOf, specFromPb, validateContainerSpec, volumesOf, type ContainerSpecInput } from "./spec.js";
import type { ContainerRecord } from "./types.js";

const ok = (s: ContainerSpecInput) => validateContainerSpec({ name: "web", image: "bb:1", ...s });
const refused = (s: ContainerSpecInput, field: string, re: RegExp) =>
  assert.throws(() => ok(s), (e: { code?: string; message: string; details?: { field?: string } }) => {
    assert.equal(e.code, "invalid_argument", e.message);
    assert.equal(e.details?.field, field, e.message);
    assert.match(e.message, re);
    return true;
  });

test("defaults: app, on-failure, tcp, health every 5 s after 3 failures; registry read off the reference", () => {
  const s = ok({ ports: [{ containerPort: 80, hostPort: 8080 }], healthCheckPath: "/healthz" });
  assert.equal(s.kind, "app");
  assert.equal(s.restartPolicy, "on-failure");
  assert.deepEqual(s.ports, [{ containerPort: 80, hostPort: 8080, protocol: "tcp", hostIp: "" }]);
  assert.equal(s.healthIntervalS, 5);
  assert.equal(s.healthRetries, 3);
  assert.equal(s.registry, "", "an imported image's name has no registry");
  assert.equal(ok({ image: "ghcr.io/o/x:1" }).registry, "ghcr");
  assert.equal(ok({ image: "docker.io/library/nginx:1.27" }).registry, "docker-hub");
  assert.equal(ok({ image: "registry.local:5000/team/app:2" }).registry, "private");
  assert.equal(validateContainerSpec({ name: "a", image: "x", healthCheckPath: "/h", ports: [{ containerPort: 1 }] }, { intervalS: 9, retries: 7 }).healthIntervalS, 9, "the node's defaults");
});

test("names, image, kind, policy, resources", () => {
  for (const name of ["Web", "-web", "a_b", "a".repeat(64), ""]) refused({ name }, "name", /not a container name/);
  assert.equal(ok({ name: "a".repeat(63) }).name.length, 63);
  refused({ image: "" }, "image", /missing/);
  refused({ image: "bad image" }, "image", /not an image reference/);
  refused({ kind: "vm" }, "kind", /use app or inference/);
  refused({ restartPolicy: "sometimes" }, "restartPolicy", /no, on-failure or always/);
  refused({ cpus: -1 }, "cpus", /use 0/);
  refused({ cpus: Number.NaN }, "cpus", /use 0/);
  refused({ memoryMB: 3 }, "memoryMB", /at least 6 MiB/);
  refused({ memoryMB: 1.5 }, "memoryMB", /at least 6 MiB/);
  refused({ gpuDeviceIds: ["GPU-0", "GPU-0"] }, "gpuDeviceIds[1]", /twice/);
  refused({ gpuDeviceIds: ["bad id"] }, "gpuDeviceIds[0]", /not a GPU id/);
  refused({ registryAuth: { username: "", password: "p" } }, "registryAuth.username", /needs a username/);
  refused({ labels: { "thoc.name": "x" } }, "labels.thoc.name", /agent's own/);
});

test("ports: ranges, protocol, host IP, no host port twice", () => {
  refused({ ports: [{ containerPort: 0 }] }, "ports[0].containerPort", /1-65535/);
  refused({ ports: [{ containerPort: 70000 }] }, "ports[0].containerPort", /1-65535/);
  refused({ ports: [{ containerPort: 80, hostPort: 65536 }] }, "ports[0].hostPort", /1-65535/);
  refused({ ports: [{ containerPort: 80, protocol: "sctp" as "tcp" }] }, "ports[0].protocol", /tcp or udp/);
  refused({ ports: [{ containerPort: 80, hostIp: "localhost" }] }, "ports[0].hostIp", /not an IP/);
  refused({ ports: [{ containerPort: 80, hostPort: 8080 }, { containerPort: 81, hostPort: 8080 }] }, "ports[1].hostPort", /8080\/tcp is mapped twice/);
  assert.equal(ok({ ports: [{ containerPort: 53, hostPort: 5353 }, { containerPort: 53, hostPort: 5353, protocol: "udp" }] }).ports.length, 2, "tcp and udp on one port");
  assert.equal(ok({ ports: [{ containerPort: 80 }, { containerPort: 81 }] }).ports.length, 2, "several engine-picked ports");
  refused({ healthCheckPath: "/h" }, "healthCheckPath", /map one/);
  refused({ healthCheckPath: "healthz", ports: [{ containerPort: 80 }] }, "healthCheckPath", /HTTP path/);
});

test("env keys and volumes: syntax, path traversal, mount points", () => {
  for (const k of ["1A", "A-B", "A B", ""]) refused({ env: { [k]: "v" } }, `env.${k}`, /not an environment variable name/);
  assert.deepEqual(ok({ env: { _A1: "x=y" } }).env, { _A1: "x=y" });
  refused({ env: { A: "a\0b" } }, "env.A", /NUL/);
  refused({ volumes: [{ name: "../etc", containerPath: "/data" }] }, "volumes[0].name", /not a volume name/);
  refused({ volumes: [{ name: "Data", containerPath: "/data" }] }, "volumes[0].name", /not a volume name/);
  refused({ volumes: [{ name: "data", containerPath: "data" }] }, "volumes[0].containerPath", /not absolute/);
  refused({ volumes: [{ name: "data", containerPath: "/data/../../etc" }] }, "volumes[0].containerPath", /climbs out/);
  refused({ volumes: [{ name: "data", containerPath: "/" }] }, "volumes[0].containerPath", /cannot be a mount point/);
  refused({ volumes: [{ name: "a", containerPath: "/d" }, { name: "b", containerPath: "/d/" }] }, "volumes[1].containerPath", /mounted twice/);
  assert.deepEqual(ok({ volumes: [{ name: "data.v1", containerPath: "/var//lib/x/" }] }).volumes, [{ name: "data.v1", containerPath: "/var/lib/x", readOnly: false }]);
});

test("inference: the model as THOC_MODEL_ID / THOC_MODEL_PATH, a VOLUME:/path model mounted read-only; apps take no model", () => {
  refused({ modelId: "llama" }, "modelId", /only inference containers/);
  const a = ok({ kind: "inference", modelId: "meta/llama-3", modelPath: "/models/llama" });
  assert.deepEqual(envOf(a), { THOC_MODEL_ID: "meta/llama-3", THOC_MODEL_PATH: "/models/llama" });
  assert.deepEqual(volumesOf(a), []);
  const b = ok({ kind: "inference", modelPath: "models:/models/llama", volumes: [{ name: "cache", containerPath: "/cache" }] });
  assert.deepEqual(envOf(b), { THOC_MODEL_PATH: "/models/llama" });
  assert.deepEqual(volumesOf(b), [{ name: "cache", containerPath: "/cache", readOnly: false }, { name: "models", containerPath: "/models/llama", readOnly: true }]);
  refused({ kind: "inference", modelPath: "models:/../etc" }, "modelPath", /climbs out/);
  refused({ kind: "inference", modelPath: "models/llama" }, "modelPath", /not absolute/);
  refused({ kind: "inference", modelId: "x", env: { THOC_MODEL_ID: "y" } }, "env.THOC_MODEL_ID", /set by the agent/);
});

test("protobuf: specFromPb -> validate -> specToPb round-trips; the registry password goes to the create options only and never comes back", () => {
  const pb = create(ContainerSpecSchema, {
    name: "web", image: "ghcr.io/o/web:1", registryAuth: { username: "bot", password: "s3cret" },
    ports: [{ containerPort: 80, hostPort: 8080 }], volumes: [{ name: "data", containerPath: "/data", readOnly: true }],
    env: { A: "1" }, command: ["sh", "-c", "sleep inf"], cpus: 0.5, memoryMb: 256, healthCheckPath: "/healthz", restartPolicy: "always", labels: { team: "x" },
  });
  const s = validateContainerSpec(specFromPb(pb));
  assert.equal(s.registryUser, "bot");
  assert.ok(!JSON.stringify(s).includes("s3cret"), "the validated spec holds no password");
  const opts = createOptionsFromPb(create(CreateContainerRequestSchema, { spec: pb, noStart: true, group: "g", requestId: "r1" }));
  assert.deepEqual(opts, { noStart: true, group: "g", requestId: "r1", registryPassword: "s3cret" });
  const back = specToPb(s);
  assert.equal(back.registryAuth?.password, "");
  assert.equal(back.registryAuth?.username, "bot");
  assert.deepEqual(validateContainerSpec(specFromPb(create(ContainerSpecSchema, back))), s, "round trip");
  const rec: ContainerRecord = {
    name: "web", uuid: "u", engineId: "e", spec: s, status: "running", health: "healthy", detail: "", desiredState: "running", node: "n1",
    createdAt: 1, startedAt: 2, exitCode: 0, restartCount: 1, ports: [{ containerPort: 80, hostPort: 8080, protocol: "tcp", hostIp: "" }],
    gpus: [{ vm: "web", mode: "passthrough", pciAddress: "0000:3b:00.0" }], imageId: "sha256:x",
  };
  const c = containerToPb(rec, "node-id");
  assert.equal(c.nodeId, "node-id");
  assert.equal(c.registryAuthSet, true);
  assert.deepEqual(c.gpuDevices, ["0000:3b:00.0"]);
  assert.ok(!JSON.stringify(c, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v)).includes("s3cret"));
  assert.throws(() => specFromPb(undefined), /spec: missing/);
});
