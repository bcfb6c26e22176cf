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
  /** the version discovery prefers in its group (the first served otherwise) */
  preferred?: boolean;
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
