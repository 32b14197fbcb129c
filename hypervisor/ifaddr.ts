/**
 * A guest's addresses through virDomainInterfaceAddresses. Its own file, out
 * of libvirt.ts: the array libvirt hands over is freed element by element, and
 * the decoding of its structs lives with the other struct layouts in ffi.ts.
 */
import { decodeInterface, Libvirt, VIR, type Ptr } from "./ffi.js";
import type { AddressSource, GuestInterface } from "./types.js";

const SOURCE: Record<AddressSource, number> = { lease: VIR.DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, agent: VIR.DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT };

export async function interfaceAddresses(lv: Libvirt, conn: Ptr, dom: Ptr, name: string, source: AddressSource): Promise<GuestInterface[]> {
  const out: [Ptr | null] = [null];
  // The agent source waits on the guest: the async path, like every call that talks to libvirtd.
  const n = await lv.call<number>("virDomainInterfaceAddresses", dom, out, SOURCE[source], 0);
  // The test driver reports "this function is not supported by the connection driver": unimplemented.
  if (n < 0) throw lv.error(`addresses of ${name} (${source})`, conn, "unavailable");
  const ifaces = lv.takePointerArray(out[0], n);
  try {
    return ifaces.map(decodeInterface);
  } finally {
    for (const p of ifaces) lv.sync("virDomainInterfaceFree", p);
  }
}
