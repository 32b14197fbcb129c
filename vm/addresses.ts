/**
 * A running VM's IP addresses for `vm list`/`vm show`, asked of libvirt when
 * listed (not stored: a DHCP lease changes under us, and a stored address
 * would be shown stale after it did).
 *
 * The DHCP lease is asked first: it needs nothing in the guest, and answers
 * for guests on libvirt's own networks. A guest on a bridge to the outside
 * network (our default, bridge-vlan) has no lease libvirt knows, so the QEMU
 * guest agent is asked next, when the guest runs one. Neither is an error:
 * the address is then unknown and the list shows the configured one.
 */
import type { AddressSource, GuestInterface, Hypervisor } from "../hypervisor/index.js";

const SOURCES: AddressSource[] = ["lease", "agent"];
/** A guest agent that does not answer must not hold up a listing of every VM. */
const ASK_TIMEOUT_MS = 2000;

/** Addresses worth showing: not loopback, not IPv6 link-local (the agent reports the guest's lo and fe80::). */
const shown = (a: GuestInterface["addresses"][number]) => a.address && !/^127\.|^::1$|^fe80:/i.test(a.address);

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<undefined>((r) => { t = setTimeout(() => r(undefined), ms); })]).finally(() => clearTimeout(t));
}

/** "addr/prefix" of the domain's addresses from the first source that knows any; [] when none does. */
export async function guestAddresses(hv: Hypervisor, domain: string, timeoutMs = ASK_TIMEOUT_MS): Promise<string[]> {
  for (const source of SOURCES) {
    const ifaces = await withTimeout(hv.interfaceAddresses(domain, source).catch(() => undefined), timeoutMs);
    const found = (ifaces ?? []).flatMap((i) => i.addresses.filter(shown).map((a) => `${a.address}/${a.prefix}`));
    if (found.length) return found;
  }
  return [];
}
