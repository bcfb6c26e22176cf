// What the server serves, resource by resource and version by version, and where each keeps
// its objects: most are kept as they are served (one store type each), but some are views of
// another's objects, as in kube-apiserver: events.k8s.io/v1 Events are the core v1 Events
// under other field names, and every served version of a custom resource is its storage
// version's objects with another apiVersion (and that version's schema). A request goes
// through `toStored` on its way in and `fromStored` on its way out.
import type { KubeObject, ResourceType } from "./resources.ts";
import { eventsV1View } from "./events.ts";
import type { Printer } from "./printers.ts";
import type { Store } from "./store.ts";
import { typeKey } from "./store.ts";

export interface Served {
  /** what discovery shows and paths name: group, version, plural, names, scope */
  type: ResourceType;
  /** the store type its objects are kept in */
  stored: ResourceType;
  /** a request's object in the stored form (absent: the same); may throw an ApiError */
  toStored?: (o: KubeObject) => KubeObject;
  /** a stored object as this version serves it (absent: the same) */
  fromStored?: (o: KubeObject) => KubeObject;
  /** field selector names → the stored type's (absent: the same names) */
  fields?: Record<string, string>;
  /** the Table columns (absent: printers.ts's for the kind) */
  printer?: Printer;
}

const servedKey = (group: string, version: string, plural: string) => `${group}/${version}/${plural}`;

export class Catalog {
  private readonly served = new Map<string, Served>();

  add(s: Served): void {
    this.served.set(servedKey(s.type.group, s.type.version, s.type.plural), s);
  }

  /** Stops serving every version kept in `stored`. */
  removeStored(stored: Pick<ResourceType, "group" | "plural">): void {
    for (const [k, s] of this.served) if (typeKey(s.stored) === typeKey(stored)) this.served.delete(k);
  }

  get(group: string, version: string, plural: string): Served | undefined {
    return this.served.get(servedKey(group, version, plural));
  }

  all(): Served[] {
    return [...this.served.values()];
  }
}

/** The store's types, each served as kept, and events.k8s.io/v1 over the core Events. */
export function storeCatalog(store: Store): Catalog {
  const c = new Catalog();
  for (const t of store.allTypes()) c.add({ type: t, stored: t });
  const events = store.type("", "events");
  if (events) c.add({ type: { ...events, group: "events.k8s.io", shortNames: ["ev"], fields: {} }, stored: events, ...eventsV1View(events) });
  return c;
}

/** kube's version priority (version.CompareKubeAwareVersionStrings): GA before beta before
 * alpha, higher numbers first, then any other version alphabetically. Discovery lists a
 * group's versions so and prefers the first. */
export function sortVersions(versions: string[]): string[] {
  const rank = (v: string): [number, number, number, string] => {
    const m = /^v([1-9]\d*)(?:(alpha|beta)([1-9]\d*))?$/.exec(v);
    if (!m) return [3, 0, 0, v];
    return [m[2] === "alpha" ? 2 : m[2] === "beta" ? 1 : 0, -Number(m[1]), -Number(m[3] ?? 0), v];
  };
  return [...versions].sort((a, b) => {
    const x = rank(a);
    const y = rank(b);
    for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return (x[i] as number) - (y[i] as number);
    return x[3] < y[3] ? -1 : x[3] > y[3] ? 1 : 0;
  });
}
