// Step 4 of the policy compile (reference.ts says why each rule): ids for identity keys, the
// same for the reference and for compiler.wasm's host, which both give ids in TypeScript.
import { FIRST_ID } from "./types.ts";

export interface IdEntry {
  id: number;
  /** some pod of this node holds an address of it */
  local: boolean;
}

/**
 * Gives each entry its id: the one `previous` had for its key when free, else the lowest id
 * free and not in `previous` at all (this node's entries before the others), else, past
 * `maxIdentity`, the lowest free one; then each local entry past `maxIdentity` swaps ids with
 * the remote entry last in key order among those within it. `sorted` is in key order.
 * Returns the identity-limit problem, or undefined when every entry fits.
 *
 * An id `previous` held for a key that is gone is not given to a new key in the same compile:
 * the tables go into the kernel in a transaction whose allow sets answer with their old
 * elements for a moment after the address maps have switched (agent/datapath/policy-adopt.ts),
 * and the old elements of a reused id would judge the new key's addresses meanwhile.
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
  const held = new Set(previous.values());
  let next = FIRST_ID;
  let reuse = FIRST_ID;
  for (const e of fresh) {
    while (taken.has(next) || held.has(next)) next++;
    let id = next;
    if (id > maxIdentity) {
      while (taken.has(reuse)) reuse++;
      id = Math.min(reuse, id);
    }
    e.id = id;
    taken.add(id);
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
