import { expect, test } from "bun:test";
import { appObjects, expected, judge, renderMatrix, type Cell, type Source, type Target } from "./app.ts";

const src = (name: string, app: Source["app"]): Source => ({ name, ns: name, app });
const svc = (app: Target["app"], via: Target["via"] = "clusterip"): Target => ({ label: `${app} ${via}`, address: "10.96.0.1", port: 80, app, via });

test("the app: pods per tier plus a client, unbound; the frontend calls the backend; the policy admits only the frontend, on the named ports", () => {
  const a = appObjects(3);
  expect(a.pods.map((p: any) => p.metadata.name)).toEqual(["backend-1", "backend-2", "backend-3", "frontend-1", "frontend-2", "frontend-3", "client"]);
  expect(a.pods.every((p: any) => p.spec.nodeName === undefined)).toBe(true);
  expect(a.pods.filter((p: any) => p.metadata.annotations?.["demo.skein.io/upstream"] === "backend:80").map((p: any) => p.metadata.labels.app)).toEqual(["frontend", "frontend", "frontend"]);
  expect((a.policy as any).spec.ingress).toEqual([{ from: [{ podSelector: { matchLabels: { app: "frontend" } } }], ports: [{ protocol: "TCP", port: "http" }, { protocol: "UDP", port: "http-udp" }] }]);
  expect(a.services.map((s: any) => [s.metadata.name, s.spec.type ?? "ClusterIP"])).toEqual([["backend", "ClusterIP"], ["frontend", "NodePort"]]);
});

test("expected: the frontend open to all, the backend to the frontend only, the outside host only at NodePorts", () => {
  expect(expected(src("client", "client"), svc("frontend"))).toBe("reply");
  expect(expected(src("client", "client"), svc("backend"))).toBe("blocked");
  expect(expected(src("backend-1", "backend"), svc("backend", "pod"))).toBe("blocked");
  expect(expected(src("frontend-1", "frontend"), svc("backend", "pod"))).toBe("reply");
  expect(expected(src("outside", "outside"), svc("frontend", "nodeport"))).toBe("reply");
  expect(expected(src("outside", "outside"), svc("frontend"))).toBe("no route");
});

test("judge: a reply must come from the target's tier, a frontend's with its backend's answer; a denied probe must not answer", () => {
  const ok = (answer: string) => ({ ok: true, answer });
  expect(judge("reply", svc("frontend"), ok("frontend-1 10.244.1.5 -> backend-2 10.244.1.3"))).toBe(true);
  expect(judge("reply", svc("frontend"), ok("frontend-1 10.244.1.5 -> 10.96.0.9:80 no answer (timeout)"))).toBe(false);
  expect(judge("reply", svc("backend"), ok("frontend-1 10.244.1.5"))).toBe(false);
  expect(judge("reply", svc("backend"), ok("backend-2 10.244.1.5"))).toBe(true);
  expect(judge("blocked", svc("backend"), ok("backend-2 10.244.1.5"))).toBe(false);
  expect(judge("blocked", svc("backend"), { ok: false, answer: "" })).toBe(true);
});

test("the matrix shows what happened, marks what was not expected", () => {
  const from = src("client", "client");
  const cells: Cell[] = [
    { from, to: svc("frontend"), proto: "tcp", expect: "reply", answered: true, ok: true, detail: "" },
    { from, to: svc("backend"), proto: "tcp", expect: "blocked", answered: true, ok: false, detail: "" },
  ];
  const text = renderMatrix(cells);
  expect(text).toMatch(/^TCP\s+frontend clusterip\s+backend clusterip\s*\nclient\s+reply\s+reply!/);
});
