// The policy compiler as the agent runs it: it holds the checked Pods, Namespaces and
// NetworkPolicies, and a compile makes the tables of the whole state again, with the ids of
// the last compile kept (an identity keeps its id while its key exists), so that what
// changes in the kernel is only what changed in the cluster. The compile itself is the
// engine's: compiler.wasm in the agent, the reference in tests.
//
// One change skips the compile: a pod whose labels changed, and nothing else, moving to an
// identity that exists (pods alike in labels are there already) while the identity it leaves
// keeps other addresses. Then the tables differ only in that pod's addresses' ids, which is
// what such a change must cost: a label change moves an address between identities. The
// conditions below are those under which the whole compile would give the same tables
// (incremental.test.ts holds the two equal); any other change compiles everything.
import { withServiceSources, type NodeCIDRs } from "./via-service.ts";
import { BLOCKED, FIRST_ID, type NamespaceInfo, type Policy, type PodInfo, type PolicyOptions, type PolicyState, type PolicyTables } from "./types.ts";

/** The label that app isolation keys its generated policies on (compiler/policy/reference.ts). */
const APP_LABEL = "skein.io/app";

/** Labels as an identity key spells them: `k=v` sorted by key, joined by commas. */
export const labelsText = (labels: Record<string, string>) =>
  Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(",");

const samePorts = (a: PodInfo, b: PodInfo) => a.ports.length === b.ports.length && a.ports.every((p, i) => p.name === b.ports[i]!.name && p.protocol === b.ports[i]!.protocol && p.port === b.ports[i]!.port);

/** What the fast path needs of the last tables: keys and ids both ways, and how many
 * addresses (and addresses of this node's pods) each identity has. */
interface Index {
  idOf: Map<string, number>;
  keyOf: Map<number, string>;
  addresses: Map<number, number>;
  local: Map<number, number>;
  /** address -> position in tables.pods */
  at: Map<string, number>;
}

/** The identity ids an adopted table's maps hold (agent/datapath/policy-adopt.ts). */
export interface AdoptedIds {
  /** pod address → id */
  pods: ReadonlyMap<string, number>;
  /** a range's first address → id */
  ranges: ReadonlyMap<string, number>;
}

export type PolicyEngine = (state: PolicyState, opts: PolicyOptions, previous: Map<string, number>) => PolicyTables;

/** What a compile changed: the tables before (undefined at the first) and after. */
export interface PolicyChange {
  before: PolicyTables | undefined;
  after: PolicyTables;
}

const key = (namespace: string, name: string) => `${namespace}/${name}`;

/** Whether only the labels differ (same node, addresses and named ports). */
function onlyLabels(a: PodInfo, b: PodInfo): boolean {
  return a.nodeName === b.nodeName && a.ips.join() === b.ips.join() && samePorts(a, b);
}

export class PolicyCompiler {
  private readonly pods = new Map<string, PodInfo>();
  private readonly namespaces = new Map<string, NamespaceInfo>();
  private readonly policies = new Map<string, Policy>();
  private dirty = true;
  private last: PolicyTables | undefined;
  /** label changes that may skip the compile, in order: [before, after] */
  private moves: Array<[PodInfo, PodInfo]> = [];
  private index: Index | undefined;
  /** the ids the kernel's addresses go to, for the first compile (adoptIds) */
  private adopted: AdoptedIds | undefined;
  /** how the last compile was made, for tests and logs */
  lastKind: "full" | "moved" | undefined;
  private readonly opts: PolicyOptions;

  constructor(
    opts: PolicyOptions,
    private readonly engine: PolicyEngine,
  ) {
    this.opts = { ...opts, podCIDRs: [...opts.podCIDRs] };
  }

  counts(): { pods: number; namespaces: number; policies: number } {
    return { pods: this.pods.size, namespaces: this.namespaces.size, policies: this.policies.size };
  }

  setPod(p: PodInfo): void {
    const k = key(p.namespace, p.name);
    const was = this.pods.get(k);
    this.pods.set(k, p);
    if (was && this.last && !this.dirty && onlyLabels(was, p)) this.moves.push([was, p]);
    else this.dirty = true;
  }
  deletePod(namespace: string, name: string): void {
    if (this.pods.delete(key(namespace, name))) this.dirty = true;
  }
  setNamespace(n: NamespaceInfo): void {
    this.namespaces.set(n.name, n);
    this.dirty = true;
  }
  deleteNamespace(name: string): void {
    if (this.namespaces.delete(name)) this.dirty = true;
  }
  setPolicy(p: Policy): void {
    this.policies.set(key(p.namespace, p.name), p);
    this.dirty = true;
  }
  deletePolicy(namespace: string, name: string): void {
    if (this.policies.delete(key(namespace, name))) this.dirty = true;
  }

  /** Every node's pod CIDRs: where connections through a Service come from (via-service.ts). */
  setNodes(nodes: NodeCIDRs[]): void {
    const sorted = [...nodes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const text = JSON.stringify(sorted);
    if (text === this.nodesText) return;
    this.nodesText = text;
    this.nodes = sorted;
    this.dirty = true;
  }
  private nodes: NodeCIDRs[] = [];
  private nodesText = "[]";

  /** This node's pod CIDRs (where unknown addresses are blocked while policy exists). */
  setPodCIDRs(cidrs: string[]): void {
    if (cidrs.join() === this.opts.podCIDRs.join()) return;
    this.opts.podCIDRs = [...cidrs];
    this.dirty = true;
  }

  /** The state as the engine reads it, in key order (the compile does not depend on it, but
   * a dump of it reads the same every time). */
  state(): PolicyState {
    const sorted = <T>(m: Map<string, T>) => [...m.keys()].sort().map((k) => m.get(k)!);
    return { namespaces: sorted(this.namespaces), pods: sorted(this.pods), policies: sorted(this.policies) };
  }

  /** The tables another node compiles from the same state (its own pods, its pod CIDRs),
   * for a verdict judged there (`skein trace`); ids are this compile's own, not that node's. */
  tablesFor(nodeName: string): PolicyTables {
    const podCIDRs = this.nodes.find((n) => n.name === nodeName)?.podCIDRs ?? [];
    return withServiceSources(this.engine(this.state(), { ...this.opts, nodeName, podCIDRs: [...podCIDRs] }, new Map()), this.nodes, nodeName);
  }

  /**
   * The ids a table adopted from an earlier agent gives its addresses: pod address → id, and
   * the first address of each range → id. The first compile keeps an identity's id when the
   * kernel has every address and range of it at one id, and gives new keys none of the ids the
   * kernel holds, so the tables that replace the adopted ones differ from them only in what
   * changed while no agent ran (agent/datapath/policy-adopt.ts says why that matters: new ids
   * would be judged against the old allow elements for a moment).
   */
  adoptIds(kernel: AdoptedIds): void {
    if (!this.last) this.adopted = kernel;
  }

  /** `previous` for the first compile after adoptIds: a compile with no ids to keep says
   * which addresses make each identity, and the kernel which id they have. */
  private idsInKernel(kernel: AdoptedIds): Map<string, number> {
    const t = this.engine(this.state(), this.opts, new Map());
    const kernelIds = new Map<number, Set<number | undefined>>();
    const note = (id: number, k: number | undefined) => {
      let s = kernelIds.get(id);
      if (!s) kernelIds.set(id, (s = new Set()));
      s.add(k);
    };
    for (const p of t.pods) note(p.id, kernel.pods.get(p.ip));
    for (const r of t.ranges) note(r.id, kernel.ranges.get(r.first));
    const previous = new Map<string, number>();
    for (const i of t.identities) {
      const ids = [...(kernelIds.get(i.id) ?? [])];
      const only = ids.length === 1 ? ids[0] : undefined;
      // an id the mark bits cannot hold (a forged element, or a table of wider marks) is not kept
      if (only !== undefined && only >= FIRST_ID && only <= this.opts.maxIdentity) previous.set(i.key, only);
    }
    // every id the kernel holds counts as held: no new key is given one (no key is spelled so)
    for (const id of new Set([...kernel.pods.values(), ...kernel.ranges.values()])) previous.set(`\u0000kernel ${id}`, id);
    return previous;
  }

  /** Compiles when anything changed since the last compile; undefined when nothing did. */
  compile(): PolicyChange | undefined {
    if (!this.dirty && this.moves.length) {
      const moved = this.move();
      this.moves = [];
      if (moved) {
        const before = this.last;
        this.last = moved;
        this.lastKind = "moved";
        return { before, after: moved };
      }
      this.dirty = true;
    }
    this.moves = [];
    if (!this.dirty) return undefined;
    let previous = new Map<string, number>();
    for (const i of this.last?.identities ?? []) previous.set(i.key, i.id);
    if (!this.last && this.adopted && this.adopted.pods.size + this.adopted.ranges.size) previous = this.idsInKernel(this.adopted);
    this.adopted = undefined;
    const after = withServiceSources(this.engine(this.state(), this.opts, previous), this.nodes, this.opts.nodeName);
    const before = this.last;
    this.last = after;
    this.index = undefined;
    this.dirty = false;
    this.lastKind = "full";
    return { before, after };
  }

  private indexOf(t: PolicyTables): Index {
    if (this.index) return this.index;
    const ix: Index = { idOf: new Map(), keyOf: new Map(), addresses: new Map(), local: new Map(), at: new Map() };
    for (const i of t.identities) {
      ix.idOf.set(i.key, i.id);
      ix.keyOf.set(i.id, i.key);
    }
    const local = new Set(t.localAddresses);
    t.pods.forEach((p, n) => {
      ix.at.set(p.ip, n);
      ix.addresses.set(p.id, (ix.addresses.get(p.id) ?? 0) + 1);
      if (local.has(p.ip)) ix.local.set(p.id, (ix.local.get(p.id) ?? 0) + 1);
    });
    return (this.index = ix);
  }

  /** The tables after the pending label changes, when none of them needs a compile. */
  private move(): PolicyTables | undefined {
    const t = this.last!;
    const ix = this.indexOf(t);
    const pods = t.pods.slice();
    const count = (m: Map<number, number>, id: number, by: number) => m.set(id, (m.get(id) ?? 0) + by);
    const undo: Array<() => void> = [];
    const fail = () => {
      for (const u of undo.reverse()) u();
      this.index = undefined;
      return undefined;
    };
    for (const [was, now] of this.moves) {
      // an app label decides which policies are generated; a namespace's app values change
      // with it
      if (was.labels[APP_LABEL] !== now.labels[APP_LABEL]) return fail();
      const local = now.nodeName === this.opts.nodeName;
      for (const ip of now.ips) {
        const n = ix.at.get(ip);
        if (n === undefined) return fail();
        const from = pods[n]!.id;
        const oldKey = ix.keyOf.get(from);
        if (from === BLOCKED || oldKey === undefined) return fail();
        const parts = oldKey.split("|");
        if (parts[0] !== "pod" || parts.length !== 5) return fail();
        parts[2] = labelsText(now.labels);
        const to = ix.idOf.get(parts.join("|"));
        if (to === undefined) return fail();
        if (to === from) continue;
        // the identity left must keep addresses (else it goes, and its id and pairs with it),
        // and, for a pod of this node, stay local; the one joined must be local already
        if ((ix.addresses.get(from) ?? 0) < 2) return fail();
        if (local && ((ix.local.get(from) ?? 0) < 2 || !(ix.local.get(to) ?? 0))) return fail();
        pods[n] = { ...pods[n]!, id: to };
        count(ix.addresses, from, -1);
        count(ix.addresses, to, 1);
        if (local) {
          count(ix.local, from, -1);
          count(ix.local, to, 1);
        }
        undo.push(() => {
          count(ix.addresses, from, 1);
          count(ix.addresses, to, -1);
          if (local) {
            count(ix.local, from, 1);
            count(ix.local, to, -1);
          }
        });
      }
    }
    return { ...t, pods };
  }

  /** The tables of the last compile. */
  tables(): PolicyTables | undefined {
    return this.last;
  }
}
