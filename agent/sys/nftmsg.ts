// Decodes nftables netlink messages as the kernel sends them: the change notifications of
// a committed transaction (nfevents.ts) and the ruleset generation (netlink.ts). Pure and
// bounded: every length is checked against the bytes at hand, unknown attributes and types
// are skipped, and a malformed message is reported as such, never thrown on: what arrives
// on a multicast group is whatever the kernel (or a future kernel) sends.

export const NFNL_SUBSYS_NFTABLES = 10;
/** the messages that open and close an nfnetlink batch (a transaction) */
export const NFNL_MSG_BATCH_BEGIN = 0x10;
export const NFNL_MSG_BATCH_END = 0x11;
export const NFT_MSG_NEWGEN = 15;
/** NFTA_SET_FLAGS bits */
export const NFT_SET_ANONYMOUS = 0x1;
export const NFT_SET_CONSTANT = 0x2;
export const NFT_SET_MAP = 0x8;

/** An object one transaction changed. */
export interface NftChange {
  op: "new" | "del";
  kind: "table" | "chain" | "rule" | "set" | "setelem" | "flowtable" | "obj" | "other";
  family: "inet" | "ip" | "ip6" | "arp" | "bridge" | "netdev" | string;
  table: string;
  /** the chain (of a chain or rule), set (of a set or element), object or flowtable */
  name?: string;
}

/** One committed transaction, as its notifications told it. */
export interface NftTransaction {
  /** NFTA_GEN_ID of the generation this transaction committed */
  genid: number;
  /** NFTA_GEN_PROC_PID: the committing thread, as the initial pid namespace numbers it
   * (process.pid for the main thread of a process not in a pid namespace of its own; compare
   * with Netlink.generation().pid, which the kernel numbers the same way) */
  pid: number;
  /** NFTA_GEN_PROC_NAME: the committing thread's name */
  proc: string;
  /** every object the transaction changed, in order (at most MAX_CHANGES) */
  changes: NftChange[];
  /** changes past MAX_CHANGES: counted, not listed */
  unlisted: number;
}

export interface NftGeneration {
  /** NFTA_GEN_ID */
  genid: number;
  /** NFTA_GEN_PROC_PID: the kernel's (initial pid namespace) id of the committing thread */
  pid: number;
  /** NFTA_GEN_PROC_NAME: that thread's name (comm, at most 15 characters) */
  proc: string;
}

const FAMILY: Record<number, string> = { 1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6" };

// message type -> what it changed, and which attribute names the object (the table is
// attribute 1 for every kind). DESTROY* (26..32) are notified as DEL* by the kernels seen,
// and taken as deletions should one arrive.
const KINDS: Record<number, [NftChange["op"], NftChange["kind"], number]> = {
  0: ["new", "table", 0],
  2: ["del", "table", 0],
  26: ["del", "table", 0],
  3: ["new", "chain", 3], // NFTA_CHAIN_NAME
  5: ["del", "chain", 3],
  27: ["del", "chain", 3],
  6: ["new", "rule", 2], // NFTA_RULE_CHAIN
  8: ["del", "rule", 2],
  28: ["del", "rule", 2],
  9: ["new", "set", 2], // NFTA_SET_NAME
  11: ["del", "set", 2],
  29: ["del", "set", 2],
  12: ["new", "setelem", 2], // NFTA_SET_ELEM_LIST_SET
  14: ["del", "setelem", 2],
  30: ["del", "setelem", 2],
  18: ["new", "obj", 2], // NFTA_OBJ_NAME
  20: ["del", "obj", 2],
  31: ["del", "obj", 2],
  22: ["new", "flowtable", 2], // NFTA_FLOWTABLE_NAME
  24: ["del", "flowtable", 2],
  32: ["del", "flowtable", 2],
};

/** Object names are at most NFT_NAME_MAXLEN (256) bytes with the NUL. */
const MAX_NAME = 256;
const dec = new TextDecoder();

/** A NUL-terminated string attribute, bounded. */
export function str(b: Uint8Array, from: number, to: number): string {
  const end = Math.min(to, from + MAX_NAME);
  let z = from;
  while (z < end && b[z] !== 0) z++;
  return dec.decode(b.subarray(from, z));
}

/**
 * Walks the attributes in b[from, to) and hands each one's type (without the nested and
 * byte-order flags) and payload bounds to `visit`; false when they do not tile the range.
 */
export function attrs(b: Uint8Array, from: number, to: number, visit: (type: number, at: number, end: number) => void): boolean {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let o = from;
  while (o + 4 <= to) {
    const len = dv.getUint16(o, true);
    if (len < 4 || o + len > to) return false;
    visit(dv.getUint16(o + 2, true) & 0x3fff, o + 4, o + len);
    o += (len + 3) & ~3;
  }
  return o >= to;
}

/** One nftables message as the kernel sent it; `at` is where its netlink header starts. */
export type Decoded = { gen: NftGeneration } | { change: NftChange } | { malformed: string } | { ignored: true };

/**
 * Decodes the nftables message at b[at, at+len) (len from its netlink header; at least
 * the 16 bytes of that header lie within b): a generation (NEWGEN), a change, something
 * else of nftables, or malformed.
 */
export function decodeNft(b: Uint8Array, at: number, len: number): Decoded {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const type = dv.getUint16(at + 4, true);
  if (type >> 8 !== NFNL_SUBSYS_NFTABLES) return { ignored: true };
  if (len < 20 || at + len > b.length) return { malformed: `nftables message type ${type & 0xff} of ${len} bytes` };
  const msg = type & 0xff;
  const family = FAMILY[b[at + 16]!] ?? String(b[at + 16]);
  const end = at + len;
  if (msg === NFT_MSG_NEWGEN) {
    let genid: number | undefined;
    let pid = 0;
    let proc = "";
    const ok = attrs(b, at + 20, end, (t, from, to) => {
      if (t === 1 && to - from === 4) genid = dv.getUint32(from, false);
      else if (t === 2 && to - from === 4) pid = dv.getUint32(from, false);
      else if (t === 3) proc = str(b, from, to);
    });
    if (!ok || genid === undefined) return { malformed: "a generation message without a well-formed NFTA_GEN_ID" };
    return { gen: { genid, pid, proc } };
  }
  const k = KINDS[msg];
  let table = "";
  let name: string | undefined;
  const ok = attrs(b, at + 20, end, (t, from, to) => {
    if (t === 1) table = str(b, from, to);
    else if (k && k[2] && t === k[2]) name = str(b, from, to);
  });
  if (!ok) return { malformed: `nftables message type ${msg}: attributes overrun the message` };
  const change: NftChange = { op: k?.[0] ?? "new", kind: k?.[1] ?? "other", family, table };
  if (name !== undefined) change.name = name;
  return { change };
}

/** changes listed per transaction; a flush of a huge map is counted past this, not listed */
export const MAX_CHANGES = 100_000;
const NLMSG_OVERRUN = 4;

/**
 * Assembles transactions from the datagrams of the NFNLGRP_NFTABLES group: changes are held
 * until their transaction's generation message, which closes it.
 */
export class TransactionAssembler {
  private pending: NftChange[] = [];
  private unlisted = 0;
  private done: NftTransaction[] = [];
  private lost = false;

  /** A transaction has changes but no generation message yet. */
  get open(): boolean {
    return this.pending.length > 0 || this.unlisted > 0;
  }

  /** One datagram's messages, b[0, n). */
  datagram(b: Uint8Array, n: number): void {
    const dv = new DataView(b.buffer, b.byteOffset, Math.min(n, b.byteLength));
    n = dv.byteLength;
    for (let off = 0; off < n; ) {
      const len = n - off >= 16 ? dv.getUint32(off, true) : 0;
      if (len < 16 || len > n - off) {
        this.gap(); // the rest of the datagram cannot be delimited
        return;
      }
      const type = dv.getUint16(off + 4, true);
      if (type === NLMSG_OVERRUN) this.gap();
      else if (type >= 16) this.add(decodeNft(b, off, len));
      off += (len + 3) & ~3;
    }
  }

  /** Notifications were lost here: the transaction being read may lack changes or its
   * generation message (its changes would be credited to the next one's committer), so it
   * is dropped. */
  gap(): void {
    this.lost = true;
    this.pending = [];
    this.unlisted = 0;
  }

  /** The transactions closed since the last take, and whether anything was lost meanwhile. */
  take(): { transactions: NftTransaction[]; lost: boolean } {
    const out = { transactions: this.done, lost: this.lost };
    this.done = [];
    this.lost = false;
    return out;
  }

  private add(d: Decoded): void {
    if ("gen" in d) {
      this.done.push({ ...d.gen, changes: this.pending, unlisted: this.unlisted });
      this.pending = [];
      this.unlisted = 0;
    } else if ("change" in d) {
      if (this.pending.length < MAX_CHANGES) this.pending.push(d.change);
      else this.unlisted++;
    } else if ("malformed" in d) {
      // the transaction's committer is still known: keep it, but say something went unread
      this.lost = true;
    }
  }
}
