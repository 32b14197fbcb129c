/** Listeners, written once: every listener of the agent says the same thing when its port is taken. */
import type net from "node:net";
import { hostPort } from "../config/index.js";
import { listenError } from "../errors/index.js";

/**
 * Binds a server (HTTP, WebSocket, raw TCP) and resolves with the bound port;
 * a port in use or a missing address rejects with failed_precondition and a
 * message that names the listener and the flag that moves it.
 */
export function listen(server: net.Server, host: string, port: number, what: string, flag: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => reject(listenError(err, what, hostPort(host, port), flag));
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}
