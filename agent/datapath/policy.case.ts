// Hand-made PolicyTables for the policy datapath's tests (the compiler that makes them is
// tested on its own): one node's pods a, b, c, d (dual-stack), an ipBlock range and the
// node's pod CIDR blocked for unknown addresses. What each identity may do:
//   3 a   egress isolated (ns/a-out): to b TCP 80, to c any protocol, to the range TCP 80
//   4 b   ingress isolated (ns/b-in): from a TCP 80, from the range any protocol
//   5 c   ingress isolated (ns/c-in): from a TCP 8000-8100, from b UDP, through a Service
//   6     192.0.2.0/24 and 2001:db8:2::/64 (an ipBlock)
//   7 d   egress isolated (ns/d-out, a rule without peers): TCP 80 to WORLD and to every
//         identity in use
//   2     BLOCKED: the rest of the pod CIDR (10.244.0.0/24, fd00:244::/112)
// `moved`: d's labels became b's: its addresses are in identity 4 and 7 is gone.
import { BLOCKED, VIA_SERVICE, WORLD, type AllowElement, type Identity, type PolicyTables } from "../../compiler/policy/types.ts";

export const POD = {
  a: ["10.244.0.2", "fd00:244::2"],
  b: ["10.244.0.3", "fd00:244::3"],
  c: ["10.244.0.4", "fd00:244::4"],
  d: ["10.244.0.5", "fd00:244::5"],
} as const;

const allow = (src: number | [number, number], dst: number | [number, number], proto: number | [number, number], port: number | [number, number], policies: string[]): AllowElement => {
  const r = (x: number | [number, number]) => (typeof x === "number" ? [x, x] : x);
  const [s, sl] = r(src);
  const [d, dl] = r(dst);
  const [p, pl] = r(proto);
  const [o, ol] = r(port);
  return { src: s!, srcLast: sl!, dst: d!, dstLast: dl!, proto: p!, protoLast: pl!, port: o!, portLast: ol!, policies };
};

const ident = (id: number, name: string, o: Partial<Identity> = {}): Identity => ({ id, key: name, name, local: true, ingressBy: [], egressBy: [], ...o });

export function policyTables(moved = false): PolicyTables {
  const dId = moved ? 4 : 7;
  const identities = [
    ident(3, "pod ns app=a", { egressBy: ["ns/a-out"] }),
    ident(4, "pod ns app=b", { ingressBy: ["ns/b-in"] }),
    ident(5, "pod ns app=c", { ingressBy: ["ns/c-in"] }),
    ident(6, "cidr 192.0.2.0/24", { local: false }),
    ...(moved ? [] : [ident(7, "pod ns app=d", { egressBy: ["ns/d-out"] })]),
  ];
  const pods = ([4, 6] as const).flatMap((family) =>
    (Object.entries(POD) as Array<[keyof typeof POD, readonly [string, string]]>).map(([name, ips]) => ({ family, ip: ips[family === 4 ? 0 : 1], id: name === "d" ? dId : { a: 3, b: 4, c: 5 }[name] })),
  );
  const last = moved ? 6 : 7;
  return {
    identities,
    pods,
    ranges: [
      { family: 4, first: "10.244.0.0", last: "10.244.0.255", id: BLOCKED },
      { family: 4, first: "192.0.2.0", last: "192.0.2.255", id: 6 },
      { family: 6, first: "2001:db8:2::", last: "2001:db8:2::ffff:ffff:ffff:ffff", id: 6 },
      { family: 6, first: "fd00:244::", last: "fd00:244::ffff", id: BLOCKED },
    ],
    isolatedIngress: [BLOCKED, 4, 5],
    isolatedEgress: moved ? [BLOCKED, 3] : [BLOCKED, 3, 7],
    allowIngress: [
      allow(VIA_SERVICE, 5, [0, 255], [0, 65535], ["ns/c-in"]),
      allow(3, 4, 6, 80, ["ns/b-in"]),
      allow(3, 5, 6, [8000, 8100], ["ns/c-in"]),
      allow(4, 5, 17, [0, 65535], ["ns/c-in"]),
      allow(6, 4, [0, 255], [0, 65535], ["ns/b-in"]),
    ],
    allowEgress: [
      allow(3, 4, 6, 80, ["ns/a-out"]),
      allow(3, 5, [0, 255], [0, 65535], ["ns/a-out"]),
      allow(3, 6, 6, 80, ["ns/a-out"]),
      ...(moved ? [] : [allow(7, WORLD, 6, 80, ["ns/d-out"]), allow(7, [3, last], 6, 80, ["ns/d-out"])]),
    ],
    localAddresses: ([0, 1] as const).flatMap((i) => Object.values(POD).map((ips) => ips[i])),
    generated: [],
    problems: [],
  };
}

/** `t` after a's IPv4 address moved to a new identity 8, which may reach b (TCP 80) and be
 * reached from c (UDP 53) and, as part of a range 7..8, from the ipBlock (UDP 53); d may now
 * reach c on TCP 443 too (an element between identities in use). */
export function withNewIdentity(t: PolicyTables): PolicyTables {
  return {
    ...t,
    pods: t.pods.map((p) => (p.ip === POD.a[0] ? { ...p, id: 8 } : p)),
    allowEgress: [...t.allowEgress, allow(8, 4, 6, 80, ["ns/a-out"]), allow(7, 5, 6, 443, ["ns/d-out"])],
    allowIngress: [...t.allowIngress, allow(6, [7, 8], 17, 53, ["ns/x"]), allow(5, 8, 17, 53, ["ns/x"])],
  };
}

/** A key of pol_allow_* as the kernel holds it (nft --debug=netlink shows the same words):
 * marks in network order, protocol and port each in a 4-byte slot. */
export function allowKeyBytes(src: number, dst: number, proto: number, port: number): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint32(0, src, false);
  v.setUint32(4, dst, false);
  b[8] = proto;
  v.setUint16(12, port, false);
  return b;
}
