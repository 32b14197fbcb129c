/**
 * ContainerService's three image calls over the ContainerImageStore
 * (images.ts); container/rpc.ts spreads them into the service. The store is
 * cluster-wide (the object store), so any node answers them for the cluster.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ContainerService, ContainerImageSchema } from "../proto/index.js";
import type { ImplOf } from "../rpc/index.js";
import type { ContainerEngine } from "../engine/index.js";
import { ThocError } from "../errors/index.js";
import type { ContainerImageRecord, ContainerImageStore } from "./images.js";

type Impl = ImplOf<typeof ContainerService>;
export type ContainerImageHandlers = Pick<Impl, "importContainerImage" | "listContainerImages" | "deleteContainerImage">;

export function containerImageToPb(r: ContainerImageRecord): MessageInitShape<typeof ContainerImageSchema> {
  return { name: r.name, sha256: r.sha256, size: BigInt(r.size), importedAtMs: BigInt(r.importedAt), refs: r.refs };
}

/** The engine as the subsystem has it: absent (or a getter answering undefined) when none answers on this node. */
export type EngineRef = ContainerEngine | (() => ContainerEngine | undefined) | undefined;

export function containerImageHandlers(store: ContainerImageStore, engine?: EngineRef): ContainerImageHandlers {
  const engineNow = () => (typeof engine === "function" ? engine() : engine);
  return {
    async importContainerImage(reqs) {
      const it = reqs[Symbol.asyncIterator]();
      const first = await it.next();
      if (first.done) throw new ThocError("invalid_argument", "no image sent: the first message names the image");
      const meta = first.value;
      if (!meta.name) throw new ThocError("invalid_argument", "the first message must carry the image's name");
      async function* data(): AsyncGenerator<Uint8Array> {
        if (meta.data.length) yield meta.data;
        for (let r = await it.next(); !r.done; r = await it.next()) if (r.value.data.length) yield r.value.data;
      }
      const rec = await store.import(meta.name, data(), { size: meta.size ? Number(meta.size) : undefined, sha256: meta.sha256 || undefined, replace: meta.replace });
      return containerImageToPb(rec);
    },
    async listContainerImages() {
      return { images: (await store.list()).map(containerImageToPb) };
    },
    async deleteContainerImage(req) {
      const rec = await store.delete(req.name);
      // This node's engine copy goes too when no container uses it (the engine refuses otherwise: kept, nothing to do).
      const e = engineNow();
      if (e && rec.imageId) await e.removeImage(rec.imageId).catch(() => {});
      return {};
    },
  };
}
