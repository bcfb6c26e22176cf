// The service tables for people (`skein tables`, the agent's /v1/tables?format=text): each
// frontend with the target it dispatches to, and each target with its ring and backends.
import { targetBackends, type Tables } from "../../compiler/tables.ts";

export function readableServices(t: Tables): string {
  const byId = new Map(t.targets.map((x) => [x.id, x]));
  const lines = ["FRONTEND                                      KIND          TARGET"];
  for (const f of t.frontends) {
    const fe = `${f.family === 6 ? `[${f.ip}]` : f.ip}:${f.port}/${f.protocol}`;
    lines.push(`${fe.padEnd(45)} ${f.kind.padEnd(13)} t${f.target}${byId.get(f.target)?.ringSize ? "" : " (no endpoints: rejected)"}`);
  }
  lines.push("", "TARGET  SERVICE                                  SCOPE     RING  BACKENDS");
  for (const x of t.targets) {
    const backends = targetBackends(x).map((b) => `${x.family === 6 ? `[${b.ip}]` : b.ip}:${b.port}`).join(" ") || "-";
    lines.push(`t${String(x.id).padEnd(6)} ${x.service.padEnd(40)} ${x.scope.padEnd(9)} ${String(x.ringSize).padStart(4)}  ${backends}${x.affinity ? "  (ClientIP affinity)" : ""}`);
  }
  return lines.join("\n") + "\n";
}
