// The simulated nodes of bench/gossip.ts (b), shared by the bench (their Node objects, what the
// kernel must end up holding) and its load generator (their records). Peer i owns the /26
// 10.244.<4 + i/4>.<64 (i mod 4)> (up to 1,000 of them inside the cluster CIDR, clear of the
// real node's 10.244.1.0/24) and sits at 10.201.<i/256>.<i mod 256>, a subnet the real node
// does not share: every one is a VXLAN peer (a route, a neighbour and an FDB entry).
import { vtepMacFor } from "../agent/gossip/record.ts";

export interface SimPeer {
  name: string;
  podCIDR: string;
  /** the network address of podCIDR: the route's next hop and the neighbour's address */
  gateway: string;
  underlay: string;
  vtepMac: string;
}

export const MAX_SIM_PEERS = 1000;

export function gossipPeer(i: number): SimPeer {
  if (!Number.isInteger(i) || i < 0 || i >= MAX_SIM_PEERS) throw new Error(`simulated peer ${i}: 0-${MAX_SIM_PEERS - 1}`);
  const name = `g${String(i).padStart(4, "0")}`;
  const gateway = `10.244.${4 + (i >> 2)}.${(i & 3) * 64}`;
  return { name, podCIDR: `${gateway}/26`, gateway, underlay: `10.201.${i >> 8}.${i & 255}`, vtepMac: vtepMacFor(name) };
}
