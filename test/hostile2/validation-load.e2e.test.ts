// Hostile round 2 on `skein apiserver` (the built binary), loopback only: reproductions of the
// problems found; each test states what kube-apiserver does and fails while skein does otherwise.
import { afterAll, afterEach, expect, test } from "bun:test";
import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { SKEIN, waitFor } from "../harness/index.ts";

const TOKEN = "skhb-token";
const dirs: string[] = [];
const procs: Bun.Subprocess[] = [];
afterEach(() => procs.splice(0).forEach((p) => p.exitCode === null && p.kill("SIGKILL")));
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function tmp(tag: string): string {
  const d = mkdtempSync(`${tmpdir()}/skhb-${tag}-`);
  dirs.push(d);
  return d;
}

function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = l.port;
  l.stop(true);
  return p;
}

function drain(s: ReadableStream<Uint8Array>, sink: (text: string) => void): void {
  void (async () => {
    const dec = new TextDecoder();
    for await (const c of s) sink(dec.decode(c, { stream: true }));
  })();
}

const api = (port: number) => async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}, timeoutMs = 10_000) => {
  const r = await fetch(`https://127.0.0.1:${port}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
    tls: { rejectUnauthorized: false },
    signal: AbortSignal.timeout(timeoutMs),
  } as RequestInit);
  const text = await r.text();
  return { status: r.status, text, json: () => JSON.parse(text) };
};

async function startApi(dir: string, port = freePort()) {
  const proc = Bun.spawn([SKEIN, "apiserver", "--dir", dir, "--listen", `127.0.0.1:${port}`, "--token", TOKEN], { stdout: "pipe", stderr: "pipe" });
  procs.push(proc);
  let out = "";
  drain(proc.stdout, (t) => (out += t));
  drain(proc.stderr, (t) => (out += t));
  await waitFor("skein apiserver serving or exited", () => out.includes("serving") || proc.exitCode !== null, 15_000);
  return { proc, port, out: () => out, req: api(port), serving: out.includes("serving") };
}

test("a journal line the server would refuse as a write (Service port 999999) is not loaded as if valid", async () => {
  // The first round's fix says what is loaded from --dir is checked as a write would be; a
  // Service with spec.ports[0].port 999999 in journal.jsonl loads silently and is served.
  const dir = tmp("jv");
  let a = await startApi(dir);
  a.proc.kill("SIGTERM");
  await a.proc.exited;
  const svc = {
    apiVersion: "v1", kind: "Service",
    metadata: { name: "skhb-bad", namespace: "default", resourceVersion: "6", uid: "skhb-u1" },
    spec: { type: "ClusterIP", ports: [{ port: 999999, protocol: "TCP" }], clusterIP: "10.96.0.50", clusterIPs: ["10.96.0.50"] },
  };
  appendFileSync(`${dir}/journal.jsonl`, JSON.stringify({ rev: 6, group: "", plural: "services", object: svc }) + "\n");
  a = await startApi(dir, a.port);
  if (a.serving) {
    const r = await a.req("GET", "/api/v1/namespaces/default/services/skhb-bad");
    expect(r.status === 200 ? r.json().spec.ports[0].port : "not served").not.toBe(999999);
  } else {
    expect(a.out()).toContain("journal.jsonl");
  }
}, 60_000);


test("a Terminating namespace's status cannot be set back to Active (kube-apiserver: 422, phase may only be 'Terminating' with a deletionTimestamp)", async () => {
  // skein accepts the status patch: `kubectl get ns` then shows Active for a namespace that is
  // being deleted and refuses every create with 403 NamespaceTerminating.
  const a = await startApi(tmp("ns"));
  expect((await a.req("POST", "/api/v1/namespaces", { metadata: { name: "skhb-t" } })).status).toBe(201);
  const pod = { metadata: { name: "p" }, spec: { nodeName: "skhb-n1", containers: [{ name: "c", image: "x" }] } };
  expect((await a.req("POST", "/api/v1/namespaces/skhb-t/pods", pod)).status).toBe(201);
  expect((await a.req("DELETE", "/api/v1/namespaces/skhb-t")).status).toBe(200);
  expect((await a.req("GET", "/api/v1/namespaces/skhb-t")).json().status.phase).toBe("Terminating");
  const r = await a.req("PATCH", "/api/v1/namespaces/skhb-t/status", { status: { phase: "Active" } }, { "content-type": "application/merge-patch+json" });
  const ns = (await a.req("GET", "/api/v1/namespaces/skhb-t")).json();
  expect({ patch: r.status, phase: ns.status.phase }).toEqual({ patch: 422, phase: "Terminating" });
}, 60_000);

test("immutable and typed fields hold on update: Node podCIDR(s), EndpointSlice addressType, and status subresources", async () => {
  // kube-apiserver answers each of these 422 (podCIDRs "may not change once set", addressType
  // "field is immutable") or 400 (a string where status wants a list/object). skein takes them all
  // with 200, and serves the result to the agents that route by them.
  const a = await startApi(tmp("im"));
  const merge = { "content-type": "application/merge-patch+json" };
  expect((await a.req("POST", "/api/v1/nodes", { metadata: { name: "skhb-n1" }, spec: { podCIDR: "10.244.1.0/24", podCIDRs: ["10.244.1.0/24"] } })).status).toBe(201);
  const es = { metadata: { name: "skhb-e0" }, addressType: "IPv4", endpoints: [] };
  expect((await a.req("POST", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", es)).status).toBe(201);
  expect((await a.req("POST", "/api/v1/namespaces/default/services", { metadata: { name: "skhb-v" }, spec: { ports: [{ port: 80 }] } })).status).toBe(201);
  const got = {
    podCIDR: (await a.req("PATCH", "/api/v1/nodes/skhb-n1", { spec: { podCIDR: "10.244.2.0/24", podCIDRs: ["10.244.2.0/24"] } }, merge)).status,
    addressType: (await a.req("PATCH", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/skhb-e0", { addressType: "IPv6" }, merge)).status,
    nodeStatus: (await a.req("PATCH", "/api/v1/nodes/skhb-n1/status", { status: { addresses: "zzz" } }, merge)).status,
    serviceStatus: (await a.req("PATCH", "/api/v1/namespaces/default/services/skhb-v/status", { status: { loadBalancer: "zzz" } }, merge)).status,
  };
  const refused = Object.fromEntries(Object.entries(got).map(([k, s]) => [k, s === 400 || s === 422 ? "refused" : s]));
  expect(refused).toEqual({ podCIDR: "refused", addressType: "refused", nodeStatus: "refused", serviceStatus: "refused" });
}, 60_000);
