// What the policy of an adopted table holds, read back so that the restarted agent's first
// policy write changes only what changed while no agent ran.
//
// An nft transaction does not switch everything at one instant. Chains and hash maps (the
// pod address maps) switch with the generation; a set of concatenations with intervals (the
// allow sets: the kernel's pipapo backend) switches its lookup data only after the whole
// transaction has been walked. Until then, kernels since 6.17 (and 6.12.48) look up its old
// elements, and older ones skip those the transaction deletes and miss those it adds. In
// between, a packet's identities come from the new maps while the allow set answers as
// before. A replace that gives the identities other ids than the kernel holds (a cold
// compile numbers them in the order it meets them) thus judges new ids against old elements
// for that moment: allowed connections were dropped (docs/measurements.md), and a pair
// whose new ids an old element names would get through. So the restarted agent reads which
// id the kernel's pod addresses go to (the compile keeps them: compiler/policy/incremental.ts
// adoptIds) and the allow sets' elements (the replace writes only their difference, never a
// flush: policy-text.ts renderPolicyReplace).
import { addressFromBytes } from "../../compiler/address.ts";
import { NFT_GOTO, type DumpedElem } from "../sys/nftdump.ts";
import { setElements, type NftDumper } from "./adopt.ts";
import type { Marks } from "./marks.ts";
import { allowKeyExact, decodeAllowKey } from "./policy-counters.ts";
import { allowKey } from "./policy-text.ts";

export interface KernelPolicy {
  /** pod address (canonical text) → the identity its source map element goes to; a range's
   * first address → the same, from the range maps */
  ids: { pods: Map<string, number>; ranges: Map<string, number> };
  /** the allow sets whose every element was read, as allowKey spells them */
  allow: Map<string, Set<string>>;
}

const SOURCE_CHAIN = /^pols_(\d+)$/;
const ALLOW_SETS = ["pol_allow_in", "pol_allow_out"] as const;

/** The allow set's keys, or undefined when any element is not one skein writes (the set is then flushed). */
function allowKeys(elems: DumpedElem[], marks: Marks): Set<string> | undefined {
  const out = new Set<string>();
  for (const e of elems) {
    if (!allowKeyExact(e.key, marks) || (e.keyEnd && !allowKeyExact(e.keyEnd, marks))) return undefined;
    const k = decodeAllowKey(e.key, e.keyEnd, marks);
    if (!k) return undefined;
    out.add(allowKey({ ...k, policies: [] }, marks));
  }
  return out;
}

/** The kernel's policy from the elements of its sets (`elems`: a set's name → its elements). Pure. */
export function kernelPolicy(elems: (set: string) => DumpedElem[], marks: Marks): KernelPolicy {
  const ids = { pods: new Map<string, number>(), ranges: new Map<string, number>() };
  for (const [kind, out] of [["pod", ids.pods], ["range", ids.ranges]] as const) {
    for (const fam of [4, 6] as const) {
      // a range map holds each range as its first address, with the verdict, and an element
      // past its end without one
      for (const e of elems(`pol_s${kind}${fam}`)) {
        const m = e.verdict?.code === NFT_GOTO ? SOURCE_CHAIN.exec(e.verdict.chain ?? "") : null;
        if (!m || e.key.length !== (fam === 4 ? 4 : 16)) continue;
        out.set(addressFromBytes(e.key, 0, fam), Number(m[1]));
      }
    }
  }
  const allow = new Map<string, Set<string>>();
  for (const set of ALLOW_SETS) {
    const keys = allowKeys(elems(set), marks);
    if (keys) allow.set(set, keys);
  }
  return { ids, allow };
}

/** Reads the policy of `inet skein` through netlink dumps of the six sets it needs. */
export function readKernelPolicy(nl: NftDumper, marks: Marks): KernelPolicy {
  return kernelPolicy((set) => setElements(nl, set), marks);
}
