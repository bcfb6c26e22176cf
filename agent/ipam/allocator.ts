// Pure address allocation over an IpamState. No I/O: the stores (memory, disk) wrap these
// functions in a locked read-modify-write.
import { bigintToIp, parseIp, poolContains, poolSize, type Pool } from "./cidr.ts";

export interface Owner {
  containerId: string;
  ifname: string;
}

export interface Allocation extends Owner {
  ip: string;
  /** the pool CIDR it came from */
  pool: string;
  /** allocation time, ms since the epoch: for operators reading the state */
  at: number;
}

export interface IpamState {
  /** keyed by the address in its canonical text form */
  allocations: Record<string, Allocation>;
  /** the last address handed out per pool: allocation goes round-robin from there, so a
   * released address is reused last and stale conntrack entries age out first */
  cursors: Record<string, string>;
}

export class RangeExhaustedError extends Error {
  constructor(readonly pool: string, readonly used: number) {
    super(`no free address in pod CIDR ${pool}: all ${used} assignable addresses are in use`);
    this.name = "RangeExhaustedError";
  }
}

export const emptyState = (): IpamState => ({ allocations: {}, cursors: {} });

const sameOwner = (a: Owner, b: Owner) => a.containerId === b.containerId && a.ifname === b.ifname;

export function allocationsOf(state: IpamState, owner: Owner): Allocation[] {
  return Object.values(state.allocations).filter((a) => sameOwner(a, owner));
}

/**
 * One address per pool for `owner`. Idempotent: an owner that already holds an address in a
 * pool keeps it (a runtime may retry ADD). All-or-nothing: if one pool is full, no pool's
 * allocation is kept.
 */
export function allocate(state: IpamState, pools: Pool[], owner: Owner, now: number): { state: IpamState; allocations: Allocation[] } {
  const next: IpamState = { allocations: { ...state.allocations }, cursors: { ...state.cursors } };
  const held = allocationsOf(state, owner);
  const result: Allocation[] = [];
  for (const pool of pools) {
    const mine = held.find((a) => a.pool === pool.cidr);
    if (mine) {
      result.push(mine);
      continue;
    }
    const ip = findFree(next, pool);
    const a: Allocation = { ...owner, ip, pool: pool.cidr, at: now };
    next.allocations[ip] = a;
    next.cursors[pool.cidr] = ip;
    result.push(a);
  }
  return { state: next, allocations: result };
}

/** How many allocations hold an address of `pool`, whatever pool text they were made under. */
export function countInPool(state: IpamState, pool: Pool): number {
  let n = 0;
  for (const a of Object.values(state.allocations)) {
    if (a.pool === pool.cidr) n++;
    else {
      const v = parseIp(a.ip);
      if (v.family === pool.family && poolContains(pool, v.value)) n++;
    }
  }
  return n;
}

function findFree(state: IpamState, pool: Pool): string {
  const size = poolSize(pool);
  const cursorIp = state.cursors[pool.cidr];
  let start = pool.first;
  if (cursorIp !== undefined) {
    const c = parseIp(cursorIp);
    if (c.family === pool.family && poolContains(pool, c.value)) start = c.value + 1n;
  }
  // Scanning stops after every allocation in the pool was passed once, so a sparse IPv6 /64
  // costs as little as a full /24.
  // Counted by address, not by the pool text recorded: after the pod CIDR grew (or changed),
  // addresses handed out under the old text occupy the new pool too.
  const inPool = countInPool(state, pool);
  const limit = BigInt(inPool) + 1n < size ? BigInt(inPool) + 1n : size;
  let v = start;
  for (let i = 0n; i < limit; i++) {
    if (v > pool.last) v = pool.first;
    const ip = bigintToIp(v, pool.family);
    if (!(ip in state.allocations)) return ip;
    v++;
  }
  throw new RangeExhaustedError(pool.cidr, inPool);
}

export function release(state: IpamState, owner: Owner): { state: IpamState; released: Allocation[] } {
  return releaseWhere(state, (a) => sameOwner(a, owner));
}

/** CNI GC: drop every allocation whose owner is not among the valid attachments. */
export function releaseAllBut(state: IpamState, valid: Owner[]): { state: IpamState; released: Allocation[] } {
  const keep = new Set(valid.map((o) => `${o.containerId}\u0000${o.ifname}`));
  return releaseWhere(state, (a) => !keep.has(`${a.containerId}\u0000${a.ifname}`));
}

function releaseWhere(state: IpamState, drop: (a: Allocation) => boolean) {
  const allocations: Record<string, Allocation> = {};
  const released: Allocation[] = [];
  for (const [ip, a] of Object.entries(state.allocations)) {
    if (drop(a)) released.push(a);
    else allocations[ip] = a;
  }
  return { state: { allocations, cursors: { ...state.cursors } }, released };
}
