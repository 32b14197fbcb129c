/**
 * The engine an agent has when none can be reached or none is built in: every
 * call answers unavailable with where it looked and why, so `ct` commands and
 * the subsystem's health say the same clear thing.
 */
import { ThocError } from "../errors/index.js";
import type { ContainerEngine } from "./types.js";

export class UnavailableEngine implements ContainerEngine {
  constructor(readonly uri: string, readonly why: string) {}

  private fail(): never {
    throw new ThocError("unavailable", `no container engine at ${this.uri}: ${this.why}`, { uri: this.uri });
  }

  async ping(): Promise<never> { this.fail(); }
  async info(): Promise<never> { this.fail(); }
  async loadImage(): Promise<never> { this.fail(); }
  async imageId(): Promise<never> { this.fail(); }
  async pullImage(): Promise<never> { this.fail(); }
  async removeImage(): Promise<never> { this.fail(); }
  async create(): Promise<never> { this.fail(); }
  async start(): Promise<never> { this.fail(); }
  async stop(): Promise<never> { this.fail(); }
  async restart(): Promise<never> { this.fail(); }
  async remove(): Promise<never> { this.fail(); }
  async inspect(): Promise<never> { this.fail(); }
  async list(): Promise<never> { this.fail(); }
  async *logs(): AsyncIterable<never> { this.fail(); }
  async exec(): Promise<never> { this.fail(); }
  async stats(): Promise<never> { this.fail(); }
  async *events(): AsyncIterable<never> { this.fail(); }
  async close(): Promise<void> {}
}
