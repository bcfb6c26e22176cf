// What kube-apiserver's Service registry does beyond storing: the v1 defaults (type,
// protocol, targetPort, sessionAffinity, traffic policies), IP family fields
// (ipFamilies/ipFamilyPolicy, clusterIPs) filled in from the cluster's service CIDRs, and
// ClusterIPs and NodePorts allocated from --service-cidr and --service-node-port-range with no
// address or port given twice, released on delete and on updates that stop needing them.
// Messages are kube-apiserver's, so clients and people see what a real cluster says. Pure:
// the allocation lives in memory and is rebuilt from the stored Services after a restart.
import ipaddr from "ipaddr.js";
import { addressBytes, addressFamily, AddressError, parseCidr, type Cidr, type Family } from "../../compiler/address.ts";
import type { KubeObject } from "./resources.ts";
import { ApiError, type Store, type TypeHooks } from "./store.ts";
import { describe, dns1123Label, dns1123Subdomain, portNumberErrors, portNumOrNameErrors, protocolErrors, stringMap, type FieldError } from "./validate.ts";

export const DEFAULT_SERVICE_CIDR = "10.96.0.0/12";
export const DEFAULT_NODE_PORT_RANGE = "30000-32767";

type IPFamily = "IPv4" | "IPv6";
const familyName = (f: Family): IPFamily => (f === 4 ? "IPv4" : "IPv6");
const POLICIES = ["PreferDualStack", "RequireDualStack", "SingleStack"];
const TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

/** `--service-cidr`: one CIDR, or two of different families (the first is the default family). */
export function parseServiceCidrs(text: string): Cidr[] {
  const parts = text.split(",");
  if (parts.length > 2) throw new Error(`--service-cidr ${JSON.stringify(text)}: at most two CIDRs, one per IP family`);
  const cidrs = parts.map((p) => {
    try {
      return parseCidr(p);
    } catch (e) {
      throw new Error(`--service-cidr: ${(e as Error).message}`);
    }
  });
  if (cidrs.length === 2 && cidrs[0]!.family === cidrs[1]!.family) throw new Error(`--service-cidr ${JSON.stringify(text)}: the two CIDRs must be of different IP families`);
  for (const c of cidrs) if (hostCount(c) < 1n) throw new Error(`--service-cidr: ${c.text} holds no address to allocate`);
  return cidrs;
}

/** `--service-node-port-range`: "low-high", inclusive, as kube-apiserver's flag. */
export function parsePortRange(text: string): { lo: number; hi: number } {
  const m = /^([0-9]{1,5})-([0-9]{1,5})$/.exec(text);
  const lo = Number(m?.[1]);
  const hi = Number(m?.[2]);
  if (!m || lo < 1 || hi > 65535 || lo > hi) throw new Error(`--service-node-port-range ${JSON.stringify(text)}: not a range low-high of ports 1-65535`);
  return { lo, hi };
}

const bigOf = (bytes: number[]) => bytes.reduce((n, b) => (n << 8n) | BigInt(b), 0n);
function textOf(n: bigint, family: Family): string {
  const bytes: number[] = [];
  for (let i = 0; i < (family === 4 ? 4 : 16); i++, n >>= 8n) bytes.unshift(Number(n & 0xffn));
  return ipaddr.fromByteArray(bytes).toString();
}
/** Addresses kube-apiserver hands out of a CIDR: not the network address, not IPv4's
 * broadcast, and at most 65535 of an IPv6 range (its bitmap's size). */
function hostCount(c: Cidr): bigint {
  const all = 1n << BigInt((c.family === 4 ? 32 : 128) - c.prefix);
  return c.family === 4 ? all - 2n : (all > 65536n ? 65536n : all) - 1n;
}
/** The lower part of a range kept for addresses asked for by value (kube-apiserver's static
 * subrange): dynamic allocation takes from above it first. */
const staticBand = (size: bigint, min: bigint, max: bigint, step: bigint) => (size <= min ? 0n : size / step < min ? min : size / step > max ? max : size / step);

/** A set of numbered slots 0..size-1 taken at random, upper band first, as kube's bitmaps. */
class Slots {
  readonly used = new Set<bigint>();
  constructor(
    readonly size: bigint,
    private readonly band: bigint,
    private readonly random: () => number,
  ) {}
  next(): bigint | undefined {
    for (const [from, to] of [[this.band, this.size], [0n, this.band]] as const) {
      const n = to - from;
      if (n <= 0n) continue;
      const start = BigInt(Math.floor(this.random() * Number(n > 1n << 50n ? 1n << 50n : n)));
      for (let i = 0n; i < n; i++) {
        const s = from + ((start + i) % n);
        if (!this.used.has(s)) return s;
      }
    }
    return undefined;
  }
}

class IpPool {
  readonly family: Family;
  private readonly base: bigint;
  readonly slots: Slots;
  constructor(
    readonly cidr: Cidr,
    random: () => number,
  ) {
    this.family = cidr.family;
    this.base = bigOf(cidr.bytes) + 1n;
    const size = hostCount(cidr);
    this.slots = new Slots(size, staticBand(size + 2n, 16n, 256n, 16n), random);
  }
  /** the slot of `ip`, or undefined when it is outside what this pool hands out */
  slot(ip: string): bigint | undefined {
    const off = bigOf(addressBytes(ip, this.family)) - this.base;
    return off >= 0n && off < this.slots.size ? off : undefined;
  }
  text(slot: bigint): string {
    return textOf(this.base + slot, this.family);
  }
}

interface Spec {
  type?: string;
  clusterIP?: string;
  clusterIPs?: string[];
  ipFamilies?: string[];
  ipFamilyPolicy?: string;
  selector?: Record<string, string>;
  ports?: Array<{ name?: string; port?: number; protocol?: string; targetPort?: number | string; nodePort?: number }>;
  sessionAffinity?: string;
  sessionAffinityConfig?: unknown;
  externalTrafficPolicy?: string;
  internalTrafficPolicy?: string;
  allocateLoadBalancerNodePorts?: boolean;
  healthCheckNodePort?: number;
  [k: string]: unknown;
}

/** A Go value as kube-apiserver's field errors print it. */
function goValue(v: unknown): string {
  if (Array.isArray(v)) return `[]string{${v.map((x) => JSON.stringify(String(x))).join(", ")}}`;
  return typeof v === "string" ? JSON.stringify(v) : String(v);
}

/** A 422 as kube-apiserver words it: `Service "x" is invalid: <field>: <what>`. */
function invalid(name: string, errors: Array<{ field: string; message: string; reason?: string }>): ApiError {
  const msgs = errors.map((e) => `${e.field}: ${e.message}`);
  return new ApiError(422, "Invalid", `Service "${name}" is invalid: ${msgs.length === 1 ? msgs[0] : `[${msgs.join(", ")}]`}`, {
    name,
    kind: "Service",
    causes: errors.map((e) => ({ reason: e.reason ?? "FieldValueInvalid", message: `${e.message}`, field: e.field })),
  });
}
const bad = (field: string, value: unknown, why: string) => ({ field, message: `Invalid value: ${goValue(value)}: ${why}` });

const needsNodePorts = (s: Spec) => s.type === "NodePort" || s.type === "LoadBalancer";
const needsHealthCheck = (s: Spec) => s.type === "LoadBalancer" && s.externalTrafficPolicy === "Local";
const isHeadless = (s: Spec) => s.clusterIPs?.[0] === "None" || s.clusterIP === "None";
/** The cluster IPs a stored Service holds (one stored before clusterIPs existed: its clusterIP). */
const heldIPs = (s: Spec) => (s.type === "ExternalName" || isHeadless(s) ? [] : (s.clusterIPs ?? (s.clusterIP ? [s.clusterIP] : [])));

export interface ServiceAllocatorOptions {
  /** one or two CIDRs of different families; the first is the default family */
  serviceCIDRs: Cidr[];
  nodePorts: { lo: number; hi: number };
  /** for tests; Math.random otherwise */
  random?: () => number;
  /** whether ValidateService's field rules apply (Store.checkFields; always, unless a test
   * plants a Service kube-apiserver would refuse) */
  checkFields?: () => boolean;
}

/** One request's allocations, undone if it fails, and the releases it makes if it succeeds. */
class Txn {
  private readonly taken: Array<[Slots, bigint]> = [];
  readonly releases: Array<[Slots, bigint]> = [];
  take(s: Slots, slot: bigint): void {
    s.used.add(slot);
    this.taken.push([s, slot]);
  }
  undo(): void {
    for (const [s, slot] of this.taken) s.used.delete(slot);
  }
  commit(): void {
    for (const [s, slot] of this.releases) s.used.delete(slot);
  }
}

export class ServiceAllocator {
  private readonly pools = new Map<IPFamily, IpPool>();
  private readonly defaultFamily: IPFamily;
  private readonly ports: Slots;
  private readonly portLo: number;
  private readonly portRange: string;
  private readonly checkFields: () => boolean;

  constructor(o: ServiceAllocatorOptions) {
    this.checkFields = o.checkFields ?? (() => true);
    const random = o.random ?? Math.random;
    for (const c of o.serviceCIDRs) this.pools.set(familyName(c.family), new IpPool(c, random));
    this.defaultFamily = familyName(o.serviceCIDRs[0]!.family);
    const size = BigInt(o.nodePorts.hi - o.nodePorts.lo + 1);
    this.ports = new Slots(size, staticBand(size, 16n, 128n, 32n), random);
    this.portLo = o.nodePorts.lo;
    this.portRange = `${o.nodePorts.lo}-${o.nodePorts.hi}`;
  }

  /** The hooks a Store calls for Services. */
  hooks(): TypeHooks {
    return { create: (o, dryRun) => this.create(o, dryRun), update: (next, cur, dryRun) => this.update(next, cur, dryRun), deleted: (o) => this.release(o) };
  }

  /** Takes what stored Services hold (after a restart); returns what could not be taken. */
  restore(services: KubeObject[]): string[] {
    const problems: string[] = [];
    for (const o of services) {
      const s = (o.spec ?? {}) as Spec;
      const who = `Service ${o.metadata.namespace}/${o.metadata.name}`;
      for (const ip of heldIPs(s)) {
        const p = this.poolOf(ip);
        const slot = p?.slot(ip);
        if (slot === undefined || p!.slots.used.has(slot)) problems.push(`${who}: clusterIP ${ip} ${slot === undefined ? "is not in the service CIDRs" : "is held twice"}`);
        else p!.slots.used.add(slot);
      }
      for (const np of this.nodePortsOf(s)) {
        const slot = BigInt(np - this.portLo);
        if (slot < 0n || slot >= this.ports.size) problems.push(`${who}: nodePort ${np} is not in ${this.portRange}`);
        else this.ports.used.add(slot);
      }
    }
    return problems;
  }

  private poolOf(ip: string): IpPool | undefined {
    try {
      return this.pools.get(familyName(addressFamily(ip)));
    } catch {
      return undefined;
    }
  }

  /** Every node port a Service holds (node ports shared by two protocols count once). */
  private nodePortsOf(s: Spec): number[] {
    const out = new Set<number>();
    for (const p of s.ports ?? []) if (typeof p.nodePort === "number" && p.nodePort > 0) out.add(p.nodePort);
    if (typeof s.healthCheckNodePort === "number" && s.healthCheckNodePort > 0) out.add(s.healthCheckNodePort);
    return [...out];
  }

  /** With `dryRun`, the Service is completed and checked as for a real create; nothing is kept. */
  create(o: KubeObject, dryRun = false): void {
    const name = o.metadata.name ?? "";
    const s = prepare(o, name);
    if (s.clusterIP && !s.clusterIPs?.length) s.clusterIPs = [s.clusterIP];
    validate(name, s, this.checkFields());
    const txn = new Txn();
    try {
      this.initFamilies(name, s, undefined);
      this.allocIPs(name, s, txn);
      if (needsNodePorts(s)) this.initNodePorts(name, s, txn, []);
      if (needsHealthCheck(s)) s.healthCheckNodePort = this.nodePort(name, "spec.healthCheckNodePort", s.healthCheckNodePort ?? 0, txn);
    } catch (e) {
      txn.undo();
      throw e;
    }
    if (dryRun) txn.undo();
    else txn.commit();
  }

  update(next: KubeObject, cur: KubeObject, dryRun = false): void {
    const name = next.metadata.name ?? "";
    const s = prepare(next, name);
    const old = defaultOnRead((cur.spec ?? {}) as Spec);
    normalizeClusterIPs(s, old);
    dropTypeDependent(s, old);
    patchAllocated(s, old);
    validate(name, s, this.checkFields());
    validateUpdate(name, s, old);
    const txn = new Txn();
    try {
      this.initFamilies(name, s, old);
      this.updateIPs(name, s, old, txn);
      this.updateNodePorts(name, s, old, txn);
    } catch (e) {
      txn.undo();
      throw e;
    }
    if (dryRun) txn.undo();
    else txn.commit();
  }

  release(o: KubeObject): void {
    const s = (o.spec ?? {}) as Spec;
    for (const ip of heldIPs(s)) this.releaseIP(ip);
    for (const np of this.nodePortsOf(s)) this.ports.used.delete(BigInt(np - this.portLo));
  }

  private releaseIP(ip: string, txn?: Txn): void {
    const p = this.poolOf(ip);
    const slot = p?.slot(ip);
    if (slot === undefined) return;
    if (txn) txn.releases.push([p!.slots, slot]);
    else p!.slots.used.delete(slot);
  }

  /** kube-apiserver's initIPFamilyFields: ipFamilyPolicy and ipFamilies filled in. */
  private initFamilies(name: string, s: Spec, old: Spec | undefined): void {
    if (s.type === "ExternalName") return;
    // a PreferDualStack Service keeps its families when nothing about them changed
    if (old && old.type !== "ExternalName" && s.ipFamilyPolicy === undefined && old.ipFamilyPolicy === "PreferDualStack" && sameList(s.clusterIPs, old.clusterIPs) && sameList(s.ipFamilies, old.ipFamilies)) {
      s.ipFamilyPolicy = old.ipFamilyPolicy;
      return;
    }
    if (s.ipFamilyPolicy === undefined) {
      if (old?.ipFamilyPolicy !== undefined) s.ipFamilyPolicy = old.ipFamilyPolicy;
      else if (s.clusterIP === "None" && !Object.keys(s.selector ?? {}).length) s.ipFamilyPolicy = "RequireDualStack";
      else s.ipFamilyPolicy = "SingleStack";
    }
    const errs: Array<{ field: string; message: string }> = [];
    const policy = s.ipFamilyPolicy;
    if (old && policy === "SingleStack") {
      if (sameList(s.clusterIPs, old.clusterIPs) && (s.clusterIPs?.length ?? 0) > 1) s.clusterIPs = s.clusterIPs!.slice(0, 1);
      if (sameList(s.ipFamilies, old.ipFamilies) && (s.ipFamilies?.length ?? 0) > 1) s.ipFamilies = s.ipFamilies!.slice(0, 1);
    } else if (old) {
      if ((s.clusterIPs?.length ?? 0) < (old.clusterIPs?.length ?? 0) && (s.clusterIPs?.length ?? 0) > 0) errs.push(bad("spec.ipFamilyPolicy", policy, "must be 'SingleStack' to release the secondary cluster IP"));
      if ((s.ipFamilies?.length ?? 0) < (old.ipFamilies?.length ?? 0) && (s.ipFamilies?.length ?? 0) > 0) errs.push(bad("spec.ipFamilyPolicy", policy, "must be 'SingleStack' to release the secondary IP family"));
    }
    if (policy === "SingleStack") {
      if (s.clusterIPs?.length === 2) errs.push(bad("spec.ipFamilyPolicy", policy, "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified"));
      if (s.ipFamilies?.length === 2) errs.push(bad("spec.ipFamilyPolicy", policy, "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"));
    }
    s.ipFamilies ??= [];
    for (const [i, ip] of (s.clusterIPs ?? []).entries()) {
      if (ip === "None") break;
      const fam = familyName(addressFamily(ip));
      if (i < s.ipFamilies.length) continue;
      if (!this.pools.has(fam)) errs.push(bad(`spec.clusterIPs[${i}]`, s.clusterIPs, `${fam} is not configured on this cluster`));
      else s.ipFamilies.push(fam);
    }
    if (errs.length) throw invalid(name, errs);
    const other = (f: string) => (f === "IPv4" ? "IPv6" : "IPv4");
    if (s.clusterIP === "None" && !Object.keys(s.selector ?? {}).length) {
      // headless without selector: any families, even on a single-stack cluster
      if (!s.ipFamilies.length) s.ipFamilies = [this.defaultFamily];
      if (s.ipFamilies.length < 2 && policy !== "SingleStack") s.ipFamilies.push(other(s.ipFamilies[0]!));
      return;
    }
    if (policy === "RequireDualStack" && this.pools.size < 2) errs.push(bad("spec.ipFamilyPolicy", policy, "this cluster is not configured for dual-stack services"));
    for (const [i, f] of s.ipFamilies.entries()) if (!this.pools.has(f as IPFamily)) errs.push(bad(`spec.ipFamilies[${i}]`, f, "not configured on this cluster"));
    if (errs.length) throw invalid(name, errs);
    if (!s.ipFamilies.length) s.ipFamilies = [this.defaultFamily];
    if (policy !== "SingleStack" && s.ipFamilies.length === 1 && this.pools.size === 2) s.ipFamilies.push(other(s.ipFamilies[0]!));
  }

  /** One cluster IP: the one asked for if it is free and in range, else the next free. */
  private allocIP(name: string, s: Spec, family: string, want: string, txn: Txn): string {
    const pool = this.pools.get(family as IPFamily)!;
    if (!want) {
      const slot = pool.slots.next();
      if (slot === undefined) throw new ApiError(500, "InternalError", `Internal error occurred: failed to allocate a serviceIP: range is full`);
      txn.take(pool.slots, slot);
      return pool.text(slot);
    }
    const slot = pool.slot(want);
    const why = slot === undefined ? `the provided IP (${want}) is not in the valid range. The range of valid IPs is ${pool.cidr.text}` : pool.slots.used.has(slot) ? "provided IP is already allocated" : "";
    if (why) throw invalid(name, [bad("spec.clusterIPs", s.clusterIPs, `failed to allocate IP ${want}: ${why}`)]);
    txn.take(pool.slots, slot!);
    return want;
  }

  private allocIPs(name: string, s: Spec, txn: Txn): void {
    if (s.type === "ExternalName" || s.clusterIPs?.[0] === "None") return;
    const ips = [...(s.clusterIPs ?? [])];
    s.ipFamilies!.forEach((f, i) => (ips[i] = this.allocIP(name, s, f, ips[i] ?? "", txn)));
    s.clusterIPs = ips;
    s.clusterIP = ips[0];
  }

  private updateIPs(name: string, s: Spec, old: Spec, txn: Txn): void {
    if (old.type === "ExternalName" && s.type !== "ExternalName") return this.allocIPs(name, s, txn);
    if (old.clusterIPs?.[0] === "None") return;
    if (s.type === "ExternalName") {
      for (const ip of old.clusterIPs ?? []) this.releaseIP(ip, txn);
      return;
    }
    const was = old.ipFamilies?.length ?? 0;
    const now = s.ipFamilies?.length ?? 0;
    if (was === 1 && now === 2) {
      const ips = [...(s.clusterIPs ?? [])];
      ips[1] = this.allocIP(name, s, s.ipFamilies![1]!, ips[1] ?? "", txn);
      s.clusterIPs = ips;
    } else if (was === 2 && now === 1 && old.clusterIPs?.[1]) this.releaseIP(old.clusterIPs[1], txn);
  }

  /** One node port: the one asked for if it is free and in range, else the next free. */
  private nodePort(name: string, field: string, want: number, txn: Txn): number {
    if (!want) {
      const slot = this.ports.next();
      if (slot === undefined) throw new ApiError(500, "InternalError", "Internal error occurred: failed to allocate a nodePort: range is full");
      txn.take(this.ports, slot);
      return this.portLo + Number(slot);
    }
    const slot = BigInt(want - this.portLo);
    if (slot < 0n || slot >= this.ports.size) throw invalid(name, [bad(field, want, `provided port is not in the valid range. The range of valid ports is ${this.portRange}`)]);
    if (this.ports.used.has(slot)) throw invalid(name, [bad(field, want, "provided port is already allocated")]);
    txn.take(this.ports, slot);
    return want;
  }

  /** kube-apiserver's initNodePorts: a port number served on two protocols shares its node
   * port. `held`: the node ports the Service had before this update, its to keep. */
  private initNodePorts(name: string, s: Spec, txn: Txn, held: number[]): void {
    const byPort = new Map<number, number>();
    const keep = new Set(held);
    const mine = new Set<number>();
    const claim = (field: string, want: number) => {
      const n = want && keep.has(want) && !mine.has(want) ? want : this.nodePort(name, field, want, txn);
      mine.add(n);
      return n;
    };
    const auto = s.type === "NodePort" || s.allocateLoadBalancerNodePorts !== false;
    for (const [i, p] of (s.ports ?? []).entries()) {
      if (!p.nodePort && !auto) continue;
      const field = `spec.ports[${i}].nodePort`;
      const shared = byPort.get(p.port!);
      if (shared === undefined) {
        p.nodePort = claim(field, p.nodePort || (s.ports ?? []).find((q) => q.port === p.port && q.nodePort)?.nodePort || 0);
        byPort.set(p.port!, p.nodePort);
      } else if (!p.nodePort) p.nodePort = shared;
      else if (p.nodePort !== shared) claim(field, p.nodePort);
    }
  }

  private updateNodePorts(name: string, s: Spec, old: Spec, txn: Txn): void {
    const held = needsNodePorts(old) ? (old.ports ?? []).map((p) => p.nodePort ?? 0).filter((n) => n > 0) : [];
    if (needsNodePorts(s)) this.initNodePorts(name, s, txn, held);
    const now = new Set(needsNodePorts(s) ? (s.ports ?? []).map((p) => p.nodePort) : []);
    for (const n of new Set(held)) if (!now.has(n)) txn.releases.push([this.ports, BigInt(n - this.portLo)]);
    const hc = needsHealthCheck(old) ? (old.healthCheckNodePort ?? 0) : 0;
    if (needsHealthCheck(s)) {
      if (!hc) s.healthCheckNodePort = this.nodePort(name, "spec.healthCheckNodePort", s.healthCheckNodePort ?? 0, txn);
      else if (!s.healthCheckNodePort) s.healthCheckNodePort = hc;
      else if (s.healthCheckNodePort !== hc) throw invalid(name, [bad("spec.healthCheckNodePort", s.healthCheckNodePort, "field is immutable")]);
    } else {
      if (hc) txn.releases.push([this.ports, BigInt(hc - this.portLo)]);
      delete s.healthCheckNodePort;
    }
  }
}

const sameList = (a: string[] | undefined, b: string[] | undefined) => (a ?? []).length === (b ?? []).length && (a ?? []).every((x, i) => x === b![i]);

/** The spec as the v1 defaults leave it (SetDefaults_Service), copied so that nothing stored
 * is changed in place; its shape checked where allocation reads it, and port names (an
 * update finds the node ports it left out by name). */
function prepare(o: KubeObject, name: string): Spec {
  if (o.spec !== undefined && (typeof o.spec !== "object" || o.spec === null || Array.isArray(o.spec))) throw invalid(name, [{ field: "spec", message: "Invalid value: must be an object" }]);
  const s = structuredClone((o.spec ?? {}) as Spec);
  o.spec = s;
  const errs: Array<{ field: string; message: string; reason?: string }> = [];
  s.type ??= "ClusterIP";
  if (!TYPES.includes(s.type)) errs.push({ field: "spec.type", message: `Unsupported value: ${goValue(s.type)}: supported values: ${TYPES.map((t) => `"${t}"`).join(", ")}`, reason: "FieldValueNotSupported" });
  s.sessionAffinity ??= "None";
  if (s.sessionAffinity === "ClientIP") s.sessionAffinityConfig ??= { clientIP: { timeoutSeconds: 10800 } };
  if (s.type !== "ExternalName") s.internalTrafficPolicy ??= "Cluster";
  if (needsNodePorts(s)) s.externalTrafficPolicy ??= "Cluster";
  if (s.type === "LoadBalancer") s.allocateLoadBalancerNodePorts ??= true;
  if (s.ports !== undefined && !Array.isArray(s.ports)) errs.push({ field: "spec.ports", message: "Invalid value: must be a list" });
  for (const [i, p] of (Array.isArray(s.ports) ? s.ports : []).entries()) {
    if (!p || typeof p !== "object") {
      errs.push({ field: `spec.ports[${i}]`, message: "Invalid value: must be an object" });
      continue;
    }
    if (p.nodePort !== undefined && (!Number.isInteger(p.nodePort) || p.nodePort < 0 || p.nodePort > 65535)) errs.push(bad(`spec.ports[${i}].nodePort`, p.nodePort, "must be between 1 and 65535, inclusive"));
    // as ValidateService: with more than one port each has a name, and no name twice
    if (s.ports!.length > 1 && !p.name) errs.push({ field: `spec.ports[${i}].name`, message: "Required value", reason: "FieldValueRequired" });
    else if (p.name && s.ports!.findIndex((q) => q && q.name === p.name) !== i) errs.push({ field: `spec.ports[${i}].name`, message: `Duplicate value: ${goValue(p.name)}`, reason: "FieldValueDuplicate" });
    p.protocol ??= "TCP";
    if (p.targetPort === undefined || p.targetPort === 0 || p.targetPort === "") p.targetPort = p.port;
  }
  if (s.healthCheckNodePort !== undefined && (!Number.isInteger(s.healthCheckNodePort) || s.healthCheckNodePort < 0 || s.healthCheckNodePort > 65535)) errs.push(bad("spec.healthCheckNodePort", s.healthCheckNodePort, "must be between 1 and 65535, inclusive"));
  if (s.clusterIP !== undefined && typeof s.clusterIP !== "string") errs.push(bad("spec.clusterIP", s.clusterIP, "must be a string"));
  for (const k of ["clusterIPs", "ipFamilies"] as const) {
    const v = s[k];
    if (v !== undefined && (!Array.isArray(v) || v.some((x) => typeof x !== "string"))) errs.push(bad(`spec.${k}`, v, "must be a list of strings"));
  }
  if (s.clusterIP === "") delete s.clusterIP;
  if (errs.length) throw invalid(name, errs);
  return s;
}

/** kube-apiserver's defaultOnRead: a Service stored with clusterIP alone (written before
 * clusterIPs and ipFamilies existed, or by hand) read as the single-stack Service it is. */
function defaultOnRead(stored: Spec): Spec {
  const old = structuredClone(stored);
  if (old.type === "ExternalName" || !old.clusterIP || old.clusterIPs?.length) return old;
  old.clusterIPs = [old.clusterIP];
  if (old.clusterIP !== "None" && !old.ipFamilies?.length) {
    try {
      old.ipFamilies = [familyName(addressFamily(old.clusterIP))];
      old.ipFamilyPolicy ??= "SingleStack";
    } catch {}
  }
  return old;
}

/** kube-apiserver's NormalizeClusterIPs for an update: clusterIP and clusterIPs kept in step. */
function normalizeClusterIPs(s: Spec, old: Spec): void {
  if ((old.clusterIPs?.length ?? 0) > 0 && !s.clusterIPs?.length && old.clusterIP === s.clusterIP) s.clusterIPs = old.clusterIPs;
  if (old.clusterIP !== s.clusterIP) {
    if (old.clusterIP && !s.clusterIP && sameList(s.clusterIPs, old.clusterIPs)) delete s.clusterIPs;
    if (s.clusterIP && sameList(s.clusterIPs, old.clusterIPs)) s.clusterIPs = [s.clusterIP];
  }
}

/** kube-apiserver's dropTypeDependentFields: a type change drops the fields the new type has
 * no use for, when the update left them as they were. */
function dropTypeDependent(s: Spec, old: Spec): void {
  if (needsNodePorts(old) && !needsNodePorts(s) && (s.ports ?? []).every((p, i) => p.nodePort === old.ports?.[i]?.nodePort)) for (const p of s.ports ?? []) delete p.nodePort;
  if (needsHealthCheck(old) && !needsHealthCheck(s) && s.healthCheckNodePort === old.healthCheckNodePort) delete s.healthCheckNodePort;
  if (old.type !== "ExternalName" && s.type === "ExternalName") {
    if (sameList(s.clusterIPs, old.clusterIPs)) delete s.clusterIPs;
    if (s.clusterIP === old.clusterIP) delete s.clusterIP;
    if (sameList(s.ipFamilies, old.ipFamilies)) delete s.ipFamilies;
    if (s.ipFamilyPolicy === old.ipFamilyPolicy) delete s.ipFamilyPolicy;
    if (s.internalTrafficPolicy === old.internalTrafficPolicy) delete s.internalTrafficPolicy;
  }
  if (old.type === "LoadBalancer" && s.type !== "LoadBalancer" && s.allocateLoadBalancerNodePorts === old.allocateLoadBalancerNodePorts) delete s.allocateLoadBalancerNodePorts;
  if (needsNodePorts(old) && !needsNodePorts(s) && s.externalTrafficPolicy === old.externalTrafficPolicy) delete s.externalTrafficPolicy;
}

/** kube-apiserver's patchAllocatedValues: what an update leaves out keeps its allocation. */
function patchAllocated(s: Spec, old: Spec): void {
  if (old.type !== "ExternalName" && s.type !== "ExternalName") {
    if (!s.clusterIP && old.clusterIP) s.clusterIP = old.clusterIP;
    if (!s.clusterIPs?.length && old.clusterIPs?.length) s.clusterIPs = [...old.clusterIPs];
  }
  if (needsNodePorts(old) && needsNodePorts(s)) {
    const used = new Set((s.ports ?? []).map((p) => p.nodePort).filter(Boolean));
    const byName = new Map((old.ports ?? []).map((p) => [p.name ?? "", p.nodePort]));
    for (const p of s.ports ?? []) {
      const was = byName.get(p.name ?? "");
      if (!p.nodePort && was && !used.has(was)) used.add((p.nodePort = was));
    }
  }
  if (needsHealthCheck(old) && needsHealthCheck(s) && !s.healthCheckNodePort) s.healthCheckNodePort = old.healthCheckNodePort;
}

const TRAFFIC_POLICIES = ["Cluster", "Local"];

/** ValidateService's field rules (after the defaults, as kube-apiserver runs them): ports
 * (required but for ExternalName and headless Services; numbers 1-65535, protocols, target
 * ports by number or IANA name, no port or node port twice), an ExternalName Service holding
 * no cluster IP, a healthCheckNodePort only where one is needed (else it would hold a node
 * port another Service may have), traffic policies, the selector. */
export function serviceFieldErrors(s: Spec): FieldError[] {
  const errs: FieldError[] = [];
  const ports = Array.isArray(s.ports) ? s.ports.filter((p) => p && typeof p === "object") : [];
  if (!ports.length && !isHeadless(s) && s.type !== "ExternalName") errs.push({ field: "spec.ports", value: s.ports, detail: "", type: "FieldValueRequired" });
  const seen = new Set<string>();
  const seenNode = new Set<string>();
  for (const [i, p] of ports.entries()) {
    const f = `spec.ports[${i}]`;
    if (typeof p.name === "string" && p.name) for (const d of dns1123Label(p.name)) errs.push({ field: `${f}.name`, value: p.name, detail: d });
    errs.push(...portNumberErrors(p.port, `${f}.port`), ...protocolErrors(p.protocol, `${f}.protocol`));
    // a targetPort defaulted from an invalid port is that port's error, not another
    if (p.targetPort !== p.port) errs.push(...portNumOrNameErrors(p.targetPort, `${f}.targetPort`));
    const key = `${String(p.protocol)}/${String(p.port)}`;
    if (seen.has(key)) errs.push({ field: f, value: key, detail: "", type: "FieldValueDuplicate" });
    seen.add(key);
    if (p.nodePort) {
      const nkey = `${String(p.protocol)}/${String(p.nodePort)}`;
      if (seenNode.has(nkey)) errs.push({ field: `${f}.nodePort`, value: p.nodePort, detail: "", type: "FieldValueDuplicate" });
      seenNode.add(nkey);
    }
  }
  if (s.type === "ExternalName") {
    if (s.clusterIPs?.length || s.clusterIP) errs.push({ field: s.clusterIPs?.length ? "spec.clusterIPs" : "spec.clusterIP", value: s.clusterIPs ?? s.clusterIP, detail: "may not be set for ExternalName services", type: "FieldValueForbidden" });
    const cname = typeof s.externalName === "string" ? s.externalName.replace(/\.$/, "") : s.externalName;
    if (cname === undefined || cname === "") errs.push({ field: "spec.externalName", value: cname, detail: "", type: "FieldValueRequired" });
    else if (typeof cname !== "string") errs.push({ field: "spec.externalName", value: cname, detail: "must be a string", type: "FieldValueTypeInvalid" });
    else for (const d of dns1123Subdomain(cname)) errs.push({ field: "spec.externalName", value: s.externalName, detail: d });
  }
  if (s.healthCheckNodePort && !needsHealthCheck(s)) errs.push({ field: "spec.healthCheckNodePort", value: s.healthCheckNodePort, detail: "HealthCheckNodePort can only be set on LoadBalancer service with ExternalTrafficPolicy=Local" });
  for (const k of ["externalTrafficPolicy", "internalTrafficPolicy"] as const) {
    if (s[k] !== undefined && !TRAFFIC_POLICIES.includes(s[k])) errs.push({ field: `spec.${k}`, value: s[k], detail: TRAFFIC_POLICIES.map((x) => `"${x}"`).join(", "), type: "FieldValueNotSupported" });
  }
  errs.push(...stringMap(s.selector, "spec.selector", true));
  return errs;
}

/** ValidateServiceClusterIPsRelatedFields, in the parts allocation depends on; with
 * `fields`, serviceFieldErrors too. */
function validate(name: string, s: Spec, fields: boolean): void {
  const errs: Array<{ field: string; message: string; reason?: string }> = fields ? serviceFieldErrors(s).map((e) => ({ field: e.field, message: describe(e), reason: e.type })) : [];
  const ips = s.clusterIPs ?? [];
  if (s.ipFamilyPolicy !== undefined && !POLICIES.includes(s.ipFamilyPolicy)) {
    errs.push({ field: "spec.ipFamilyPolicy", message: `Unsupported value: ${goValue(s.ipFamilyPolicy)}: supported values: ${POLICIES.map((p) => `"${p}"`).join(", ")}`, reason: "FieldValueNotSupported" });
  }
  if (ips.length && s.clusterIP !== ips[0]) errs.push(bad("spec.clusterIPs", ips, "first value must match `clusterIP`"));
  if (ips.length > 2) errs.push(bad("spec.clusterIPs", ips, "may only hold up to 2 values"));
  const fams: string[] = [];
  for (const [i, ip] of ips.entries()) {
    if (ip === "None") {
      if (i > 0 || ips.length > 1) errs.push(bad(`spec.clusterIPs[${i}]`, ip, "must not have other values when `None` is specified"));
      else if (needsNodePorts(s)) errs.push(bad("spec.clusterIPs[0]", ip, `may not be set to 'None' for ${s.type} services`));
      continue;
    }
    try {
      fams.push(familyName(addressFamily(ip)));
    } catch (e) {
      errs.push(bad(`spec.clusterIPs[${i}]`, ip, `must be a valid IP address (${(e as AddressError).message})`));
    }
  }
  if (!needsNodePorts(s)) {
    for (const [i, p] of (s.ports ?? []).entries()) if (p.nodePort) errs.push({ field: `spec.ports[${i}].nodePort`, message: `Forbidden: may not be used when \`type\` is '${s.type}'`, reason: "FieldValueForbidden" });
  }
  if (fams.length === 2 && fams[0] === fams[1]) errs.push(bad("spec.clusterIPs", ips, "may specify no more than one IP for each IP family"));
  const families = s.ipFamilies ?? [];
  if (families.length > 2) errs.push(bad("spec.ipFamilies", families, "may only hold up to 2 values"));
  for (const [i, f] of families.entries()) {
    if (f !== "IPv4" && f !== "IPv6") errs.push({ field: `spec.ipFamilies[${i}]`, message: `Unsupported value: ${goValue(f)}: supported values: "IPv4", "IPv6"`, reason: "FieldValueNotSupported" });
    else if (families.indexOf(f) !== i) errs.push({ field: `spec.ipFamilies[${i}]`, message: `Duplicate value: ${goValue(f)}`, reason: "FieldValueDuplicate" });
    else if (fams[i] !== undefined && fams[i] !== f) errs.push(bad(`spec.clusterIPs[${i}]`, ips[i], `expected an ${f} value as indicated by \`ipFamilies[${i}]\``));
  }
  if (errs.length) throw invalid(name, errs);
}

/** The checks of a Service write that do not depend on the allocator's ranges (what a
 * Service loaded from disk must pass; what it holds is the allocator's restore()). */
export function validateStoredService(o: KubeObject): void {
  const name = o.metadata.name ?? "";
  validate(name, prepare({ ...o }, name), true);
}

/** validateUpgradeDowngradeClusterIPs: the primary cluster IP and family never change. */
function validateUpdate(name: string, s: Spec, old: Spec): void {
  if (s.type === "ExternalName" || old.type === "ExternalName") return;
  if (isHeadless(s) && isHeadless(old)) return;
  const errs: Array<{ field: string; message: string }> = [];
  const a = old.clusterIPs ?? [];
  const b = s.clusterIPs ?? [];
  if (a.length === b.length) a.forEach((ip, i) => ip !== b[i] && errs.push(bad(`spec.clusterIPs[${i}]`, b, "may not change once set")));
  else if (a.length > b.length) {
    if (!b.length) errs.push(bad("spec.clusterIPs[0]", b, "primary clusterIP can not be unset"));
    else if (b[0] !== a[0]) errs.push(bad("spec.clusterIPs[0]", b, "may not change once set"));
    if (b.length === 1 && s.ipFamilyPolicy !== "SingleStack") errs.push(bad("spec.clusterIPs[0]", b, "`ipFamilyPolicy` must be set to 'SingleStack' when releasing the secondary clusterIP"));
  } else if (a.length && b[0] !== a[0]) errs.push(bad("spec.clusterIPs[0]", b, "may not change once set"));
  const fa = old.ipFamilies ?? [];
  const fb = s.ipFamilies ?? [];
  if (fa.length && fb.length && fa[0] !== fb[0]) errs.push(bad("spec.ipFamilies[0]", fb[0], "may not change once set"));
  if (errs.length) throw invalid(name, errs);
}

/** Gives `store`'s Services an allocator (rebuilt from the Services it holds); returns what
 * the stored Services hold that could not be taken (outside the ranges, or twice). */
export function attachServiceAllocator(store: Store, o: Partial<ServiceAllocatorOptions> = {}): string[] {
  const t = store.type("", "services");
  if (!t) return [];
  const a = new ServiceAllocator({ serviceCIDRs: o.serviceCIDRs ?? parseServiceCidrs(DEFAULT_SERVICE_CIDR), nodePorts: o.nodePorts ?? parsePortRange(DEFAULT_NODE_PORT_RANGE), random: o.random, checkFields: o.checkFields ?? (() => store.checkFields) });
  const problems = a.restore(store.list(t).items);
  store.setHooks(t, a.hooks());
  return problems;
}
