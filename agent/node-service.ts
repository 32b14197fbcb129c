import type { ImplOf } from "../rpc/index.js";
import type { Node, NodeService } from "../proto/index.js";

/** NodeService over whatever describes this node (the Agent), passed in so this file does not import agent.ts. */
export function nodeService(describe: () => Node): ImplOf<typeof NodeService> {
  return {
    async getNode() {
      return { node: describe() };
    },
  };
}
