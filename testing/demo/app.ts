// The demo's application, as a user would write it: a two-tier app in namespace `demo` (a
// frontend Service, NodePort, whose pods call a backend Service on every request, the way the
// guestbook's frontend calls its store), a client pod standing for everything else in the
// cluster, and a NetworkPolicy that admits the frontend to the backend and nothing else.
// Plus what the demo expects of it: who reaches whom, for the connectivity matrix.
import { UPSTREAM_ANNOTATION } from "../cluster/pod-runner.ts";

export const APP_NS = "demo";
export const APP_PORT = 8080;

type Obj = Record<string, unknown>;

export function appObjects(pods: number): { namespace: Obj; services: Obj[]; policy: Obj; pods: Obj[] } {
  const pod = (name: string, app: string, upstream?: string): Obj => ({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, labels: { app }, ...(upstream ? { annotations: { [UPSTREAM_ANNOTATION]: upstream } } : {}) },
    spec: { containers: [{ name: app, image: `demo/${app}`, ports: [{ name: "http", containerPort: APP_PORT }, { name: "http-udp", containerPort: APP_PORT, protocol: "UDP" }] }] },
  });
  const svc = (name: string, type?: "NodePort"): Obj => ({
    apiVersion: "v1",
    kind: "Service",
    metadata: { name },
    spec: {
      ...(type ? { type } : {}),
      selector: { app: name },
      ports: [
        { name: "http", port: 80, targetPort: "http", protocol: "TCP" },
        { name: "http-udp", port: 80, targetPort: "http-udp", protocol: "UDP" },
      ],
    },
  });
  return {
    namespace: { apiVersion: "v1", kind: "Namespace", metadata: { name: APP_NS } },
    services: [svc("backend"), svc("frontend", "NodePort")],
    policy: {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: "backend-from-frontend" },
      spec: {
        podSelector: { matchLabels: { app: "backend" } },
        policyTypes: ["Ingress"],
        ingress: [{ from: [{ podSelector: { matchLabels: { app: "frontend" } } }], ports: [{ protocol: "TCP", port: "http" }, { protocol: "UDP", port: "http-udp" }] }],
      },
    },
    // backends first: the scheduler spreads pods in the order they come, so the tiers land on
    // different nodes
    pods: [
      ...Array.from({ length: pods }, (_, i) => pod(`backend-${i + 1}`, "backend")),
      ...Array.from({ length: pods }, (_, i) => pod(`frontend-${i + 1}`, "frontend", "backend:80")),
      pod("client", "client"),
    ],
  };
}

/** A source of the matrix: a pod (by name) or the outside host. */
export interface Source {
  name: string;
  /** the lab namespace the probe runs in */
  ns: string;
  app: "frontend" | "backend" | "client" | "outside";
}

/** A destination: a Service's ClusterIP, a pod's own address, or a node's NodePort. */
export interface Target {
  label: string;
  address: string;
  port: number;
  /** the tier answering (what the policy judges) */
  app: "frontend" | "backend";
  via: "clusterip" | "pod" | "nodeport";
}

/** What the policy and the network say should happen: the frontend (Service, pods, NodePort)
 * is open to all; the backend only to frontend pods; the outside host has no route to
 * ClusterIPs or pod addresses, only to the nodes (NodePort). */
export function expected(from: Source, to: Target): "reply" | "blocked" | "no route" {
  if (from.app === "outside") return to.via === "nodeport" ? "reply" : "no route";
  if (to.app === "frontend") return "reply";
  return from.app === "frontend" ? "reply" : "blocked";
}

export interface Cell {
  from: Source;
  to: Target;
  proto: "tcp" | "udp";
  expect: ReturnType<typeof expected>;
  /** an answer came */
  answered: boolean;
  ok: boolean;
  /** the answer, or why there was none */
  detail: string;
}

/** Whether a probe's outcome matches what was expected: a reply must come from the tier the
 * target is (and a frontend's must carry its backend's answer), anything else must not answer. */
export function judge(expect: ReturnType<typeof expected>, to: Target, r: { ok: boolean; answer: string }): boolean {
  if (expect !== "reply") return !r.ok;
  if (!r.ok || !r.answer.startsWith(`${to.app}-`)) return false;
  return to.app === "backend" || / -> backend-\d+ /.test(r.answer);
}

/** The matrix as text: a row per source, a column per target, per protocol. */
export function renderMatrix(cells: Cell[]): string {
  const targets = [...new Map(cells.map((c) => [c.to.label, c.to])).values()];
  const sources = [...new Map(cells.map((c) => [c.from.name, c.from])).values()];
  const lines: string[] = [];
  for (const proto of ["tcp", "udp"] as const) {
    const w = Math.max(10, ...sources.map((s) => s.name.length)) + 2;
    const cw = targets.map((t) => Math.max(t.label.length, 9) + 2);
    lines.push(`${proto.toUpperCase().padEnd(w)}${targets.map((t, i) => t.label.padEnd(cw[i]!)).join("")}`);
    for (const s of sources) {
      const row = targets.map((t, i) => {
        const c = cells.find((x) => x.from.name === s.name && x.to.label === t.label && x.proto === proto);
        const text = !c ? "" : c.expect === "no route" && c.ok ? "." : `${c.answered ? "reply" : "blocked"}${c.ok ? "" : "!"}`;
        return text.padEnd(cw[i]!);
      });
      lines.push(`${s.name.padEnd(w)}${row.join("")}`);
    }
    lines.push("");
  }
  lines.push('reply: an answer from the tier; blocked: no answer (the policy or no route); ".": not reachable from there, as expected; "!": not what was expected');
  return lines.join("\n");
}
