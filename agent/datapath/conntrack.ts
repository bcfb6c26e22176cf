// UDP has no connection end, so a conntrack entry keeps sending a client's datagrams to the
// backend it was first translated to, even after that backend left the service: the flow
// goes nowhere until the entry times out. After a change, the entries of UDP frontends whose
// backend went away are deleted (as kube-proxy does), so the next datagram is translated anew.
// TCP needs none of this: a connection to a removed backend ends, and an established one to
// a terminating backend should go on.
import { frontendKey, targetBackends, type Target, type UnitChange } from "../../compiler/tables.ts";
import { runAsync } from "../sys/exec.ts";

export interface StaleFlow {
  family: 4 | 6;
  /** the frontend the client sent to */
  dst: string;
  dport: number;
  /** the backend that is gone from it; undefined: every backend (the frontend itself is gone) */
  backend?: { ip: string; port: number };
}

const backendKey = (b: { ip: string; port: number }) => `${b.ip}|${b.port}`;

/** The UDP flows a change leaves pointing at backends that no longer serve their frontend. */
export function staleUdpFlows(changes: UnitChange[]): StaleFlow[] {
  const out: StaleFlow[] = [];
  for (const c of changes) {
    const after = new Map<string, Set<string>>();
    const targetsAfter = new Map(c.after.targets.map((t) => [t.id, t]));
    for (const f of c.after.frontends) {
      if (f.protocol !== "UDP") continue;
      const t = targetsAfter.get(f.target);
      after.set(frontendKey(f), new Set((t ? targetBackends(t) : []).map(backendKey)));
    }
    const targetsBefore = new Map<number, Target>(c.before.targets.map((t) => [t.id, t]));
    for (const f of c.before.frontends) {
      if (f.protocol !== "UDP") continue;
      const now = after.get(frontendKey(f));
      if (!now) {
        out.push({ family: f.family, dst: f.ip, dport: f.port });
        continue;
      }
      const t = targetsBefore.get(f.target);
      for (const b of t ? targetBackends(t) : []) if (!now.has(backendKey(b))) out.push({ family: f.family, dst: f.ip, dport: f.port, backend: b });
    }
  }
  return out;
}

/** conntrack(8) arguments that delete one stale flow's entries. */
export function conntrackArgs(f: StaleFlow): string[] {
  const a = ["-D", "-f", f.family === 4 ? "ipv4" : "ipv6", "-p", "udp", "--orig-dst", f.dst, "--dport", String(f.dport)];
  if (f.backend) a.push("--reply-src", f.backend.ip, "--reply-port-src", String(f.backend.port));
  return a;
}

/** Deletes the entries; conntrack exits 1 when none matched, which is no failure. */
export async function flushStaleFlows(flows: StaleFlow[], conntrack = "conntrack"): Promise<number> {
  let deleted = 0;
  for (const f of flows) {
    const r = await runAsync([conntrack, ...conntrackArgs(f)], { allowFail: true });
    const m = /(\d+) flow entries have been deleted/.exec(r.stderr + r.stdout);
    if (r.exitCode !== 0 && !m) throw new Error(`conntrack ${conntrackArgs(f).join(" ")}: ${(r.stderr || r.stdout).trim()}`);
    deleted += m ? Number(m[1]) : 0;
  }
  return deleted;
}
