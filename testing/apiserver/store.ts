// The test API server's storage: what etcd and the apiserver's registry do for the types we
// serve. One revision counter for everything (an object's resourceVersion is the revision of
// its last write), a bounded history of writes (older revisions are "compacted": a list or
// watch from before them gets 410 Gone), lists as of a past revision from that history (so
// that paginated lists are consistent snapshots), and watchers told of every write in order.
// Pure: no sockets, no timers.
import { fieldsOf, groupVersion, selectableFields, type KubeObject, type ResourceType } from "./resources.ts";
import { parseFieldSelector, parseLabelSelector } from "./selectors.ts";
import { ApiError } from "./errors.ts";
import { checkTypeMeta, validateObject, validateUpdate } from "./validate.ts";

export { ApiError };

export const DEFAULT_HISTORY_BYTES = 64 * 1024 * 1024;

const notFound = (t: ResourceType, name: string) => new ApiError(404, "NotFound", `${resourceName(t)} "${name}" not found`, { name, ...groupOf(t), kind: t.plural });
const conflict = (t: ResourceType, name: string, why: string) => new ApiError(409, "Conflict", `Operation cannot be fulfilled on ${resourceName(t)} "${name}": ${why}`, { name, ...groupOf(t), kind: t.plural });
const resourceName = (t: ResourceType) => (t.group ? `${t.plural}.${t.group}` : t.plural);
const groupOf = (t: ResourceType) => (t.group ? { group: t.group } : {});
export const typeKey = (t: Pick<ResourceType, "group" | "plural">) => `${t.group}/${t.plural}`;

export type EventType = "ADDED" | "MODIFIED" | "DELETED";
export interface WatchEvent {
  type: EventType;
  object: KubeObject;
}

interface Write {
  rev: number;
  type: string; // typeKey
  key: string;
  /** the object after the write; undefined for a deletion */
  obj?: KubeObject;
  /** the object before; undefined for a creation */
  prev?: KubeObject;
  /** what the history holds for it (the serialized size of `obj`, or of `prev` for a deletion) */
  bytes: number;
}

export interface WatchOptions {
  namespace?: string;
  labelSelector?: string | null;
  fieldSelector?: string | null;
  /** revision to start after; undefined or 0: the current objects first, as ADDED events */
  from?: number;
}

interface Watcher {
  type: string;
  match: (o: KubeObject) => boolean;
  send: (e: WatchEvent) => void;
  /** told when its type is no longer kept (removeType) */
  ended?: () => void;
}

/** What a type's registry does beyond storing (kube-apiserver's create/update strategies):
 * called just before a write commits, they complete the object or refuse it (throwing an
 * ApiError), so a refused write changes nothing; `deleted` once an object is gone. With
 * `dryRun` they complete and check the object as for a real write but keep nothing. */
export interface TypeHooks {
  create?(obj: KubeObject, dryRun: boolean): void;
  update?(next: KubeObject, cur: KubeObject, dryRun: boolean): void;
  /** before a (real) deletion commits: what has to go first goes (a CRD's objects) */
  deleting?(obj: KubeObject): void;
  deleted?(obj: KubeObject): void;
}

/** `?dryRun=All`: the write is checked and answered as a real one, but nothing is kept. */
export interface WriteOptions {
  dryRun?: boolean;
}

export interface DeleteOptions extends WriteOptions {
  gracePeriodSeconds?: number;
  preconditions?: { uid?: string; resourceVersion?: string };
  /** Orphan: the objects it owns stay (Background, Foreground: they go with it) */
  propagationPolicy?: string;
}

export const PROPAGATION_POLICIES = ["Background", "Foreground", "Orphan"];

/** the uids an object names as its owners (metadata.ownerReferences) */
function ownerUids(o: KubeObject): string[] {
  const refs = o.metadata.ownerReferences;
  return Array.isArray(refs) ? refs.flatMap((r) => (r && typeof r === "object" && typeof (r as { uid?: unknown }).uid === "string" ? [(r as { uid: string }).uid] : [])) : [];
}

/** the namespaces kube-apiserver's NamespaceLifecycle admission never lets go */
const IMMORTAL_NAMESPACES = new Set(["default", "kube-system", "kube-public"]);
const now = () => new Date().toISOString().replace(/\.\d+Z$/, "Z");

export interface ListOptions {
  namespace?: string;
  labelSelector?: string | null;
  fieldSelector?: string | null;
  limit?: number;
  continue?: string | null;
  resourceVersion?: string | null;
  resourceVersionMatch?: string | null;
}

export interface ListResult {
  items: KubeObject[];
  resourceVersion: string;
  continue?: string;
  remainingItemCount?: number;
}

const objectKey = (namespace: string | undefined, name: string) => `${namespace ?? ""}/${name}`;
const rand = () => Math.random().toString(36).slice(2, 7).padEnd(5, "x");
/** what spec-like content is: everything but metadata and status (a change bumps generation) */
const specOf = (o: KubeObject) => JSON.stringify({ ...o, metadata: undefined, status: undefined });

export class Store {
  rev: number;
  /** writes up to this revision are gone from the history */
  compacted: number;
  private readonly types = new Map<string, ResourceType>();
  private readonly objects = new Map<string, Map<string, KubeObject>>();
  private readonly log: Write[] = [];
  private readonly watchers = new Set<Watcher>();
  private readonly hooks = new Map<string, TypeHooks>();
  private logBytes = 0;
  /** uid → the object's type and key, and owner uid → the uids of the objects it owns: what
   * the garbage collector (kube-controller-manager's) follows when an owner goes */
  private readonly byUid = new Map<string, [string, string]>();
  private readonly owned = new Map<string, Set<string>>();
  /** called with every write before it takes effect (the new revision is `this.rev + 1`);
   * if it throws, the write fails and nothing changed: where a write is made durable */
  beforeCommit?: (t: ResourceType, key: string, obj: KubeObject | undefined) => void;
  /** false only in tests of a client's own checks: the kinds' field rules (validate.ts
   * FIELD_RULES and update rules, the Service ports of services.ts) are skipped, so that a test can plant an
   * object kube-apiserver would refuse (metadata is still checked). Not reachable from the CLI. */
  checkFields = true;

  constructor(
    types: ResourceType[],
    /** the most writes the history keeps */
    private readonly history = 10_000,
    from?: { rev: number; objects: Array<{ type: ResourceType; object: KubeObject }> },
    /** the most bytes of objects the history keeps (the history of big objects would
     * otherwise hold `history` copies of them) */
    private readonly historyBytes = DEFAULT_HISTORY_BYTES,
  ) {
    for (const t of types) this.addType(t);
    this.rev = from?.rev ?? 1;
    // a store restarted from a snapshot has no history: every older revision is compacted
    this.compacted = this.rev;
    for (const { type, object } of from?.objects ?? []) {
      const key = objectKey(object.metadata.namespace, object.metadata.name!);
      this.objects.get(typeKey(type))!.set(key, object);
      this.index(typeKey(type), key, object, undefined);
    }
  }

  addType(t: ResourceType): void {
    this.types.set(typeKey(t), t);
    if (!this.objects.has(typeKey(t))) this.objects.set(typeKey(t), new Map());
  }

  /** Stops keeping `t` (a deleted CRD's resource, emptied first): its objects and watchers go. */
  removeType(t: Pick<ResourceType, "group" | "plural">): void {
    const k = typeKey(t);
    this.types.delete(k);
    this.objects.delete(k);
    this.hooks.delete(k);
    for (const w of this.watchers) {
      if (w.type !== k) continue;
      this.watchers.delete(w);
      w.ended?.();
    }
  }

  /** Sets the hooks of `t`'s writes (replacing earlier ones). */
  setHooks(t: ResourceType, h: TypeHooks): void {
    this.hooks.set(typeKey(t), h);
  }

  allTypes(): ResourceType[] {
    return [...this.types.values()];
  }

  type(group: string, plural: string): ResourceType | undefined {
    return this.types.get(`${group}/${plural}`);
  }

  /** Every object with its type: what a restarted server starts from. */
  snapshot(): { rev: number; objects: Array<{ type: ResourceType; object: KubeObject }> } {
    const objects: Array<{ type: ResourceType; object: KubeObject }> = [];
    for (const [k, m] of this.objects) for (const o of m.values()) objects.push({ type: this.types.get(k)!, object: o });
    return { rev: this.rev, objects };
  }

  /** Drops the whole history, as an etcd compaction does. */
  compact(): void {
    this.log.length = 0;
    this.logBytes = 0;
    this.compacted = this.rev;
  }

  get(t: ResourceType, namespace: string | undefined, name: string): KubeObject {
    const o = this.objects.get(typeKey(t))!.get(objectKey(namespace, name));
    if (!o) throw notFound(t, name);
    return o;
  }

  private requireNamespace(t: ResourceType, namespace: string | undefined, name: string): void {
    if (!t.namespaced) return;
    // the NamespaceLifecycle admission plugin: no objects in a namespace that does not exist
    // or is being deleted
    const nsType = this.type("", "namespaces");
    if (!nsType) return;
    const ns = this.objects.get(typeKey(nsType))!.get(objectKey(undefined, namespace!));
    if (!ns) throw new ApiError(404, "NotFound", `namespaces "${namespace}" not found`, { name: namespace, kind: "namespaces" });
    if (ns.metadata.deletionTimestamp) {
      const why = `unable to create new content in namespace ${namespace} because it is being terminated`;
      throw new ApiError(403, "Forbidden", `${resourceName(t)} "${name}" is forbidden: ${why}`, { name, ...groupOf(t), kind: t.plural, causes: [{ reason: "NamespaceTerminating", message: why, field: "metadata.namespace" }] });
    }
  }

  create(t: ResourceType, namespace: string | undefined, body: KubeObject, o: WriteOptions = {}): KubeObject {
    const meta = body.metadata ?? {};
    if (t.namespaced && meta.namespace && meta.namespace !== namespace) {
      throw new ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request");
    }
    checkTypeMeta(t, body);
    // as kube-apiserver: a generated name is at most 63 characters, 5 of them random
    const name = meta.name || (meta.generateName && typeof meta.generateName === "string" ? meta.generateName.slice(0, 58) + rand() : "");
    validateObject(t, { ...body, metadata: { ...meta, name, namespace: t.namespaced ? namespace : undefined } }, this.checkFields);
    this.requireNamespace(t, namespace, name);
    const key = objectKey(t.namespaced ? namespace : undefined, name);
    if (this.objects.get(typeKey(t))!.has(key)) throw new ApiError(409, "AlreadyExists", `${resourceName(t)} "${name}" already exists`, { name, ...groupOf(t), kind: t.plural });
    const rev = this.rev + 1;
    const obj: KubeObject = {
      ...body,
      apiVersion: t.group ? `${t.group}/${t.version}` : t.version,
      kind: t.kind,
      metadata: {
        ...meta,
        name,
        ...(t.namespaced ? { namespace } : { namespace: undefined }),
        uid: crypto.randomUUID(),
        resourceVersion: String(rev),
        generation: 1,
        creationTimestamp: now(),
      },
    };
    if (!t.namespaced) delete obj.metadata.namespace;
    initialStatus(t, obj);
    this.hooks.get(typeKey(t))?.create?.(obj, o.dryRun ?? false);
    // as kube-apiserver: a dry-run object never reached storage, so it has no resourceVersion
    if (o.dryRun) delete obj.metadata.resourceVersion;
    else {
      try {
        this.commit(t, key, obj, undefined);
      } catch (e) {
        // a write refused before it took effect (beforeCommit) gives back what the hook took
        this.hooks.get(typeKey(t))?.deleted?.(obj);
        throw e;
      }
      this.collectDangling(obj);
    }
    return obj;
  }

  /**
   * PUT of the object (or, with `subresource` "status", of its status only). A resourceVersion
   * in the body must be the current one. Fields the write may not change (uid, creation time,
   * and status or everything but status, by subresource) are taken from the stored object.
   */
  update(t: ResourceType, namespace: string | undefined, name: string, body: KubeObject, subresource?: "status", o: WriteOptions = {}): KubeObject {
    if (body.metadata?.name !== undefined && body.metadata.name !== name) throw new ApiError(400, "BadRequest", `the name of the object (${body.metadata.name}) does not match the name on the URL (${name})`);
    if (t.namespaced && body.metadata?.namespace && body.metadata.namespace !== namespace) {
      throw new ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request");
    }
    checkTypeMeta(t, body);
    const key = objectKey(t.namespaced ? namespace : undefined, name);
    const cur = this.objects.get(typeKey(t))!.get(key);
    if (!cur) throw notFound(t, name);
    const rv = body.metadata?.resourceVersion;
    if (rv !== undefined && rv !== "" && rv !== cur.metadata.resourceVersion) throw conflict(t, name, "the object has been modified; please apply your changes to the latest version and try again");
    let next: KubeObject;
    // its own metadata: the stored object (in the history, and what watchers were sent) stays as it was
    if (subresource === "status") next = { ...cur, metadata: { ...cur.metadata }, status: body.status };
    else {
      // system metadata is the server's: what a client sends for it is ignored (kube's
      // BeforeUpdate), so a patch cannot mark an object as being deleted
      const system = { uid: cur.metadata.uid, creationTimestamp: cur.metadata.creationTimestamp, generation: cur.metadata.generation, deletionTimestamp: cur.metadata.deletionTimestamp, deletionGracePeriodSeconds: cur.metadata.deletionGracePeriodSeconds };
      // a custom object is rewritten in the storage version and kind of now (how kube migrates storage)
      next = { ...body, apiVersion: t.custom ? groupVersion(t) : cur.apiVersion, kind: t.custom ? t.kind : cur.kind, metadata: { ...body.metadata, name, namespace: cur.metadata.namespace, ...system } };
      if (!t.namespaced) delete next.metadata.namespace;
      for (const k of ["deletionTimestamp", "deletionGracePeriodSeconds"] as const) if (next.metadata[k] === undefined) delete next.metadata[k];
      if (t.status) {
        if (cur.status === undefined) delete next.status;
        else next.status = cur.status;
      }
      this.hooks.get(typeKey(t))?.update?.(next, cur, o.dryRun ?? false);
      if (specOf(next) !== specOf(cur)) next.metadata.generation = (cur.metadata.generation ?? 1) + 1;
    }
    validateObject(t, next, this.checkFields);
    if (this.checkFields) validateUpdate(t, next, cur);
    // a write that changes nothing is no write: no new revision, no event (as kube-apiserver)
    next.metadata.resourceVersion = cur.metadata.resourceVersion;
    if (JSON.stringify(next) === JSON.stringify(cur)) return cur;
    if (o.dryRun) return next;
    next.metadata.resourceVersion = String(this.rev + 1);
    this.commit(t, key, next, cur);
    this.collectDangling(next);
    return next;
  }

  /**
   * A Pod's binding subresource (kube-apiserver's BindingREST): `binding` names the pod and
   * the Node it goes to; the pod must be unbound, not terminating and not gated, and the
   * binding's uid and resourceVersion, when set, must be the pod's. Sets spec.nodeName, adds
   * the binding's annotations and a PodScheduled=True condition, in one write.
   */
  bind(namespace: string, name: string, binding: KubeObject, o: WriteOptions = {}): KubeObject {
    const t = this.type("", "pods")!;
    const m = binding.metadata;
    if (m.namespace && m.namespace !== namespace) throw new ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request");
    if (m.name !== name) throw new ApiError(400, "BadRequest", "name in URL does not match name in Binding object");
    const target = (typeof binding.target === "object" && binding.target !== null ? binding.target : {}) as { kind?: unknown; name?: unknown };
    // ValidatePodBinding's errors reach the client as a plain error, which kube-apiserver
    // answers as 500 with no reason (not a 422: BindingREST returns errs.ToAggregate())
    const errs: string[] = [];
    if (target.kind !== undefined && target.kind !== "" && target.kind !== "Node") errs.push(`target.kind: Unsupported value: ${JSON.stringify(target.kind)}: supported values: "Node", "<empty>"`);
    if (typeof target.name !== "string" || !target.name) errs.push("target.name: Required value");
    if (errs.length) throw new ApiError(500, "", errs.length === 1 ? errs[0]! : `[${errs.join(", ")}]`);
    const key = objectKey(namespace, name);
    const cur = this.objects.get(typeKey(t))!.get(key);
    if (!cur) throw notFound(t, name);
    if (m.uid && m.uid !== cur.metadata.uid) throw conflict(t, name, `Precondition failed: UID in precondition: ${m.uid}, UID in object meta: ${cur.metadata.uid}`);
    if (m.resourceVersion && m.resourceVersion !== cur.metadata.resourceVersion) throw conflict(t, name, "the object has been modified; please apply your changes to the latest version and try again");
    const refuse = (why: string) => new ApiError(409, "Conflict", `Operation cannot be fulfilled on pods/binding "${name}": ${why}`, { name, kind: "pods/binding" });
    const spec = (cur.spec ?? {}) as { nodeName?: string; schedulingGates?: unknown[] };
    if (cur.metadata.deletionTimestamp) throw refuse(`pod ${name} is being deleted, cannot be assigned to a host`);
    if (spec.nodeName) throw refuse(`pod ${name} is already assigned to node ${JSON.stringify(spec.nodeName)}`);
    if (Array.isArray(spec.schedulingGates) && spec.schedulingGates.length) throw refuse(`pod ${name} has non-empty .spec.schedulingGates`);
    const status = (cur.status ?? {}) as { conditions?: Array<Record<string, unknown>> };
    const conditions = Array.isArray(status.conditions) ? status.conditions : [];
    const was = conditions.find((c) => c?.type === "PodScheduled");
    // podutil.UpdatePodCondition: the transition time moves only when the status does
    const scheduled = { type: "PodScheduled", status: "True", lastProbeTime: null, lastTransitionTime: was?.status === "True" ? was.lastTransitionTime : now() };
    const annotations = { ...(cur.metadata.annotations ?? {}), ...(m.annotations ?? {}) };
    const next: KubeObject = {
      ...cur,
      metadata: { ...cur.metadata, ...(Object.keys(annotations).length ? { annotations } : {}) },
      spec: { ...(cur.spec as object), nodeName: target.name },
      status: { ...status, conditions: was ? conditions.map((c) => (c === was ? scheduled : c)) : [...conditions, scheduled] },
    };
    validateObject(t, next, this.checkFields);
    if (o.dryRun) return next;
    next.metadata.resourceVersion = String(this.rev + 1);
    this.commit(t, key, next, cur);
    return next;
  }

  /**
   * DELETE. A pod bound to a node is deleted gracefully, as kube-apiserver does: it gets a
   * deletionTimestamp and stays until a delete with gracePeriodSeconds 0 (the kubelet's, once
   * its containers stopped).
   */
  delete(t: ResourceType, namespace: string | undefined, name: string, o: DeleteOptions = {}): KubeObject {
    const key = objectKey(t.namespaced ? namespace : undefined, name);
    const cur = this.objects.get(typeKey(t))!.get(key);
    if (!cur) throw notFound(t, name);
    const p = o.preconditions ?? {};
    if (p.uid && p.uid !== cur.metadata.uid) throw conflict(t, name, `Precondition failed: UID in precondition: ${p.uid}, UID in object meta: ${cur.metadata.uid}`);
    if (p.resourceVersion && p.resourceVersion !== cur.metadata.resourceVersion) {
      throw conflict(t, name, `the ResourceVersion in the precondition (${p.resourceVersion}) does not match the ResourceVersion in record (${cur.metadata.resourceVersion}). The object might have been modified`);
    }
    if (t.kind === "Namespace" && !t.group) return this.deleteNamespace(t, key, cur, o.dryRun ?? false);
    const spec = (cur.spec ?? {}) as { nodeName?: string; terminationGracePeriodSeconds?: number };
    const grace = o.gracePeriodSeconds ?? spec.terminationGracePeriodSeconds ?? 30;
    if (t.kind === "Pod" && !t.group && spec.nodeName && grace > 0) {
      if (cur.metadata.deletionTimestamp) return cur;
      const next: KubeObject = { ...cur, metadata: { ...cur.metadata, deletionTimestamp: new Date(Date.now() + grace * 1000).toISOString().replace(/\.\d+Z$/, "Z"), deletionGracePeriodSeconds: grace } };
      if (o.dryRun) return next;
      next.metadata.resourceVersion = String(this.rev + 1);
      this.commit(t, key, next, cur);
      return next;
    }
    if (o.dryRun) return cur;
    this.hooks.get(typeKey(t))?.deleting?.(cur);
    const gone: KubeObject = { ...cur, metadata: { ...cur.metadata, resourceVersion: String(this.rev + 1) } };
    this.commit(t, key, undefined, cur);
    this.hooks.get(typeKey(t))?.deleted?.(cur);
    if (o.propagationPolicy !== "Orphan") this.collect(cur.metadata.uid);
    if (t.namespaced && this.emptying !== namespace) this.finishNamespace(namespace!);
    return gone;
  }

  /**
   * What kube's garbage collector does once an owner is gone: each object it owned whose
   * owners are all gone is deleted too (and so on down), as with propagationPolicy
   * Background; one that still has an owner stays.
   */
  private collect(uid: string | undefined): void {
    for (const dep of [...(uid ? (this.owned.get(uid) ?? []) : [])]) this.collectIfOrphaned(dep);
  }

  /** Deletes the object of `uid` when it has owners and none of them exists any more. */
  private collectIfOrphaned(uid: string): void {
    const at = this.byUid.get(uid);
    const t = at && this.types.get(at[0]);
    const o = at && this.objects.get(at[0])?.get(at[1]);
    if (!t || !o || o.metadata.deletionTimestamp) return;
    const owners = ownerUids(o);
    if (!owners.length || owners.some((u) => this.byUid.has(u))) return;
    try {
      this.delete(t, o.metadata.namespace, o.metadata.name!);
    } catch (e) {
      // a write refused (the journal): it stays, as an object the collector has yet to reach
      if (!(e instanceof ApiError)) throw e;
    }
  }

  /**
   * What kube's garbage collector does with an object whose owners never existed or are gone
   * (a dangling reference: no object of that kind has the uid): it deletes it, shortly after
   * the write. Only owners of kinds this server serves are judged; an owner of a kind it does
   * not know (a ReplicaSet) is taken to exist, as the collector cannot look it up either.
   */
  private collectDangling(o: KubeObject): void {
    const refs = Array.isArray(o.metadata.ownerReferences) ? (o.metadata.ownerReferences as Array<{ apiVersion?: unknown; kind?: unknown; uid?: unknown }>) : [];
    if (!refs.length) return;
    const served = (r: { apiVersion?: unknown; kind?: unknown }) => [...this.types.values()].some((t) => groupVersion(t) === r.apiVersion && t.kind === r.kind);
    if (!refs.every((r) => typeof r.uid === "string" && served(r) && !this.byUid.has(r.uid))) return;
    const uid = o.metadata.uid;
    if (!uid) return;
    // looked at again shortly: by then an owner may have been made, or the object changed
    setTimeout(() => this.collectIfOrphaned(uid), 0).unref?.();
  }

  private index(type: string, key: string, obj: KubeObject | undefined, prev: KubeObject | undefined): void {
    if (prev?.metadata.uid) {
      this.byUid.delete(prev.metadata.uid);
      for (const u of ownerUids(prev)) {
        const set = this.owned.get(u);
        set?.delete(prev.metadata.uid);
        if (set && !set.size) this.owned.delete(u);
      }
    }
    if (obj?.metadata.uid) {
      this.byUid.set(obj.metadata.uid, [type, key]);
      for (const u of ownerUids(obj)) {
        let set = this.owned.get(u);
        if (!set) this.owned.set(u, (set = new Set()));
        set.add(obj.metadata.uid);
      }
    }
  }

  /** the namespace whose objects deleteNamespace is deleting now */
  private emptying: string | undefined;

  /**
   * What kube-apiserver and the namespace controller do: the Namespace is marked Terminating
   * (deletionTimestamp, status.phase), every object in it is deleted through delete() (so
   * hooks free what Services hold and watchers see each go), then the Namespace itself goes.
   * A pod still terminating on its node keeps the Namespace until the pod is gone.
   */
  private deleteNamespace(t: ResourceType, key: string, cur: KubeObject, dryRun: boolean): KubeObject {
    const name = cur.metadata.name!;
    if (IMMORTAL_NAMESPACES.has(name)) throw new ApiError(403, "Forbidden", `namespaces "${name}" is forbidden: this namespace may not be deleted`, { name, kind: "namespaces" });
    if (cur.metadata.deletionTimestamp) return cur;
    const next: KubeObject = { ...cur, metadata: { ...cur.metadata, deletionTimestamp: now() }, status: { ...((cur.status ?? {}) as object), phase: "Terminating" } };
    if (dryRun) return next;
    next.metadata.resourceVersion = String(this.rev + 1);
    this.commit(t, key, next, cur);
    this.emptying = name;
    try {
      for (const type of this.types.values()) {
        if (!type.namespaced) continue;
        for (const o of [...this.objects.get(typeKey(type))!.values()]) if (o.metadata.namespace === name && !o.metadata.deletionTimestamp) this.delete(type, name, o.metadata.name!);
      }
    } finally {
      this.emptying = undefined;
    }
    this.finishNamespace(name);
    return next;
  }

  /** Removes a Terminating namespace once nothing is left in it. */
  private finishNamespace(name: string): void {
    const t = this.type("", "namespaces");
    if (!t) return;
    const key = objectKey(undefined, name);
    const ns = this.objects.get(typeKey(t))!.get(key);
    if (!ns?.metadata.deletionTimestamp) return;
    for (const type of this.types.values()) {
      if (!type.namespaced) continue;
      for (const o of this.objects.get(typeKey(type))!.values()) if (o.metadata.namespace === name) return;
    }
    this.commit(t, key, undefined, ns);
    this.hooks.get(typeKey(t))?.deleted?.(ns);
  }

  private commit(t: ResourceType, key: string, obj: KubeObject | undefined, prev: KubeObject | undefined): void {
    this.beforeCommit?.(t, key, obj);
    this.rev++;
    const m = this.objects.get(typeKey(t))!;
    if (obj) m.set(key, obj);
    else m.delete(key);
    this.index(typeKey(t), key, obj, prev);
    const bytes = JSON.stringify(obj ?? prev).length;
    this.log.push({ rev: this.rev, type: typeKey(t), key, obj, prev, bytes });
    this.logBytes += bytes;
    while (this.log.length > this.history || (this.logBytes > this.historyBytes && this.log.length)) {
      const old = this.log.shift()!;
      this.logBytes -= old.bytes;
      this.compacted = old.rev;
    }
    for (const w of this.watchers) if (w.type === typeKey(t)) deliver(w, obj, prev, this.rev);
  }

  /** The objects of `t` as they were at revision `rev` (undoing the later writes). */
  private at(t: ResourceType, rev: number): Map<string, KubeObject> {
    if (rev < this.compacted) throw expired(rev, this.compacted);
    const m = new Map(this.objects.get(typeKey(t))!);
    const k = typeKey(t);
    for (let i = this.log.length - 1; i >= 0 && this.log[i]!.rev > rev; i--) {
      const w = this.log[i]!;
      if (w.type !== k) continue;
      if (w.prev) m.set(w.key, w.prev);
      else m.delete(w.key);
    }
    return m;
  }

  list(t: ResourceType, o: ListOptions = {}): ListResult {
    const match = matcher(t, o);
    let rev = this.rev;
    let after = "";
    if (o.continue) {
      const c = decodeContinue(o.continue);
      if (c.rev < this.compacted) {
        throw new ApiError(
          410,
          "Expired",
          "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
        );
      }
      rev = c.rev;
      after = c.after;
    } else if (o.resourceVersion && o.resourceVersion !== "0") {
      const want = parseRev(o.resourceVersion);
      if (want > this.rev) throw new ApiError(504, "Timeout", `Too large resource version: ${want}, current: ${this.rev}`, { causes: [{ reason: "ResourceVersionTooLarge", message: "Too large resource version" }], retryAfterSeconds: 1 });
      if (o.resourceVersionMatch === "Exact") rev = want;
    } else if (o.resourceVersionMatch) {
      throw new ApiError(422, "Invalid", `resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided`);
    }
    const objs = rev === this.rev ? this.objects.get(typeKey(t))! : this.at(t, rev);
    const keys = [...objs.keys()].filter((k) => k > after).sort();
    const items: KubeObject[] = [];
    let last = "";
    let i = 0;
    for (; i < keys.length; i++) {
      const obj = objs.get(keys[i]!)!;
      if (!match(obj)) continue;
      if (o.limit && items.length === o.limit) break;
      items.push(obj);
      last = keys[i]!;
    }
    const more = i < keys.length;
    const out: ListResult = { items, resourceVersion: String(rev) };
    if (more) {
      out.continue = encodeContinue(rev, last);
      // as kube-apiserver: the count of what is left, only when no selector filters it
      if (!o.labelSelector && !o.fieldSelector) out.remainingItemCount = keys.length - i;
    }
    return out;
  }

  /**
   * Starts a watch: the current objects as ADDED (when `from` is absent or 0), else every
   * write after `from`, then the writes as they happen. A `from` older than the history
   * throws 410 Expired. Returns the function that stops it.
   */
  watch(t: ResourceType, o: WatchOptions, send: (e: WatchEvent) => void, ended?: () => void): () => void {
    const match = matcher(t, o);
    const w: Watcher = { type: typeKey(t), match, send, ended };
    if (!o.from) {
      for (const k of [...this.objects.get(typeKey(t))!.keys()].sort()) {
        const obj = this.objects.get(typeKey(t))!.get(k)!;
        if (match(obj)) send({ type: "ADDED", object: obj });
      }
    } else {
      if (o.from < this.compacted) throw expired(o.from, this.compacted);
      for (const e of this.log) if (e.rev > o.from && e.type === w.type) deliver(w, e.obj, e.prev, e.rev);
    }
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }

  watcherCount(): number {
    return this.watchers.size;
  }
}

/** One write as a watcher with a selector sees it: an object entering the selection is
 * ADDED, one leaving it DELETED (the old object at the new revision), as the watch cache. */
function deliver(w: Watcher, obj: KubeObject | undefined, prev: KubeObject | undefined, rev: number): void {
  const now = obj !== undefined && w.match(obj);
  const before = prev !== undefined && w.match(prev);
  if (now && before) w.send({ type: "MODIFIED", object: obj });
  else if (now) w.send({ type: "ADDED", object: obj });
  else if (before) {
    w.send({ type: "DELETED", object: { ...prev, metadata: { ...prev.metadata, resourceVersion: String(rev) } } });
  }
}

function initialStatus(t: ResourceType, o: KubeObject): void {
  if (t.group) return;
  // what each type's PrepareForCreate does to a new object's status
  if (t.kind === "Service") o.status = { loadBalancer: {} };
  else if (t.kind === "Pod") o.status = { phase: "Pending" };
  else if (t.kind === "Namespace") o.status = { phase: "Active" };
}

function matcher(t: ResourceType, o: { namespace?: string; labelSelector?: string | null; fieldSelector?: string | null }): (obj: KubeObject) => boolean {
  let labels: (l: Record<string, string>) => boolean;
  let fields: (f: Record<string, string>) => boolean;
  try {
    labels = parseLabelSelector(o.labelSelector);
    fields = parseFieldSelector(o.fieldSelector, selectableFields(t));
  } catch (e) {
    throw new ApiError(400, "BadRequest", (e as Error).message);
  }
  return (obj) => (o.namespace === undefined || obj.metadata.namespace === o.namespace) && labels(obj.metadata.labels ?? {}) && fields(fieldsOf(t, obj));
}

const expired = (rev: number, compacted: number) => new ApiError(410, "Expired", `too old resource version: ${rev} (${compacted + 1})`);

export function parseRev(s: string): number {
  if (!/^\d+$/.test(s)) throw new ApiError(400, "BadRequest", `invalid resource version: ${JSON.stringify(s)}`);
  return Number(s);
}

function encodeContinue(rev: number, after: string): string {
  return Buffer.from(JSON.stringify({ v: "meta.k8s.io/v1", rv: rev, start: after })).toString("base64url");
}

function decodeContinue(s: string): { rev: number; after: string } {
  try {
    const c = JSON.parse(Buffer.from(s, "base64url").toString()) as { v?: string; rv?: unknown; start?: unknown };
    if (c.v === "meta.k8s.io/v1" && typeof c.rv === "number" && typeof c.start === "string") return { rev: c.rv, after: c.start };
  } catch {}
  throw new ApiError(400, "BadRequest", "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)");
}
