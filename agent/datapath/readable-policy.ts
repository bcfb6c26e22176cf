// The policy tables for people (`skein tables`): identities with what selects them, the
// addresses in each, and the allowed pairs, including the policies skein generated for
// isolation modes.
import { BLOCKED, VIA_SERVICE, WORLD, type AllowElement, type PolicyTables } from "../../compiler/policy/types.ts";

const PROTO: Record<number, string> = { 6: "tcp", 17: "udp", 132: "sctp" };

export function readablePolicy(t: PolicyTables): string {
  const names = new Map<number, string>([
    [WORLD, "world"],
    [VIA_SERVICE, "via-service"],
    [BLOCKED, "blocked"],
  ]);
  for (const i of t.identities) names.set(i.id, i.name);
  const addrs = new Map<number, string[]>();
  for (const p of t.pods) addrs.set(p.id, [...(addrs.get(p.id) ?? []), p.ip]);
  for (const r of t.ranges) addrs.set(r.id, [...(addrs.get(r.id) ?? []), r.first === r.last ? r.first : `${r.first}-${r.last}`]);
  const out = ["IDENTITY  LOCAL  INGRESS POLICED BY / EGRESS POLICED BY         NAME"];
  const show = (id: number, local: string, by: string) => {
    const a = addrs.get(id) ?? [];
    out.push(`${String(id).padEnd(9)} ${local.padEnd(6)} ${by.padEnd(41)} ${names.get(id)}`);
    if (a.length) out.push(`${"".padEnd(17)}${a.slice(0, 8).join(" ")}${a.length > 8 ? ` … (${a.length})` : ""}`);
  };
  if (t.isolatedIngress.includes(BLOCKED)) show(BLOCKED, "yes", "blocked both ways (fail closed)");
  for (const i of t.identities) {
    const by = [i.ingressBy.length ? `in: ${i.ingressBy.join(",")}` : "", i.egressBy.length ? `out: ${i.egressBy.join(",")}` : ""].filter(Boolean).join(" ");
    show(i.id, i.local ? "yes" : "", by || "-");
  }
  const el = (dir: string, e: AllowElement) => {
    const span = (a: number, b: number) => (a === b ? (names.get(a) ?? String(a)) : `${a}-${b}`);
    const proto = e.proto === 0 && e.protoLast === 255 ? "any" : e.proto === e.protoLast ? (PROTO[e.proto] ?? String(e.proto)) : `${e.proto}-${e.protoLast}`;
    const port = e.port === 0 && e.portLast === 65535 ? "any" : e.port === e.portLast ? String(e.port) : `${e.port}-${e.portLast}`;
    return `${dir.padEnd(8)} ${span(e.src, e.srcLast).padEnd(24)} ${span(e.dst, e.dstLast).padEnd(24)} ${proto.padEnd(5)} ${port.padEnd(11)} ${e.policies.join(",")}`;
  };
  out.push("", "ALLOW    FROM                     TO                       PROTO PORT        POLICIES");
  for (const e of t.allowIngress) out.push(el("ingress", e));
  for (const e of t.allowEgress) out.push(el("egress", e));
  if (t.generated.length) {
    out.push("", "GENERATED POLICY (isolation modes)");
    for (const p of t.generated) out.push(`${p.namespace}/${p.name}  (${p.generated}${p.viaService ? "; Services reachable from everywhere" : ""})`);
  }
  for (const p of t.problems) out.push(`problem: ${p}`);
  return out.join("\n") + "\n";
}
