// Packing the policy compile's input for compiler.wasm (assembly/policy.ts): policies and pods
// packed once per object (the ipBlocks' text, pods' label text and group key, addresses as
// words), selectors, rules and labels as words. Strings the module only compares for
// equality (label keys and values, port names) become ids; policies are numbered in the
// string order of `ns/name`, blocks in the string order of their text, so that sorted
// numbers are sorted names.
//
// Addresses are 5 words: family, then the 16 bytes as 4 big-endian words (IPv4: 0, 0, 0, the
// address), so comparing words in order is comparing addresses.
//
// policyAddresses input: nBlocks, nPodCIDRs, nAddrs, then per block [nExcept, lo(5), hi(5),
//   per except lo(5) hi(5)], per pod CIDR [lo(5), hi(5)], per address (5).
// policyRules input: nNamespaces, nGroups, nIds, nBlocks, nPolicies, then
//   per namespace [nLabels, (key, value)...];
//   per group [namespace, nLabels, (key, value)..., nPorts, (name, protocol, port)...,
//     nIds, ids...];
//   per id 0..nIds-1 [kind (0 none, 1 pod, 2 range), group, local];
//   per block [nIds, ids..., nGroups, groups...] (the identities whose key lists it, the
//     groups of the pods holding an address in it);
//   per policy [namespace, flags (1 ingress, 2 egress, 4 viaService), selector,
//     ingress rules if flag 1: [nRules, rules...], egress rules likewise];
//   selector [nRequirements, per requirement (key, operator, nValues, values...)];
//   rule [nPeers, peers..., nPorts, per port (protocol, kind 0 every port / 1 number / 2 name,
//     port or name, endPort)];
//   peer [0, flags (1 pods, 2 namespaces), pods selector?, namespaces selector?] or [1, block].
import { parseCidr, type Cidr } from "../address.ts";
import { IP_PROTOCOL, type PodInfo, type Policy, type PolicyPeer, type PolicyRule, type Selector } from "./types.ts";

/** Strings to small ids, compared only for equality in the module. */
export class Interner {
  private readonly ids = new Map<string, number>();
  id(s: string): number {
    let i = this.ids.get(s);
    if (i === undefined) this.ids.set(s, (i = this.ids.size));
    return i;
  }
  get size(): number {
    return this.ids.size;
  }
}

/** Where words are written: Words, or a plain array's List. */
export interface Out {
  push(v: number): void;
  readonly n: number;
}

/** Words in a plain array (a packed object's: typed arrays cost more to make than to fill). */
export class List implements Out {
  readonly a: number[] = [];
  push(v: number): void {
    this.a.push(v);
  }
  get n(): number {
    return this.a.length;
  }
}

/** Growable u32 words. */
export class Words implements Out {
  buf: Uint32Array;
  n = 0;
  constructor(capacity = 1024) {
    this.buf = new Uint32Array(capacity);
  }
  push(v: number): void {
    if (this.n === this.buf.length) {
      const b = new Uint32Array(Math.max(16, this.buf.length * 2));
      b.set(this.buf);
      this.buf = b;
    }
    this.buf[this.n++] = v;
  }
  pushAll(vs: ArrayLike<number>): void {
    if (this.n + vs.length > this.buf.length) {
      const b = new Uint32Array(Math.max(this.buf.length * 2, this.n + vs.length));
      b.set(this.buf);
      this.buf = b;
    }
    if (vs instanceof Uint32Array) this.buf.set(vs, this.n);
    else for (let i = 0; i < vs.length; i++) this.buf[this.n + i] = vs[i]!;
    this.n += vs.length;
  }
  get words(): Uint32Array {
    return this.buf.subarray(0, this.n);
  }
}

export interface Block {
  text: string;
  cidr: Cidr;
  excepts: Cidr[];
}

function compareCidrs(a: Cidr, b: Cidr): number {
  for (let i = 0; i < a.bytes.length; i++) if (a.bytes[i] !== b.bytes[i]) return a.bytes[i]! - b.bytes[i]!;
  return a.prefix - b.prefix;
}

export function blockOf(peer: Extract<PolicyPeer, { kind: "cidr" }>): Block {
  const cidr = parseCidr(peer.cidr);
  const excepts = [...new Set(peer.except)].map((e) => parseCidr(e)).sort(compareCidrs);
  const text = excepts.length ? `${cidr.text} except ${excepts.map((e) => e.text).join(",")}` : cidr.text;
  return { text, cidr, excepts };
}

/**
 * A policy packed once, when first compiled (policies are kept as they were read, so the
 * object stands for its content): its words from the flags on, with its namespace and its
 * cidr peers' blocks left for each compile to fill in (their numbers change with the other
 * policies in force).
 */
export interface PolicyPack {
  /** `ns/name` */
  name: string;
  words: number[];
  /** the blocks of its cidr peers, in order, and where each one's number goes in `words` */
  blocks: Block[];
  blockAt: number[];
}

/** [namespace (0 here), flags, selector, ingress rules?, egress rules?] */
export function packPolicy(pol: Policy, strings: Interner): PolicyPack {
  const w = new List();
  const blocks: Block[] = [];
  const blockAt: number[] = [];
  const onBlock = (peer: Extract<PolicyPeer, { kind: "cidr" }>, at: number) => {
    blocks.push(blockOf(peer));
    blockAt.push(at);
  };
  w.push(0);
  w.push((pol.ingress ? 1 : 0) | (pol.egress ? 2 : 0) | (pol.viaService ? 4 : 0));
  writeSelector(w, pol.podSelector, strings);
  if (pol.ingress) writeRules(w, pol.ingress, strings, onBlock);
  if (pol.egress) writeRules(w, pol.egress, strings, onBlock);
  return { name: `${pol.namespace}/${pol.name}`, words: w.a, blocks, blockAt };
}

/** What a compile needs of a pod, made once per pod object. */
export interface PodPack {
  /** `k=v` sorted by key, joined by "," */
  labelsText: string;
  /** `ns|labels|ports`: pods with the same are alike to every policy */
  groupKey: string;
  /** its addresses, 5 words each (a plain array: a typed array per pod costs more to make) */
  addrs: number[];
  /** its group in the compile running (set by it) */
  group: number;
}

export function packPod(pod: PodInfo): PodPack {
  const keys = Object.keys(pod.labels).sort();
  let labelsText = "";
  for (let i = 0; i < keys.length; i++) labelsText += `${i ? "," : ""}${keys[i]}=${pod.labels[keys[i]!]}`;
  const portsText = pod.ports
    .map((x) => `${x.name}/${x.protocol}/${x.port}`)
    .sort()
    .join(",");
  const addrs = new List();
  for (const ip of pod.ips) writeAddr(addrs, ip);
  return { labelsText, groupKey: `${pod.namespace}|${labelsText}|${portsText}`, addrs: addrs.a, group: 0 };
}

/** An address (canonical text, compiler/address.ts) as 5 words. */
export function writeAddr(out: Out, ip: string): void {
  if (!ip.includes(":")) {
    // a dotted quad read strictly already: digits and three dots
    let v = 0;
    let part = 0;
    for (let i = 0; i < ip.length; i++) {
      const c = ip.charCodeAt(i);
      if (c === 46) {
        v = v * 256 + part;
        part = 0;
      } else part = part * 10 + c - 48;
    }
    out.push(4);
    out.push(0);
    out.push(0);
    out.push(0);
    out.push(v * 256 + part);
    return;
  }
  writeBytes(out, parseCidr(`${ip}/128`).bytes, 6);
}

function writeBytes(out: Out, bytes: number[], family: 4 | 6): void {
  out.push(family);
  if (family === 4) {
    out.push(0);
    out.push(0);
    out.push(0);
  }
  for (let i = 0; i < bytes.length; i += 4) out.push(((bytes[i]! << 24) | (bytes[i + 1]! << 16) | (bytes[i + 2]! << 8) | bytes[i + 3]!) >>> 0);
}

/** A CIDR's first and last address, 10 words. */
export function writeBounds(out: Out, c: Cidr): void {
  writeBytes(out, c.bytes, c.family);
  const last = c.bytes.map((b, i) => b | (0xff >> Math.max(0, Math.min(8, c.prefix - 8 * i))));
  writeBytes(out, last, c.family);
}

export const OPERATORS = { In: 0, NotIn: 1, Exists: 2, DoesNotExist: 3 } as const;

export function writeSelector(out: Out, sel: Selector, strings: Interner): void {
  out.push(sel.requirements.length);
  for (const r of sel.requirements) {
    out.push(strings.id(r.key));
    out.push(OPERATORS[r.operator]);
    out.push(r.values.length);
    for (const v of r.values) out.push(strings.id(v));
  }
}

export function writeLabels(out: Out, labels: Record<string, string>, strings: Interner): void {
  const keys = Object.keys(labels);
  out.push(keys.length);
  for (const k of keys) {
    out.push(strings.id(k));
    out.push(strings.id(labels[k]!));
  }
}

/** Rules; a cidr peer's block number is left 0, its position given to onBlock. */
export function writeRules(out: Out, rules: PolicyRule[], strings: Interner, onBlock: (peer: Extract<PolicyPeer, { kind: "cidr" }>, at: number) => void): void {
  out.push(rules.length);
  for (const r of rules) {
    out.push(r.peers.length);
    for (const peer of r.peers) {
      if (peer.kind === "cidr") {
        out.push(1);
        onBlock(peer, out.n);
        out.push(0);
        continue;
      }
      out.push(0);
      out.push((peer.pods ? 1 : 0) | (peer.namespaces ? 2 : 0));
      if (peer.pods) writeSelector(out, peer.pods, strings);
      if (peer.namespaces) writeSelector(out, peer.namespaces, strings);
    }
    out.push(r.ports.length);
    for (const port of r.ports) {
      out.push(IP_PROTOCOL[port.protocol]);
      if (port.port === undefined) {
        out.push(0);
        out.push(0);
        out.push(0);
      } else if (typeof port.port === "number") {
        out.push(1);
        out.push(port.port);
        out.push(port.endPort ?? port.port);
      } else {
        out.push(2);
        out.push(strings.id(port.port));
        out.push(0);
      }
    }
  }
}

/** An address back from 5 words at w[at] as canonical text. */
export function addrText(w: Uint32Array, at: number): string {
  if (w[at] === 4) {
    const v = w[at + 4]!;
    return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
  }
  const groups: number[] = [];
  for (let i = 1; i <= 4; i++) groups.push(w[at + i]! >>> 16, w[at + i]! & 0xffff);
  // RFC 5952: the longest run (first on ties) of two or more zero groups becomes "::"
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (g: number[]) => g.map((x) => x.toString(16)).join(":");
  if (best < 0) return hex(groups);
  return `${hex(groups.slice(0, best))}::${hex(groups.slice(best + bestLen))}`;
}
