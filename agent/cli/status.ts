// `skein status`: what the local agent says of itself, for people (colours on a terminal
// only) or as JSON (--json).
import type { NetworkStatus } from "../loop/network.ts";

export interface StatusDoc {
  node: string;
  version: string;
  mode: string;
  ready: boolean;
  reasons: string[];
  uptimeSeconds: number;
  apiServer: string;
  listed: boolean;
  generation: number;
  lastSync?: { kind: string; ms: number; at: string };
  lastError?: string;
  lastErrorAt?: string;
  objects?: Record<string, number>;
  tables?: Record<string, number>;
  network?: NetworkStatus;
}

export function colours(on: boolean) {
  const c = (code: number) => (s: string) => (on ? `\x1b[${code}m${s}\x1b[0m` : s);
  return { green: c(32), red: c(31), yellow: c(33), bold: c(1), dim: c(2) };
}

const ago = (ms: number) => (ms < 1000 ? `${ms} ms ago` : ms < 120_000 ? `${(ms / 1000).toFixed(1)} s ago` : `${Math.round(ms / 60_000)} min ago`);
const span = (s: number) => (s < 120 ? `${s}s` : s < 7200 ? `${Math.floor(s / 60)}m${s % 60}s` : `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`);

export function renderStatus(s: StatusDoc, colour: boolean): string {
  const k = colours(colour);
  const out: string[] = [];
  const row = (name: string, value: string) => out.push(`${(name + ":").padEnd(12)} ${value}`);
  row("Node", `${k.bold(s.node)} (skein ${s.version}, up ${span(s.uptimeSeconds)})`);
  row("Ready", s.ready ? k.green("yes") : `${k.red("no")}: ${s.reasons.join("; ")}`);
  const n = s.network;
  row("Mode", n ? `${n.mode}, gossip ${n.gossip}${n.self ? `, underlay ${n.self.underlay} (${n.self.underlayDev})${n.self.public ? `, public ${n.self.public}` : ""}, pod MTU ${n.self.podMtu}` : ""}` : "none (--no-overlay: this node's pods reach only each other)");
  if (n?.self) row("Pod CIDRs", n.self.podCIDRs.join(", "));
  row("API server", `${s.apiServer}${s.listed ? "" : k.yellow(" (not listed yet)")}`);
  row("Tables", s.lastSync ? `generation ${s.generation}, last applied ${s.lastSync.at} (${s.lastSync.kind}, ${s.lastSync.ms} ms)` : "none applied yet");
  if (s.tables) row("", Object.entries(s.tables).map(([t, v]) => `${t.replace(/_/g, " ")} ${v}`).join(", "));
  if (s.objects) row("Objects", Object.entries(s.objects).map(([t, v]) => `${t} ${v}`).join(", "));
  row("Last error", s.lastError ? k.red(`${s.lastError} (${s.lastErrorAt})`) : "none");
  if (n) {
    const up = n.peers.filter((p) => p.probe?.ok).length;
    out.push("", `Peers: ${n.peers.length}${n.peers.some((p) => p.probe) ? `, ${up} answering the health probe` : ""}${n.waiting ? k.yellow(` (the pod network waits: ${n.waiting})`) : ""}`);
    if (n.peers.length) {
      out.push(`  ${"NAME".padEnd(20)} ${"SOURCE".padEnd(7)} ${"HEARTBEAT".padEnd(13)} ${"PATH".padEnd(40)} PROBE`);
      for (const p of n.peers) {
        const path = p.paths.map((x) => (x.how === "none" ? `none: ${x.why}` : `${x.how}${x.endpoint ? ` via ${x.endpoint}` : ""}`)).join("; ") || "-";
        const probe = !p.probe ? k.dim("not probed yet") : p.probe.ok ? k.green(`ok ${p.probe.rttMs} ms`) : k.red(`failed: ${p.probe.error}`);
        const hb = p.lastHeartbeatMsAgo !== undefined ? ago(p.lastHeartbeatMsAgo) : p.source === "node" ? "(Node object)" : "-";
        out.push(`  ${p.name.padEnd(20)} ${p.source.padEnd(7)} ${hb.padEnd(13)} ${path.padEnd(40)} ${probe}`);
      }
    }
  }
  return out.join("\n") + "\n";
}
