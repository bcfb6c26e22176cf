// Encodes nftables netlink batches for the Maglev rings: ring chains with their one rule, and
// the elements of the ring maps. Pure: bytes out, sent by agent/sys/netlink.ts.
//
// Why not nft text: nft parses and evaluates map elements an order of magnitude slower than
// the kernel takes them over netlink into a fixed-size hash, and holds kilobytes of its own
// memory per element meanwhile (docs/measurements.md: a cold load of a million ring slots).
// And nft 1.0.6 cannot add a rule that looks up a map declared with `typeof … th dport` in a
// later transaction ("conflicting protocols tcp vs. th"), so ring chains made here are what
// lets a delta add one.
//
// The ring rule is exactly what nft makes of the text nft-text.ts prints for it,
//   meta l4proto { tcp, udp, sctp } dnat ip to meta mark & RANGE . jhash ip saddr . th sport mod M seed 0x0 map @be4_0
// (RANGE: skein's bits of the packet mark, marks.ts), its anonymous protocol set included, so
// that `skein tables --nft` prints what the agent loads and the kernel lists the same either
// way (test/nft-text.e2e.test.ts). The guard decides nothing (the rule is reached only from the
// service verdict map, whose key holds the protocol), but nft refuses a transport mapping
// without it, so text without it could not be loaded.

import { KEY_BYTES, writeBackendKey } from "../../compiler/keys.ts";
import { AttrWriter, HOST_LE, NLA_F_NESTED } from "../sys/nlattr.ts";
import { NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END, NFNL_SUBSYS_NFTABLES, NFT_SET_ANONYMOUS, NFT_SET_CONSTANT } from "../sys/nftmsg.ts";
import type { RingRule } from "./model.ts";
import { slotCount, type RingOps, type SlotOp } from "./ring-ops.ts";

const NFT_MSG_NEWCHAIN = 3;
const NFT_MSG_DELCHAIN = 5;
const NFT_MSG_NEWRULE = 6;
const NFT_MSG_DELRULE = 8;
const NFT_MSG_NEWSET = 9;
const NFT_MSG_DELSET = 11;
const NFT_MSG_NEWSETELEM = 12;
const NFT_MSG_DELSETELEM = 14;
const NFPROTO_INET = 1;
/** NFT_GOTO, as the kernel's verdict code (-4) in 32 bits */
const NFT_GOTO = 0xfffffffc;
const NFPROTO_IPV4 = 2;
const NFPROTO_IPV6 = 10;

const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_CREATE = 0x400;
const NLM_F_APPEND = 0x800;

// registers: NFT_REG_1 is 128 bits wide and overlaps NFT_REG32_00..03
const REG_1 = 1;
const REG_2 = 2;
const REG32 = (n: number) => 8 + n;

// the guard's set, as nft declares `meta l4proto { tcp, udp, sctp }`
const TYPE_INET_PROTOCOL = 12; // nft's datatype of inet_proto
const GUARD_PROTOCOLS = [6, 17, 132]; // tcp, udp, sctp
/** The set's user data as nft writes it (libnftnl's TLVs): key byte order "host", key typeof
 * `meta l4proto` (expression type 9, meta; meta key 16, l4proto). */
const GUARD_USERDATA = (() => {
  const b = new Uint8Array(22);
  const dv = new DataView(b.buffer);
  b.set([0, 4], 0); // NFTNL_UDATA_SET_KEYBYTEORDER
  dv.setUint32(2, 1, HOST_LE); // BYTEORDER_HOST_ENDIAN
  b.set([3, 14], 6); // NFTNL_UDATA_SET_KEY_TYPEOF, nesting:
  b.set([0, 4], 8); // NFTNL_UDATA_SET_TYPEOF_EXPR
  dv.setUint32(10, 9, HOST_LE);
  b.set([1, 6, 0, 4], 14); // NFTNL_UDATA_SET_TYPEOF_DATA, nesting the meta key
  dv.setUint32(18, 16, HOST_LE);
  return b;
})();

/** Largest attribute payload: a nested attribute's length is 16 bits. */
const MAX_NEST = 60_000;

export interface Batch {
  /** the messages, numbered from the builder's first sequence number; the sender
   * (agent/sys/netlink.ts sendBatch) renumbers them in place from its socket's sequence */
  bytes: Uint8Array;
  /** what each message does (for errors), by the number the builder gave it */
  what: Map<number, string>;
  messages: number;
}

/** A register value (host byte order, as the mark is held), as nested NFTA_DATA_VALUE. */
function host32(w: AttrWriter, type: number, n: number): void {
  w.nest(type | NLA_F_NESTED, () => {
    const at = w.begin(1); // NFTA_DATA_VALUE
    w.ensure(4);
    w.dv.setUint32(w.o, n >>> 0, HOST_LE);
    w.o += 4;
    w.end(at);
  });
}

/** A buffer batches are built in, handed from one batch to the next (the buffer a batch grew
 * to is the next one's start): a fill of a million ring slots in batches then allocates it
 * once rather than growing a new one, by doubling, for every batch. */
export interface BatchBuffer {
  buf: Uint8Array<ArrayBuffer>;
}

/** Builds one batch: messages between BATCH_BEGIN and BATCH_END, applied atomically. */
export class BatchBuilder {
  private readonly w: AttrWriter;
  private seq: number;
  private readonly what = new Map<number, string>();
  private lastMsg = -1;
  private count = 0;
  /** the last NFTA_SET_ID given: how a rule names a set made in the same batch */
  private setIds = 0;

  constructor(
    private readonly table: string,
    /** the number the builder starts from: `what` is keyed by these; the socket that sends
     * the batch numbers its messages anew from its own sequence */
    firstSeq = 1,
    private readonly reuse?: BatchBuffer,
  ) {
    this.w = new AttrWriter(reuse?.buf);
    this.seq = firstSeq;
    this.control(NFNL_MSG_BATCH_BEGIN);
  }

  private header(type: number, flags: number, family: number): number {
    const w = this.w;
    w.ensure(20);
    const at = w.o;
    w.dv.setUint16(at + 4, type, true);
    w.dv.setUint16(at + 6, flags | NLM_F_REQUEST, true);
    w.dv.setUint32(at + 8, this.seq, true);
    w.dv.setUint32(at + 12, 0, true);
    w.buf[at + 16] = family;
    w.buf[at + 17] = 0;
    w.dv.setUint16(at + 18, type === NFNL_MSG_BATCH_BEGIN || type === NFNL_MSG_BATCH_END ? NFNL_SUBSYS_NFTABLES : 0, false);
    w.o += 20;
    return at;
  }

  private finish(at: number, what?: string): void {
    this.w.dv.setUint32(at, this.w.o - at, true);
    if (what !== undefined) {
      this.what.set(this.seq, what);
      this.lastMsg = at;
      this.count++;
    }
    this.seq++;
  }

  private control(type: number): void {
    this.finish(this.header(type, 0, 0));
  }

  private msg(type: number, flags: number): number {
    return this.header((NFNL_SUBSYS_NFTABLES << 8) | type, flags, NFPROTO_INET);
  }

  addChain(name: string): void {
    const at = this.msg(NFT_MSG_NEWCHAIN, NLM_F_CREATE);
    this.w.str(1, this.table); // NFTA_CHAIN_TABLE
    this.w.str(3, name); // NFTA_CHAIN_NAME
    this.finish(at, `add chain ${name}`);
  }

  /** Removes a chain and its rules. */
  deleteChain(name: string): void {
    let at = this.msg(NFT_MSG_DELRULE, 0);
    this.w.str(1, this.table); // NFTA_RULE_TABLE
    this.w.str(2, name); // NFTA_RULE_CHAIN
    this.finish(at, `flush chain ${name}`);
    at = this.msg(NFT_MSG_DELCHAIN, 0);
    this.w.str(1, this.table);
    this.w.str(3, name);
    this.finish(at, `delete chain ${name}`);
  }

  deleteSet(name: string): void {
    const at = this.msg(NFT_MSG_DELSET, 0);
    this.w.str(1, this.table); // NFTA_SET_TABLE
    this.w.str(2, name); // NFTA_SET_NAME
    this.finish(at, `delete map ${name}`);
  }

  /** The anonymous set `{ tcp, udp, sctp }` of a ring rule's guard, as nft makes it; the
   * kernel names it (`__set<n>`) and removes it with the rule. Returns its id in the batch. */
  private guardSet(chain: string): number {
    const w = this.w;
    const id = ++this.setIds;
    let at = this.msg(NFT_MSG_NEWSET, NLM_F_CREATE);
    w.str(1, this.table); // NFTA_SET_TABLE
    w.str(2, "__set%d"); // NFTA_SET_NAME
    w.be32(3, NFT_SET_ANONYMOUS | NFT_SET_CONSTANT); // NFTA_SET_FLAGS
    w.be32(4, TYPE_INET_PROTOCOL); // NFTA_SET_KEY_TYPE
    w.be32(5, 1); // NFTA_SET_KEY_LEN
    w.be32(10, id); // NFTA_SET_ID
    w.nest(9 | NLA_F_NESTED, () => w.be32(1, GUARD_PROTOCOLS.length)); // NFTA_SET_DESC: SIZE
    w.bytes(13, GUARD_USERDATA); // NFTA_SET_USERDATA
    this.finish(at, `add the protocol set of ${chain}`);
    at = this.msg(NFT_MSG_NEWSETELEM, NLM_F_CREATE);
    w.str(1, this.table); // NFTA_SET_ELEM_LIST_TABLE
    w.str(2, "__set%d"); // NFTA_SET_ELEM_LIST_SET
    w.be32(4, id); // NFTA_SET_ELEM_LIST_SET_ID
    w.nest(3 | NLA_F_NESTED, () => {
      // NFTA_SET_ELEM_LIST_ELEMENTS: each a NFTA_LIST_ELEM holding NFTA_SET_ELEM_KEY
      for (const p of GUARD_PROTOCOLS) w.nest(1 | NLA_F_NESTED, () => w.nest(1 | NLA_F_NESTED, () => w.bytes(1, Uint8Array.of(p))));
    });
    this.finish(at, `add the protocols of ${chain}`);
    return id;
  }

  /** A ring chain's rule (nft-text.ts prints it), with the set its guard looks up. */
  addRingRule(chain: string, r: RingRule): void {
    const w = this.w;
    const guard = this.guardSet(chain);
    const at = this.msg(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
    w.str(1, this.table); // NFTA_RULE_TABLE
    w.str(2, chain); // NFTA_RULE_CHAIN
    const exprs = w.begin(4 | NLA_F_NESTED); // NFTA_RULE_EXPRESSIONS
    const expr = (name: string, body: () => void) => {
      const e = w.begin(1 | NLA_F_NESTED); // NFTA_LIST_ELEM
      w.str(1, name); // NFTA_EXPR_NAME
      const d = w.begin(2 | NLA_F_NESTED); // NFTA_EXPR_DATA
      body();
      w.end(d);
      w.end(e);
    };
    const v6 = r.family === 6;
    const addrLen = v6 ? 16 : 4;
    // meta l4proto { tcp, udp, sctp }
    expr("meta", () => (w.be32(2, 16), w.be32(1, REG_1))); // NFTA_META_KEY l4proto, DREG
    expr("lookup", () => (w.be32(2, REG_1), w.str(1, "__set%d"), w.be32(4, guard))); // SREG, SET, SET_ID
    // meta nfproto == ipv4/ipv6 (the table is inet)
    expr("meta", () => (w.be32(2, 15), w.be32(1, REG_1))); // NFTA_META_KEY nfproto, DREG
    expr("cmp", () => {
      w.be32(1, REG_1); // NFTA_CMP_SREG
      w.be32(2, 0); // NFTA_CMP_OP eq
      const d = w.begin(3 | NLA_F_NESTED); // NFTA_CMP_DATA
      w.bytes(1, Uint8Array.of(v6 ? NFPROTO_IPV6 : NFPROTO_IPV4)); // NFTA_DATA_VALUE
      w.end(d);
    });
    // key: mark & range (reg32 0) . jhash(client) mod M (reg32 1); client read into reg32 6..
    expr("meta", () => (w.be32(2, 3), w.be32(1, REG_1))); // mark
    expr("bitwise", () => {
      w.be32(1, REG_1); // NFTA_BITWISE_SREG
      w.be32(2, REG_1); // NFTA_BITWISE_DREG
      w.be32(3, 4); // NFTA_BITWISE_LEN
      host32(w, 4, r.mark); // NFTA_BITWISE_MASK
      host32(w, 5, 0); // NFTA_BITWISE_XOR
    });
    const payload = (base: number, offset: number, len: number, dreg: number) =>
      expr("payload", () => (w.be32(1, dreg), w.be32(2, base), w.be32(3, offset), w.be32(4, len)));
    payload(1, v6 ? 8 : 12, addrLen, REG32(6)); // network header: saddr
    let hashLen = addrLen;
    if (!r.affinity) {
      payload(2, 0, 2, REG32(6 + addrLen / 4)); // transport header: sport
      hashLen += 4;
    }
    expr("hash", () => {
      w.be32(1, REG32(6)); // NFTA_HASH_SREG
      w.be32(2, REG32(1)); // NFTA_HASH_DREG
      w.be32(3, hashLen); // NFTA_HASH_LEN
      w.be32(4, r.ringSize); // NFTA_HASH_MODULUS
      w.be32(5, 0); // NFTA_HASH_SEED
      w.be32(7, 0); // NFTA_HASH_TYPE jenkins
    });
    // value: address (reg 1 from reg32 0) . port (the 32-bit register after the address)
    expr("lookup", () => (w.be32(2, REG_1), w.str(1, r.map), w.be32(3, REG_1))); // SREG, SET, DREG
    expr("nat", () => {
      w.be32(1, 1); // NFTA_NAT_TYPE dnat
      w.be32(2, v6 ? NFPROTO_IPV6 : NFPROTO_IPV4); // NFTA_NAT_FAMILY
      w.be32(3, REG_1); // NFTA_NAT_REG_ADDR_MIN
      w.be32(5, v6 ? REG_2 : REG32(1)); // NFTA_NAT_REG_PROTO_MIN
    });
    w.end(exprs);
    this.finish(at, `add rule to ${chain}`);
  }

  /**
   * Adds (data given) or deletes (data undefined) elements of a map: `keys` holds `keyLen`
   * bytes per element, `data` `dataLen` bytes per element, in the same order.
   */
  elements(verb: "add" | "delete", set: string, keys: Uint8Array, keyLen: number, data?: Uint8Array, dataLen = 0): void {
    if (keyLen % 4 || dataLen % 4) throw new Error(`set ${set}: key and value lengths must be multiples of 4 (got ${keyLen}, ${dataLen})`);
    const n = keys.length / keyLen;
    const per = 4 + (8 + keyLen) + (data ? 8 + dataLen : 0);
    const chunk = Math.max(1, Math.floor(MAX_NEST / per));
    const w = this.w;
    for (let i = 0; i < n; i += chunk) {
      const end = Math.min(n, i + chunk);
      const at = this.msg(verb === "add" ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM, verb === "add" ? NLM_F_CREATE : 0);
      w.str(1, this.table); // NFTA_SET_ELEM_LIST_TABLE
      w.str(2, set); // NFTA_SET_ELEM_LIST_SET
      const list = w.begin(3 | NLA_F_NESTED); // NFTA_SET_ELEM_LIST_ELEMENTS
      w.ensure((end - i) * per);
      // written by hand, not through begin/end: a million of these per cold load (key and
      // value lengths are multiples of 4, so nothing needs padding)
      const { buf, dv } = w;
      let o = w.o;
      for (let j = i; j < end; j++) {
        dv.setUint16(o, per, true);
        dv.setUint16(o + 2, 1 | NLA_F_NESTED, true); // NFTA_LIST_ELEM
        dv.setUint16(o + 4, 8 + keyLen, true);
        dv.setUint16(o + 6, 1 | NLA_F_NESTED, true); // NFTA_SET_ELEM_KEY
        dv.setUint16(o + 8, 4 + keyLen, true);
        dv.setUint16(o + 10, 1, true); // NFTA_DATA_VALUE
        o += 12;
        for (let b = 0, k = j * keyLen; b < keyLen; b++) buf[o + b] = keys[k + b]!;
        o += keyLen;
        if (data) {
          dv.setUint16(o, 8 + dataLen, true);
          dv.setUint16(o + 2, 2 | NLA_F_NESTED, true); // NFTA_SET_ELEM_DATA
          dv.setUint16(o + 4, 4 + dataLen, true);
          dv.setUint16(o + 6, 1, true); // NFTA_DATA_VALUE
          o += 8;
          for (let b = 0, k = j * dataLen; b < dataLen; b++) buf[o + b] = data[k + b]!;
          o += dataLen;
        }
      }
      w.o = o;
      w.end(list);
      this.finish(at, `${verb} ${end - i} elements of ${set}`);
    }
  }

  /**
   * Adds or deletes elements of a verdict map keyed by address: each `goto` its chain (on
   * add). What a pod moving between identities changes (policy-text.ts pol_spod/pol_dpod),
   * sent without nft, whose cache of a table at scale costs more than the change.
   */
  verdictElements(verb: "add" | "delete", set: string, items: Array<{ key: Uint8Array; chain: string }>): void {
    if (!items.length) return;
    const w = this.w;
    const at = this.msg(verb === "add" ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM, verb === "add" ? NLM_F_CREATE : 0);
    w.str(1, this.table); // NFTA_SET_ELEM_LIST_TABLE
    w.str(2, set); // NFTA_SET_ELEM_LIST_SET
    w.nest(3 | NLA_F_NESTED, () => {
      for (const it of items) {
        w.nest(1 | NLA_F_NESTED, () => {
          // NFTA_LIST_ELEM: NFTA_SET_ELEM_KEY { NFTA_DATA_VALUE }
          w.nest(1 | NLA_F_NESTED, () => w.bytes(1, it.key));
          if (verb === "add") {
            // NFTA_SET_ELEM_DATA { NFTA_DATA_VERDICT { NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN } }
            w.nest(2 | NLA_F_NESTED, () =>
              w.nest(2 | NLA_F_NESTED, () => {
                w.be32(1, NFT_GOTO);
                w.str(2, it.chain);
              }),
            );
          }
        });
      }
    });
    this.finish(at, `${verb} ${items.length} elements of ${set}`);
  }

  get messages(): number {
    return this.count;
  }

  /** Closes the batch; the last real message asks for the ack that ends it. */
  build(): Batch {
    if (this.lastMsg >= 0) {
      const f = this.w.dv.getUint16(this.lastMsg + 6, true);
      this.w.dv.setUint16(this.lastMsg + 6, f | NLM_F_ACK, true);
    }
    this.control(NFNL_MSG_BATCH_END);
    if (this.reuse) this.reuse.buf = this.w.buf;
    return { bytes: this.w.buf.subarray(0, this.w.o), what: this.what, messages: this.count };
  }
}

// Ring map keys are two host-order u32 registers (mark . hash); values are the address in
// network order and the port in network order, padded to a register.
const KEY_LEN = 8;
const dataLen = (family: 4 | 6) => (family === 4 ? 8 : 20);

function keysOf(ops: SlotOp[]): Uint8Array {
  const k = new Uint8Array(slotCount(ops) * KEY_LEN);
  const dv = new DataView(k.buffer);
  let o = 0;
  for (const op of ops) {
    for (let s = op.from; s < op.to; s++, o += KEY_LEN) {
      dv.setUint32(o, op.mark, HOST_LE);
      dv.setUint32(o + 4, s, HOST_LE);
    }
  }
  return k;
}

/** Ring operations (ring-ops.ts) into a batch: chains, removals, writes, hairpins, chain removals. */
export function encodeRingOps(b: BatchBuilder, ops: RingOps): void {
  for (const [name, rule] of ops.addChains) {
    b.addChain(name);
    b.addRingRule(name, rule);
  }
  for (const [set, list] of ops.del) b.elements("delete", set, keysOf(list), KEY_LEN);
  for (const [set, list] of ops.add) {
    const family = list[0]!.r!.family;
    const len = dataLen(family);
    const data = new Uint8Array(slotCount(list) * len);
    // the value straight from the backend's key (compiler/keys.ts: 16 bytes of address, IPv4
    // mapped into its last 4, then the port): address, port, two bytes of register padding
    const from = family === 4 ? 12 : 0;
    const addrLen = len - 4;
    let o = 0;
    for (const op of list) {
      const ring = op.r!.ring;
      const keys = op.r!.keys;
      for (let s = op.from; s < op.to; s++, o += len) {
        const k = ring[s]! * KEY_BYTES;
        for (let b = 0; b < addrLen; b++) data[o + b] = keys[k + from + b]!;
        data[o + addrLen] = keys[k + 16]!;
        data[o + addrLen + 1] = keys[k + 17]!;
      }
    }
    b.elements("add", set, keysOf(list), KEY_LEN, data, len);
  }
  for (const fam of [4, 6] as const) {
    if (ops.hairpinDel[fam].length) b.elements("delete", `hairpin${fam}`, hairpinKeys(fam, ops.hairpinDel[fam]), hairpinLen(fam));
    if (ops.hairpinAdd[fam].length) b.elements("add", `hairpin${fam}`, hairpinKeys(fam, ops.hairpinAdd[fam]), hairpinLen(fam));
  }
  for (const name of ops.delChains) b.deleteChain(name);
}

// hairpin keys are `addr . addr`, each field the address in network order
const hairpinLen = (family: 4 | 6) => (family === 4 ? 8 : 32);

function hairpinKeys(family: 4 | 6, ips: string[]): Uint8Array {
  const len = hairpinLen(family);
  const half = len / 2;
  const from = family === 4 ? 12 : 0; // where the address sits in a backend key
  const scratch = new Uint8Array(KEY_BYTES);
  const out = new Uint8Array(ips.length * len);
  for (let i = 0; i < ips.length; i++) {
    writeBackendKey(scratch, 0, ips[i]!, 0);
    const addr = scratch.subarray(from, from + half);
    out.set(addr, i * len);
    out.set(addr, i * len + half);
  }
  return out;
}
