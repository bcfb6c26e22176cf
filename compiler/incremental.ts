// The compiler as the agent runs it: it holds the cluster's Services and EndpointSlices and
// the compiled unit of every service, and a compile recompiles only the services that changed
// since the last one (a Service or one of its slices set or removed). The result is the same
// as the full compile (compiler/reference/compile.ts) of the same state with the previous
// tables, ids included; the tests hold the two equal.
import type { EndpointSlice, Service } from "./state.ts";
import {
  byName,
  compileService,
  IdAllocator,
  referenceRings,
  serviceKey,
  type CompileOptions,
  type Frontend,
  type RingFiller,
  type ServiceUnit,
  type Tables,
  type Target,
} from "./reference/compile.ts";

/** What one compile changed: for each recompiled service, its unit before and after
 * (an empty unit for a service that did not exist on that side). */
export interface UnitChange {
  service: string;
  before: ServiceUnit;
  after: ServiceUnit;
}

const EMPTY: ServiceUnit = { frontends: [], targets: [] };

export class IncrementalCompiler {
  private readonly services = new Map<string, Service>();
  /** service key -> slice name -> slice */
  private readonly slices = new Map<string, Map<string, EndpointSlice>>();
  /** compiled units, frontends pointing at target ids */
  private readonly units = new Map<string, ServiceUnit>();
  private readonly dirty = new Set<string>();
  private readonly ids = new IdAllocator();

  constructor(
    private readonly opts: Omit<CompileOptions, "previous">,
    private readonly fillRings: RingFiller = referenceRings,
  ) {}

  setService(svc: Service): void {
    const k = serviceKey(svc);
    this.services.set(k, svc);
    this.dirty.add(k);
  }

  deleteService(namespace: string, name: string): void {
    const k = serviceKey({ namespace, name });
    if (this.services.delete(k)) this.dirty.add(k);
  }

  /** A slice moving to another service (its label changed) dirties both. */
  setSlice(sl: EndpointSlice): void {
    this.deleteSlice(sl.namespace, sl.name);
    const k = `${sl.namespace}/${sl.service}`;
    let m = this.slices.get(k);
    if (!m) this.slices.set(k, (m = new Map()));
    m.set(sl.name, sl);
    this.dirty.add(k);
  }

  deleteSlice(namespace: string, name: string): void {
    // slices are few per namespace and service; a reverse index is not worth its upkeep
    for (const [k, m] of this.slices) {
      if (!k.startsWith(`${namespace}/`) || !m.delete(name)) continue;
      if (!m.size) this.slices.delete(k);
      this.dirty.add(k);
      return;
    }
  }

  /** Recompiles the services changed since the last compile, in name order. */
  compile(): UnitChange[] {
    const keys = [...this.dirty].sort();
    this.dirty.clear();
    const changes: UnitChange[] = [];
    const fresh: Target[] = [];
    for (const k of keys) {
      const before = this.units.get(k) ?? EMPTY;
      const svc = this.services.get(k);
      const after = svc ? compileService(svc, [...(this.slices.get(k)?.values() ?? [])].sort(byName), this.opts) : EMPTY;
      this.ids.assign(after.targets, before.targets);
      for (const f of after.frontends) f.target = after.targets[f.target]!.id;
      fresh.push(...after.targets);
      if (svc) this.units.set(k, after);
      else this.units.delete(k);
      changes.push({ service: k, before, after });
    }
    this.ids.done();
    this.fillRings(fresh);
    return changes;
  }

  /** Every unit, flattened in service order: what the full compile returns. */
  tables(): Tables {
    const frontends: Frontend[] = [];
    const targets: Target[] = [];
    for (const k of [...this.units.keys()].sort()) {
      const u = this.units.get(k)!;
      frontends.push(...u.frontends);
      targets.push(...u.targets);
    }
    return { frontends, targets };
  }
}
