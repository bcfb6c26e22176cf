// Packing: Services and EndpointSlices into the flat u32 words compiler.wasm reads. A Service
// or slice is packed once, when it arrives; a compile then only copies words. Addresses are
// 16 bytes in network order (IPv4 as ::ffff:a.b.c.d, compiler/keys.ts), port names are
// interned to ids, and an endpoint's conditions (and whether it is on this node) are flags.
// The layouts, in u32 words (assembly/index.ts reads the same):
//
//   service: flags (1 externalTrafficPolicy Local, 2 internalTrafficPolicy Local),
//            nAddrs, nPorts,
//            per address [kind, family, 4 words of address] — clusterIPs, externalIPs,
//            load-balancer IPs, in that order,
//            per port [name id, protocol, port, nodePort]
//   slice:   family, nPorts, nEndpoints, nAddrs,
//            per port [name id, protocol, port],
//            per endpoint [flags (1 ready, 2 serving, 4 terminating, 8 on this node),
//            first address, address count],
//            per address 4 words of address
//   node addresses: per address [family, 4 words of address]
import type { Family } from "./address.ts";
import type { EndpointSlice, Protocol, Service } from "./state.ts";
import type { FrontendKind } from "./tables.ts";
import { writeAddress } from "./keys.ts";

/** Protocols in the order a unit's ports are sorted by (then by port). */
export const PROTOCOLS: Protocol[] = ["SCTP", "TCP", "UDP"];
export const KINDS: FrontendKind[] = ["cluster", "external", "loadbalancer", "nodeport"];

export interface PackedService {
  words: Uint32Array;
  /** the addresses' text, in the packed order: what the compiled output refers to by index */
  ips: string[];
}

/** Port names to small ids; "" (an unnamed port) is 0. */
export class Names {
  private readonly ids = new Map<string, number>([["", 0]]);
  id(name: string): number {
    let i = this.ids.get(name);
    if (i === undefined) this.ids.set(name, (i = this.ids.size));
    return i;
  }
}

const protocolCode = (p: Protocol) => PROTOCOLS.indexOf(p);

// the address goes through a scratch buffer: a byte view of `words` itself would give each of
// them an ArrayBuffer object for as long as it lives (20,000 at 10k services)
const scratch = new Uint8Array(16);
const scratchWords = new Uint32Array(scratch.buffer);
function address(words: Uint32Array, at: number, ip: string): void {
  writeAddress(scratch, 0, ip);
  words.set(scratchWords, at);
}

export function packService(svc: Service, names: Names): PackedService {
  const ips: Array<[number, string]> = [
    ...svc.clusterIPs.map((ip) => [0, ip] as [number, string]),
    ...svc.externalIPs.map((ip) => [1, ip] as [number, string]),
    ...svc.loadBalancerIPs.map((ip) => [2, ip] as [number, string]),
  ];
  const words = new Uint32Array(3 + ips.length * 6 + svc.ports.length * 4);
  words[0] = (svc.externalTrafficLocal ? 1 : 0) | (svc.internalTrafficLocal ? 2 : 0);
  words[1] = ips.length;
  words[2] = svc.ports.length;
  let w = 3;
  for (const [kind, ip] of ips) {
    words[w] = kind;
    words[w + 1] = familyOf(ip);
    address(words, w + 2, ip);
    w += 6;
  }
  for (const p of svc.ports) {
    words[w] = names.id(p.name);
    words[w + 1] = protocolCode(p.protocol);
    words[w + 2] = p.port;
    words[w + 3] = p.nodePort;
    w += 4;
  }
  return { words, ips: ips.map((x) => x[1]) };
}

/** A slice is its words alone: a compiled backend is read back as its key (address and port),
 * so the addresses' text is not kept. */
export function packSlice(sl: EndpointSlice, names: Names, nodeName: string): Uint32Array {
  const ips = sl.endpoints.flatMap((e) => e.addresses);
  const words = new Uint32Array(4 + sl.ports.length * 3 + sl.endpoints.length * 3 + ips.length * 4);
  words[0] = sl.family;
  words[1] = sl.ports.length;
  words[2] = sl.endpoints.length;
  words[3] = ips.length;
  let w = 4;
  for (const p of sl.ports) {
    words[w] = names.id(p.name);
    words[w + 1] = protocolCode(p.protocol);
    words[w + 2] = p.port;
    w += 3;
  }
  let first = 0;
  for (const e of sl.endpoints) {
    words[w] = (e.ready ? 1 : 0) | (e.serving ? 2 : 0) | (e.terminating ? 4 : 0) | (e.nodeName === nodeName ? 8 : 0);
    words[w + 1] = first;
    words[w + 2] = e.addresses.length;
    first += e.addresses.length;
    w += 3;
  }
  for (const ip of ips) {
    address(words, w, ip);
    w += 4;
  }
  return words;
}

export function packNodeIPs(ips: string[]): Uint32Array {
  const words = new Uint32Array(ips.length * 5);
  ips.forEach((ip, i) => {
    words[i * 5] = familyOf(ip);
    address(words, i * 5 + 1, ip);
  });
  return words;
}

// addresses are canonical text (compiler/state.ts): IPv6 has a colon, IPv4 never
const familyOf = (ip: string): Family => (ip.includes(":") ? 6 : 4);
