/** KeyService (proto/thoc/node/v1/keys.proto) over the key registry. */
import { KeyService } from "../../proto/index.js";
import type { ImplOf } from "../../rpc/index.js";
import type { KeyInfo, KeyRegistry } from "./registry.js";

const toProto = (k: KeyInfo) => ({
  accessKeyId: k.accessKeyId, owner: k.owner, description: k.description, createdAtMs: BigInt(k.createdAt), root: k.root,
});

export function keyService(reg: KeyRegistry): ImplOf<typeof KeyService> {
  return {
    async createKey(req) {
      const { key, secretKey } = await reg.create(req.owner || undefined, req.description);
      return { key: toProto(key), secretKey };
    },
    async listKeys() {
      return { keys: (await reg.list()).map(toProto) };
    },
    async deleteKey(req) {
      await reg.delete(req.accessKeyId);
      return {};
    },
  };
}
