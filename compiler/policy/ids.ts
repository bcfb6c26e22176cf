// Step 4 of the policy compile (reference.ts says why each rule): ids for identity keys, the
// same for the reference and for compiler.wasm's host, which both give ids in TypeScript.
import { FIRST_ID } from "./types.ts";

export interface IdEntry {
  id: number;
  /** some pod of this node holds an address of it */
  local: boolean;
}

/**
 * Gives each entry its id: the one `previous` had for its key when free, else the lowest free
 * one, this node's entries before the others; then each local entry past `maxIdentity` swaps
 * ids with the remote entry last in key order among those within it. `sorted` is in key order.
 * Returns the identity-limit problem, or undefined when every entry fits.
 */
export function assignIds(sorted: Array<[key: string, entry: IdEntry]>, previous: ReadonlyMap<string, number>, maxIdentity: number): string | undefined {
  const taken = new Set<number>();
  const fresh: IdEntry[] = [];
  for (const [key, e] of sorted) {
    const id = previous.get(key);
    if (id !== undefined && Number.isInteger(id) && id >= FIRST_ID && !taken.has(id)) {
      e.id = id;
      taken.add(id);
    } else fresh.push(e);
  }
  fresh.sort((a, b) => Number(!a.local) - Number(!b.local));
  let next = FIRST_ID;
  for (const e of fresh) {
    while (taken.has(next)) next++;
    e.id = next;
    taken.add(next);
  }
  const entries = sorted.map(([, e]) => e);
  const over = entries.filter((e) => e.local && e.id > maxIdentity);
  const donors = entries.filter((e) => !e.local && e.id <= maxIdentity).reverse();
  for (const e of over) {
    const d = donors.shift();
    if (!d) break;
    [d.id, e.id] = [e.id, d.id];
  }
  if (entries.every((e) => e.id <= maxIdentity)) return undefined;
  return `identity limit: ${entries.length} identities needed, the mark bits hold ${Math.max(0, maxIdentity - FIRST_ID + 1)}; this node's pods past it are blocked, other addresses judged by their ipBlocks alone`;
}
