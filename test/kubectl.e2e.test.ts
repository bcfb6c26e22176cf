// kubectl 1.32 (Debian kubernetes-client) against `skein apiserver` run as the demo runs it, a
// process of its own: ClusterIPs and NodePorts allocated in the configured ranges, `kubectl
// get` with the columns of a real cluster, patch, watch, delete freeing the address, and a
// restart that keeps what is allocated. Manifests go through `kubectl apply` (JSON bodies);
// kubectl's typed commands (create namespace|service|configmap, expose) post protobuf.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { SKEIN, useTempDir, waitFor } from "./harness/index.ts";
import { KUBECTL, KubectlServer } from "./harness/kubectl.ts";

const TOKEN = "kubectl-e2e-token";
const dir = useTempDir("kubectl");
const server = new KubectlServer(dir, TOKEN, ["--service-cidr", "10.96.0.0/24", "--service-node-port-range", "30000-30099"]);
const kc = (...args: string[]) => server.kc(...args);

/** `kubectl apply` of one Service manifest (JSON), without OpenAPI validation (none is served). */
async function apply(name: string, spec: Record<string, unknown>): Promise<{ code: number; out: string; err: string }> {
  const file = `${dir}/${name}.json`;
  await Bun.write(file, JSON.stringify({ apiVersion: "v1", kind: "Service", metadata: { name, namespace: "default" }, spec }));
  return kc("apply", "--validate=false", "-f", file);
}

const jsonpath = async (what: string, path: string) => {
  const r = await kc("get", ...what.split(" "), "-o", `jsonpath=${path}`);
  if (r.code !== 0) throw new Error(r.err);
  return r.out;
};

let minor: number | undefined;
/** The minor version of the kubectl under test (1.32 here; Debian bookworm's is 1.20). */
async function clientMinor(): Promise<number> {
  minor ??= Number(JSON.parse((await kc("version", "--client", "-o", "json")).out).clientVersion.minor.replace(/\D+$/, ""));
  return minor;
}

/** The rows of a kubectl table, split on runs of spaces (no cell here holds a space). */
const rows = (text: string) => text.trim().split("\n").map((l) => l.trim().split(/\s{2,}|\s+/));

// kubectl is part of the test environment (scripts/run installs Debian's kubernetes-client)
beforeAll(() => server.start(), 30_000);

afterAll(() => server.stop());

describe("kubectl against skein apiserver", () => {
  let webIP = "";

  test("a Service applied without clusterIP gets one in --service-cidr; a NodePort Service gets a node port in range", async () => {
    let r = await apply("web", { selector: { app: "web" }, ports: [{ name: "http", port: 80, targetPort: 8080 }] });
    expect(r.out + r.err).toContain("service/web created");
    webIP = await jsonpath("service web", "{.spec.clusterIP}");
    const last = Number(webIP.split(".")[3]);
    expect(webIP.startsWith("10.96.0.") && last > 0 && last < 255).toBe(true);
    expect(await jsonpath("service web", "{.spec.clusterIPs[0]} {.spec.ipFamilies[0]} {.spec.ipFamilyPolicy} {.spec.type} {.spec.ports[0].protocol}")).toBe(`${webIP} IPv4 SingleStack ClusterIP TCP`);
    r = await apply("np", { type: "NodePort", selector: { app: "np" }, ports: [{ name: "http", port: 80 }, { name: "https", port: 443, protocol: "TCP" }] });
    expect(r.out + r.err).toContain("service/np created");
    const nodePorts = (await jsonpath("service np", "{.spec.ports[*].nodePort}")).split(" ").map(Number);
    expect(nodePorts).toHaveLength(2);
    for (const n of nodePorts) expect(n >= 30000 && n <= 30099).toBe(true);
    expect(nodePorts[0]).not.toBe(nodePorts[1]);
    const npIP = await jsonpath("service np", "{.spec.clusterIP}");
    expect(npIP).not.toBe(webIP);
    // what is taken is refused to another, with kube-apiserver's words
    r = await apply("clash", { clusterIP: webIP, ports: [{ port: 80 }] });
    expect(r.code).not.toBe(0);
    expect(r.err).toContain(`The Service "clash" is invalid: spec.clusterIPs: Invalid value: []string{"${webIP}"}: failed to allocate IP ${webIP}: provided IP is already allocated`);
    r = await apply("clash", { type: "NodePort", ports: [{ port: 80, nodePort: 31000 }] });
    expect(r.err).toContain("provided port is not in the valid range. The range of valid ports is 30000-30099");
  }, 60_000);

  test("kubectl get prints the columns of a real cluster", async () => {
    const svc = await kc("get", "services");
    expect(svc.code).toBe(0);
    const t = rows(svc.out);
    expect(t[0]).toEqual(["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    const np = await jsonpath("service np", "{.spec.clusterIP} {.spec.ports[0].nodePort} {.spec.ports[1].nodePort}");
    const [npIP, n80, n443] = np.split(" ");
    expect(t.find((r) => r[0] === "web")!.slice(0, 5)).toEqual(["web", "ClusterIP", webIP, "<none>", "80/TCP"]);
    expect(t.find((r) => r[0] === "np")!.slice(0, 5)).toEqual(["np", "NodePort", npIP!, "<none>", `80:${n80}/TCP,443:${n443}/TCP`]);
    expect(t.find((r) => r[0] === "web")![5]).toMatch(/^\d+s$/);
    const wide = rows((await kc("get", "services", "-o", "wide")).out);
    expect(wide[0]).toEqual(["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]);
    expect(wide.find((r) => r[0] === "web")![6]).toBe("app=web");
    const ns = rows((await kc("get", "namespaces")).out);
    expect(ns[0]).toEqual(["NAME", "STATUS", "AGE"]);
    expect(ns.find((r) => r[0] === "default")![1]).toBe("Active");
    expect(rows((await kc("get", "service", "web")).out)[1]!.slice(0, 3)).toEqual(["web", "ClusterIP", webIP]);
  }, 60_000);

  test("kubectl get -w sees a kubectl patch", async () => {
    const w = Bun.spawn([KUBECTL!, "--kubeconfig", `${dir}/kubeconfig`, "--cache-dir", `${dir}/cache`, "get", "services", "web", "-w"], { stdout: "pipe", stderr: "pipe" });
    let seen = "";
    const reader = w.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const pump = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        seen += value;
      }
    })();
    try {
      await waitFor("the watch's first row", () => seen.includes("80/TCP"), 20_000);
      const r = await kc("patch", "service", "web", "-p", JSON.stringify({ spec: { ports: [{ name: "https", port: 443, targetPort: 8443 }] } }));
      expect(r.out + r.err).toContain("service/web patched");
      const row = await waitFor("the patched row in the watch", () => seen.split("\n").find((l) => l.includes("80/TCP,443/TCP") || l.includes("443/TCP,80/TCP")), 20_000);
      expect(row.trim().split(/\s+/).slice(0, 3)).toEqual(["web", "ClusterIP", webIP]);
    } finally {
      w.kill();
      await w.exited;
      await pump.catch(() => {});
    }
  }, 60_000);

  test("kubectl's typed commands (protobuf bodies): create namespace, create service, run, expose; each Service gets an address", async () => {
    const ok = async (...args: string[]) => {
      const r = await kc(...args);
      expect({ args, code: r.code, err: r.err }).toEqual({ args, code: 0, err: "" });
      return r.out;
    };
    expect(await ok("create", "namespace", "shop")).toContain("namespace/shop created");
    expect(await ok("create", "configmap", "conf", "-n", "shop", "--from-literal=a=b")).toContain("configmap/conf created");
    expect(await ok("create", "service", "clusterip", "cart", "-n", "shop", "--tcp=80:8080")).toContain("service/cart created");
    expect(await ok("run", "till", "-n", "shop", "--image=any", "--port=8080", "--labels=app=till")).toContain("pod/till created");
    expect(await ok("expose", "pod", "till", "-n", "shop", "--port=80", "--target-port=8080", "--type=NodePort")).toContain("service/till exposed");
    const t = rows(await ok("get", "services", "-n", "shop"));
    expect(t[0]).toEqual(["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    const cart = t.find((r) => r[0] === "cart")!;
    const till = t.find((r) => r[0] === "till")!;
    expect(cart.slice(1, 5)).toEqual(["ClusterIP", expect.stringMatching(/^10\.96\.0\.\d+$/), "<none>", "80/TCP"]);
    expect(till.slice(1, 5)).toEqual(["NodePort", expect.stringMatching(/^10\.96\.0\.\d+$/), "<none>", expect.stringMatching(/^80:300\d\d\/TCP$/)]);
    expect(cart[2]).not.toBe(till[2]);
    expect(await jsonpath("service till -n shop", "{.spec.selector.app} {.spec.ports[0].targetPort}")).toBe("till 8080");
    expect(await jsonpath("configmap conf -n shop", "{.data.a}")).toBe("b");
    expect(rows(await ok("get", "pods", "-n", "shop"))[0]).toEqual(["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    const tillPort = await jsonpath("service till -n shop", "{.spec.ports[0].nodePort}");
    expect(await ok("delete", "namespace", "shop")).toContain('namespace "shop" deleted');
    // what was in it went with it, and what its Services held is free
    for (const kind of ["services", "configmaps", "pods"]) expect(await ok("get", kind, "-A", "-o", "jsonpath={.items[*].metadata.namespace}")).not.toContain("shop");
    const r = await apply("heir", { type: "NodePort", ports: [{ port: 80, nodePort: Number(tillPort) }] });
    expect(r.out + r.err).toContain("service/heir created");
    expect((await kc("create", "configmap", "late", "-n", "shop")).err).toContain('namespaces "shop" not found');
    expect((await kc("delete", "namespace", "default")).err).toContain('namespaces "default" is forbidden: this namespace may not be deleted');
  }, 60_000);

  test("kubectl get all lists Pods and Services (discovery puts them in the category all)", async () => {
    expect((await kc("run", "allpod", "--image=any")).code).toBe(0);
    const r = await kc("get", "all", "-o", "name");
    expect({ code: r.code, err: r.err }).toEqual({ code: 0, err: "" });
    const names = r.out.split("\n");
    expect(names).toContain("pod/allpod");
    expect(names).toContain("service/np");
    expect(names.some((n) => n.startsWith("configmap/"))).toBe(false);
  }, 60_000);

  test("--dry-run=server answers as for a real request but changes nothing", async () => {
    if ((await clientMinor()) < 27) {
      // kubectl before 1.27 first asks the OpenAPI document whether a kind supports dry run,
      // and this server serves none (kubernetes/kubernetes#114294 removed that check)
      const old = await kc("create", "configmap", "dry", "--from-literal=a=b", "--dry-run=server");
      expect({ code: old.code, err: old.err.split("\n").find((l) => l.includes("openapi")) }).toEqual({ code: 1, err: expect.stringContaining("failed to download openapi") });
      return;
    }
    let r = await kc("create", "configmap", "dry", "--from-literal=a=b", "--dry-run=server");
    expect({ code: r.code, out: r.out }).toEqual({ code: 0, out: "configmap/dry created (server dry run)\n" });
    expect((await kc("get", "configmap", "dry")).err).toContain('configmaps "dry" not found');
    r = await kc("create", "service", "nodeport", "drysvc", "--tcp=80:8080", "--dry-run=server", "-o", "json");
    const spec = JSON.parse(r.out).spec;
    expect(spec.clusterIP).toMatch(/^10\.96\.0\.\d+$/);
    expect(spec.ports[0].nodePort).toBeGreaterThanOrEqual(30000);
    expect((await kc("get", "service", "drysvc")).err).toContain('services "drysvc" not found');
    // neither is held: a real Service may take both
    r = await apply("drysvc", { type: "NodePort", clusterIP: spec.clusterIP, ports: [{ port: 80, nodePort: spec.ports[0].nodePort }] });
    expect(r.out + r.err).toContain("service/drysvc created");
    r = await kc("delete", "service", "drysvc", "--dry-run=server");
    expect(r.out).toContain('service "drysvc" deleted (server dry run)');
    expect(await jsonpath("service drysvc", "{.spec.clusterIP}")).toBe(spec.clusterIP);
    r = await kc("label", "service", "drysvc", "x=y", "--dry-run=server");
    expect(r.code).toBe(0);
    expect(await jsonpath("service drysvc", "{.metadata.labels}")).toBe("");
    expect((await kc("delete", "service", "drysvc")).code).toBe(0);
  }, 60_000);

  test("kubectl version sees a server of its own release: no skew warning", async () => {
    const r = await kc("version", "-o", "json");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).serverVersion.gitVersion).toMatch(/^v1\.32\.\d+/);
    expect(r.err).not.toContain("version difference");
  }, 60_000);

  test("kubectl delete frees the address: a new Service can take it by asking", async () => {
    expect(webIP).toMatch(/^10\.96\.0\./);
    const before = await apply("again", { clusterIP: webIP, ports: [{ port: 80 }] });
    expect(before.err).toContain("provided IP is already allocated");
    const r = await kc("delete", "service", "web");
    expect(r.out).toContain('service "web" deleted');
    const again = await apply("again", { clusterIP: webIP, ports: [{ port: 80 }] });
    expect(again.out + again.err).toContain("service/again created");
    expect(await jsonpath("service again", "{.spec.clusterIP}")).toBe(webIP);
  }, 60_000);

  test("a restarted skein apiserver keeps what its stored Services hold", async () => {
    const n80 = await jsonpath("service np", "{.spec.ports[0].nodePort}");
    await server.stop();
    await server.start();
    let r = await apply("taken", { clusterIP: webIP, ports: [{ port: 80 }] });
    expect(r.err).toContain("provided IP is already allocated");
    r = await apply("taken", { type: "NodePort", ports: [{ port: 80, nodePort: Number(n80) }] });
    expect(r.err).toContain(`spec.ports[0].nodePort: Invalid value: ${n80}: provided port is already allocated`);
    r = await apply("taken", { type: "NodePort", ports: [{ port: 80 }] });
    expect(r.out + r.err).toContain("service/taken created");
  }, 60_000);
});

test("skein apiserver refuses bad ranges before serving", () => {
  const bad = (flag: string, v: string) => Bun.spawnSync([SKEIN, "apiserver", "--dir", `${dir}/bad`, "--listen", "127.0.0.1:1", "--token", TOKEN, flag, v], { stdout: "pipe", stderr: "pipe" });
  for (const [flag, v, why] of [
    ["--service-cidr", "10.96.0.1/12", "host bits"],
    ["--service-cidr", "10.96.0.0/12,10.100.0.0/16", "different IP families"],
    ["--service-node-port-range", "32767-30000", "not a range"],
  ] as const) {
    const r = bad(flag, v);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr.toString()).toContain(why);
  }
});
