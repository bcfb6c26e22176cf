// The tables the compiler makes and the datapath consumes: frontends, targets with their
// Maglev rings, a service's share of them (its unit) and what one compile changed. Types and
// what derives from them alone; the compilers (reference/compile.ts, wasm.ts, incremental.ts)
// make them, agent/datapath reads them.
import type { Family } from "./address.ts";
import type { Protocol } from "./state.ts";
import { addressText, KEY_BYTES, keyPort } from "./keys.ts";

/** Ring slots, each the index of a backend (in key order): in the narrowest type that holds
 * the target's backend count (a byte per slot below 257 backends). */
export type Ring = Uint8Array | Uint16Array | Int32Array;

/** What identifies a target across compiles. */
export const targetKey = (t: Pick<Target, "service" | "family" | "scope">) => `${t.service}|${t.family}|${t.scope}`;

export type FrontendKind = "cluster" | "external" | "loadbalancer" | "nodeport";

export interface Frontend {
  family: Family;
  ip: string;
  protocol: Protocol;
  port: number;
  kind: FrontendKind;
  /** the target it dispatches to */
  target: number;
  /** source-NAT to the node: traffic from outside to a Cluster-policy NodePort, external or
   * load-balancer address, so that replies come back through this node */
  masquerade: boolean;
}

export interface Backend {
  ip: string;
  port: number;
}

/** One backend set of one service port, family and traffic scope, with its Maglev ring. */
export interface Target {
  id: number;
  /** namespace/name:port-name/protocol, for people */
  service: string;
  family: Family;
  scope: "internal" | "external";
  /** the backends, as their keys (compiler/keys.ts: address and port, KEY_BYTES each) in
   * key order: what the ring hashes and indexes, and what the datapath writes. Their text is
   * targetBackends' (an agent at 10k services would hold 100,000 backend objects besides) */
  keys: Uint8Array;
  /** 0 when there are no backends (the frontend rejects) */
  ringSize: number;
  ring: Ring;
  /** sessionAffinity ClientIP: hash the client address only */
  affinity: boolean;
}

export interface Tables {
  frontends: Frontend[];
  targets: Target[];
  /** frontends left out because another Service serves the same address, protocol and port
   * (the first by namespace/name keeps it, as the datapath can dispatch a key one way only) */
  conflicts: string[];
}

/** How many backends a target has. */
export const backendCount = (t: Pick<Target, "keys">) => t.keys.length / KEY_BYTES;

/** A target's backends as text, in key order (ring slots index this order). */
export function targetBackends(t: Pick<Target, "keys" | "family">): Backend[] {
  const out: Backend[] = [];
  for (let at = 0; at < t.keys.length; at += KEY_BYTES) out.push({ ip: addressText(t.keys, at, t.family), port: keyPort(t.keys, at) });
  return out;
}

/** What the datapath dispatches a frontend by. */
export const frontendKey = (f: Pick<Frontend, "ip" | "protocol" | "port">) => `${f.ip}|${f.protocol}|${f.port}`;

/** One service's share of the tables: its frontends (`target` indexes `targets`) and its
 * targets (id 0, ring empty) in a fixed order. A service's share depends on that service and
 * its own slices only, which is what lets a recompile touch just the changed service. */
export interface ServiceUnit {
  frontends: Frontend[];
  targets: Target[];
}

/** What one compile changed: for each recompiled service, its unit before and after (an
 * empty unit for a service that did not exist on that side). A service that was not
 * recompiled can change too, when a frontend key it shares with another service changes
 * hands (compiler/reference/compile.ts: the first by name owns it). */
export interface UnitChange {
  service: string;
  before: ServiceUnit;
  after: ServiceUnit;
}
