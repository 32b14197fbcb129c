import type { ImplOf } from "../rpc/index.js";
import { NodeService } from "../proto/index.js";
import type { Agent } from "./agent.js";

export function nodeService(agent: Agent): ImplOf<typeof NodeService> {
  return {
    async getNode() {
      return { node: agent.describe() };
    },
  };
}
