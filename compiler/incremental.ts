// The compiler as the agent runs it: it holds the cluster's Services, its EndpointSlices in
// the form the unit compiler reads (packed, for compiler.wasm) and the compiled unit of every
// service, and a compile recompiles only the services that changed
// since the last one (a Service or one of its slices set or removed). The result is the same
// as the full compile (compiler/reference/compile.ts) of the same state with the previous
// tables, ids included; the tests hold the two equal.
import type { ClusterState, EndpointSlice, Service } from "./state.ts";
import { conflictMessage, IdAllocator, ownFrontends, referenceUnits, serviceKey, sliceServiceKey, type CompileOptions, type UnitCompiler } from "./reference/compile.ts";
import { frontendKey, type Frontend, type ServiceUnit, type Tables, type Target, type UnitChange } from "./tables.ts";

const EMPTY: ServiceUnit = { frontends: [], targets: [] };

/** The services claiming a frontend key: one (nearly always), or several in conflict. */
type Claim = string | string[];

/** What is held of one service (by its key): one record, not a map per part of it. */
interface Entry<L> {
  service?: Service;
  /** its slices in name order, as the unit compiler holds them (they may come before it) */
  slices: Array<{ name: string; slice: L }>;
  /** its compiled unit with every frontend it claims, pointing at target ids */
  raw?: ServiceUnit;
  /** the same with only the frontends it owns: what the tables hold */
  unit?: ServiceUnit;
}

export class IncrementalCompiler<L = EndpointSlice> {
  private readonly entries = new Map<string, Entry<L>>();
  private services = 0;
  /** the slice's own namespace/name -> the service key it is filed under */
  private readonly sliceOwner = new Map<string, string>();
  /** frontend key -> services claiming it */
  private readonly claims = new Map<string, Claim>();
  private readonly dirty = new Set<string>();
  private readonly ids = new IdAllocator();

  private readonly engine: UnitCompiler<L>;

  /** `units` must be made for the same options (referenceUnits by default). */
  constructor(opts: Omit<CompileOptions, "previous">, units?: UnitCompiler<L>) {
    this.engine = units ?? (referenceUnits(opts) as unknown as UnitCompiler<L>);
  }

  /** Every Service and slice of a state, as set one by one. */
  load(state: ClusterState): void {
    for (const s of state.services) this.setService(s);
    for (const s of state.slices) this.setSlice(s);
  }

  /** The Services as checked and held (for the agent's /v1/state), sorted by namespace/name. */
  serviceList(): Service[] {
    return [...this.entries.values()].flatMap((e) => (e.service ? [e.service] : [])).sort((a, b) => (a.namespace + "/" + a.name < b.namespace + "/" + b.name ? -1 : 1));
  }

  counts(): { services: number; slices: number } {
    return { services: this.services, slices: this.sliceOwner.size };
  }

  private entry(k: string): Entry<L> {
    let e = this.entries.get(k);
    if (!e) this.entries.set(k, (e = { slices: [] }));
    return e;
  }

  setService(svc: Service): void {
    const k = serviceKey(svc);
    const e = this.entry(k);
    if (!e.service) this.services++;
    e.service = svc;
    this.dirty.add(k);
  }

  deleteService(namespace: string, name: string): void {
    const k = serviceKey({ namespace, name });
    const e = this.entries.get(k);
    if (!e?.service) return;
    e.service = undefined;
    this.services--;
    this.dirty.add(k);
  }

  /** A slice moving to another service (its label changed) dirties both. Only what the unit
   * compiler makes of the slice is held, not the slice. */
  setSlice(sl: EndpointSlice): void {
    const id = serviceKey(sl);
    const k = sliceServiceKey(sl);
    const slice = this.engine.slice(sl);
    // an update in place (nearly every one) leaves the maps' keys alone: a key deleted and
    // set again at every update grows a JS Map's table, 2.5 times over 12k updates at 10k
    const was = this.sliceOwner.get(id);
    if (was === k) {
      this.entries.get(k)!.slices.find((e) => e.name === sl.name)!.slice = slice;
    } else {
      if (was !== undefined) this.unfile(was, sl.name);
      const list = this.entry(k).slices;
      let i = list.length;
      while (i > 0 && list[i - 1]!.name > sl.name) i--;
      list.splice(i, 0, { name: sl.name, slice });
      this.sliceOwner.set(id, k);
    }
    this.dirty.add(k);
  }

  deleteSlice(namespace: string, name: string): void {
    const id = serviceKey({ namespace, name });
    const k = this.sliceOwner.get(id);
    if (k === undefined) return;
    this.sliceOwner.delete(id);
    this.unfile(k, name);
  }

  /** Takes a slice off its service's list. */
  private unfile(k: string, name: string): void {
    const list = this.entries.get(k)!.slices;
    list.splice(
      list.findIndex((e) => e.name === name),
      1,
    );
    this.dirty.add(k);
  }

  /** NodePorts listen on `ips` from the next compile on: every Service with one is recompiled. */
  setNodeIPs(ips: string[]): void {
    this.engine.setNodeIPs(ips);
    for (const [k, e] of this.entries) if (e.service?.ports.some((p) => p.nodePort)) this.dirty.add(k);
  }

  /** Recompiles the services changed since the last compile, in name order. */
  compile(): UnitChange[] {
    const keys = [...this.dirty].sort();
    this.dirty.clear();
    /** services whose owned frontends may have changed: the recompiled ones, and every
     * claimant of a frontend key they gave up or took */
    const recheck = new Set(keys);
    const claim = (u: ServiceUnit, k: string, on: boolean, keeps?: ServiceUnit) => {
      const kept = keeps && new Set(keeps.frontends.map(frontendKey));
      for (const f of u.frontends) {
        const fk = frontendKey(f);
        if (kept?.has(fk)) continue;
        const c = this.claims.get(fk);
        const was = c === undefined ? [] : typeof c === "string" ? [c] : c;
        const now = on ? (was.includes(k) ? was : [...was, k]) : was.filter((x) => x !== k);
        for (const other of was) recheck.add(other);
        if (!now.length) this.claims.delete(fk);
        else this.claims.set(fk, now.length === 1 ? now[0]! : now);
      }
    };
    const live = keys.map((k) => this.entries.get(k)!).filter((e) => e.service);
    const compiled = this.engine.units(live.map((e) => ({ service: e.service!, slices: e.slices.map((x) => x.slice) })));
    let next = 0;
    for (const k of keys) {
      const e = this.entries.get(k)!;
      const before = e.raw ?? EMPTY;
      const after = e.service ? compiled[next++]! : EMPTY;
      this.ids.assign(after.targets, before.targets);
      for (const f of after.frontends) f.target = after.targets[f.target]!.id;
      // claims taken before those given up, so that a key kept is never deleted and set again
      claim(after, k, true);
      claim(before, k, false, after);
      e.raw = e.service ? after : undefined;
    }
    this.ids.done();
    const changes: UnitChange[] = [];
    const dirty = new Set(keys);
    for (const k of [...recheck].sort()) {
      const e = this.entries.get(k)!;
      const before = e.unit ?? EMPTY;
      const r = e.raw;
      const owned = r ? ownFrontends(k, r.frontends, (fk) => this.owner(fk)) : [];
      // a unit that owns all it claims (nearly every one) is held once, not twice
      const after = !r ? EMPTY : owned.length === r.frontends.length ? r : { frontends: owned, targets: r.targets };
      if (!dirty.has(k) && after.frontends.length === before.frontends.length && after.frontends.every((f, i) => f === before.frontends[i])) continue;
      e.unit = r ? after : undefined;
      changes.push({ service: k, before, after });
    }
    for (const k of keys) {
      const e = this.entries.get(k)!;
      if (!e.service && !e.slices.length && !e.raw && !e.unit) this.entries.delete(k);
    }
    return changes;
  }

  /** Of a frontend key's claimants, the first by name. */
  private owner(fk: string): string {
    const c = this.claims.get(fk);
    if (c === undefined || typeof c === "string") return c ?? "";
    let o = c[0]!;
    for (const k of c) if (k < o) o = k;
    return o;
  }

  /** Frontends left out because another Service owns their key, as the full compile reports them. */
  conflicts(): string[] {
    const out: string[] = [];
    for (const [fk, c] of this.claims) {
      if (typeof c === "string") continue;
      const o = this.owner(fk);
      for (const k of c) if (k !== o) for (const f of this.entries.get(k)!.raw!.frontends) if (frontendKey(f) === fk) out.push(conflictMessage(k, f, o));
    }
    return out.sort();
  }

  /** Every unit, flattened in service order: what the full compile returns. */
  tables(): Tables {
    const frontends: Frontend[] = [];
    const targets: Target[] = [];
    for (const k of [...this.entries.keys()].sort()) {
      const u = this.entries.get(k)!.unit;
      if (!u) continue;
      frontends.push(...u.frontends);
      targets.push(...u.targets);
    }
    return { frontends, targets, conflicts: this.conflicts() };
  }
}
