/**
 * The composition root: which subsystems an agent runs, in which order, and
 * what each gets from the others. Dependencies are passed here, typed, so a
 * subsystem that needs another names it in its constructor and a wrong order
 * is a type error (or, for a dependency used before it started, a clear
 * failed_precondition at start), never a silent "every peer is down".
 *
 * Only `thoc-node agent` loads this file (lazily): it pulls in every
 * subsystem, koffi and LevelDB included.
 */
import type { Config } from "../config/index.js";
import type { Subsystem } from "../core/index.js";
import { MembershipSubsystem } from "../membership/index.js";
import { ObjectStoreSubsystem } from "../objectstore/index.js";
import { VmSubsystem } from "../vm/index.js";
import { ContainerSubsystem, containerToPb, specFromPb as containerSpecFromPb } from "../container/index.js";
import { SchedulerSubsystem, SCHEDULER_TABLES } from "../scheduler/index.js";

/** The subsystems every agent runs, in start order (stopped in reverse). */
export function createSubsystems(_config: Config): Subsystem[] {
  const membership = new MembershipSubsystem();
  const objectStore = new ObjectStoreSubsystem({ membership, clusterService: membership, tables: SCHEDULER_TABLES });
  // The VM subsystem serves VmService through the scheduler's routing and reports every VM change to it.
  const vmDeps: ConstructorParameters<typeof VmSubsystem>[0] = { objectStore };
  const vm = new VmSubsystem(vmDeps);
  // Containers share the node's GPU ledger and CPU/RAM budget with VMs, each side counting the other's reservations.
  const containerDeps: ConstructorParameters<typeof ContainerSubsystem>[0] = { objectStore, vm: () => vm.manager };
  const container = new ContainerSubsystem(containerDeps);
  vmDeps.foreignReservations = () => container.reservations();
  // The scheduler places containers like VMs, routes ContainerService calls and keeps their table entries.
  const scheduler = new SchedulerSubsystem({
    membership, objectStore, vm,
    containers: () => {
      const m = container.manager();
      return m && {
        available: () => m.engineState().up,
        create: (s, o) => m.create(s, o), get: (n) => m.get(n), list: () => m.list(), delete: (n, o) => m.delete(n, o),
        specFromPb: (pb) => m.validate(containerSpecFromPb(pb)), toPb: (r) => containerToPb(r),
      };
    },
  });
  containerDeps.routeContainerService = (local) => scheduler.routeContainerService(local);
  containerDeps.onContainerChange = (c) => scheduler.onContainerChange(c);
  vmDeps.routeVmService = (local) => scheduler.routeVmService(local);
  vmDeps.onVmChange = (c) => scheduler.onVmChange(c);
  vmDeps.autostartVeto = (r) => scheduler.autostartVeto(r);
  return [membership, objectStore, vm, container, scheduler];
}
