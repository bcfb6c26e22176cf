// A trace for people: numbered steps, each with what the datapath did and why; colours (ANSI)
// only when asked (the CLI asks on a terminal). Pure.
import { queryText } from "./query.ts";
import type { Outcome, TraceResult, TraceStep } from "./explain.ts";

const TITLE: Record<TraceStep["kind"], string> = { frontend: "Service frontend", backend: "backend", policy: "NetworkPolicy", route: "route" };

const COLOUR: Record<Outcome | "bold" | "dim", string> = { delivered: "32", rejected: "31", dropped: "31", undecided: "33", bold: "1", dim: "2" };

export function renderTrace(r: TraceResult, o: { color: boolean }): string {
  const c = (what: keyof typeof COLOUR, s: string) => (o.color ? `\x1b[${COLOUR[what]}m${s}\x1b[0m` : s);
  const q = queryText(r.query);
  const src = r.source.pod ? ` (pod ${r.source.pod})` : "";
  const out = [c("bold", `trace ${q.src} → ${q.dst} on node ${r.node}`) + c("dim", ` (${r.mode === "live" ? "the agent's tables in force" : "offline: compiled from the state file"})`), `source ${r.query.src}${src}: ${sourceText(r)}`];
  r.steps.forEach((s, i) => {
    out.push(c("bold", `${i + 1}. ${TITLE[s.kind]}: ${headline(s)}`));
    for (const l of s.kind === "policy" ? [...s.lines, ...s.sides.flatMap((x) => x.lines.map((y, j) => (j ? `  ${y}` : y)))] : s.lines) out.push(`   ${l}`);
  });
  out.push(c(r.outcome, `=> ${r.outcome.toUpperCase()}: ${r.summary}`));
  for (const n of r.notes) out.push(c("dim", `note: ${n}`));
  return out.join("\n") + "\n";
}

function sourceText(r: TraceResult): string {
  switch (r.source.kind) {
    case "local-pod":
      return "a pod of this node";
    case "peer-pod":
      return `a pod of node ${r.source.node}`;
    case "node":
      return "this node itself";
    case "pod-network":
      return "in the pod network, in no node's pod CIDR";
    case "outside":
      return r.source.node ? `node ${r.source.node}'s own address` : "outside the cluster";
  }
}

function headline(s: TraceStep): string {
  switch (s.kind) {
    case "frontend":
      return s.result === "translated" ? `${s.frontend!.service} (${s.frontend!.kind})` : s.result === "rejected" ? "REJECTED" : "none (not translated)";
    case "backend":
      return s.chosen ? `${s.chosen.ip.includes(":") ? `[${s.chosen.ip}]` : s.chosen.ip}:${s.chosen.port} (slot ${s.chosen.slot} of ${s.ringSize})` : `one of ${s.candidates.length} (the source port decides)`;
    case "policy": {
      const d = s.sides.find((x) => x.result === "denied");
      if (d) return `DENIED (${d.direction} on node ${d.node})`;
      if (!s.sides.length) return "accepted (hairpin)";
      return s.sides.map((x) => `${x.direction} ${x.result}`).join(", ");
    }
    case "route":
      return { "local-pod": "to a pod of this node", "this-node": "to this node", direct: `direct to node ${s.peer} via ${s.endpoint}`, vxlan: `VXLAN to node ${s.peer} at ${s.endpoint}`, "no-route": "no route of skein's", outside: "out of the cluster" }[s.how] + (s.snat ? " (source NAT)" : "");
  }
}
