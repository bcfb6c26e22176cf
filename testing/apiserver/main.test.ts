// `skein apiserver` as a process (run from source: no build needed): its directory, saves that
// survive a crash, a state file it cannot read, a save that fails, and serving certificates
// renewed by the same CA at start and while it runs.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { connect } from "node:tls";
import { resolve } from "node:path";
import { ApiDriver } from "./driver.ts";
import { useTempDir, waitFor, freePort } from "../../test/harness/index.ts";

const MAIN = resolve(import.meta.dir, "../../agent/main.ts");
const procs: Array<ReturnType<typeof Bun.spawn>> = [];
afterAll(() => procs.forEach((p) => p.kill("SIGKILL")));

/** Starts `skein apiserver` on `dir`; resolves once it serves (or with its exit if it does not). */
async function apiserver(dir: string, ...extra: string[]) {
  const port = freePort();
  const p = Bun.spawn([process.execPath, MAIN, "apiserver", "--dir", dir, "--listen", `127.0.0.1:${port}`, "--token", "t", "--unix", `${dir}/api.sock`, ...extra], { stdout: "pipe", stderr: "pipe" });
  procs.push(p);
  const out = { text: "", err: "" };
  void (async () => {
    for await (const c of p.stdout) out.text += new TextDecoder().decode(c);
  })();
  void (async () => {
    for await (const c of p.stderr) out.err += new TextDecoder().decode(c);
  })();
  const exited = p.exited.then((code) => ({ code }));
  await Promise.race([waitFor("skein apiserver serves", () => out.text.includes("serving https:"), 30_000), exited]);
  return { p, out, port, api: new ApiDriver(`${dir}/api.sock`, "t"), exited };
}

/** The serial number of the certificate the server presents, verified against `ca`. */
function servedSerial(port: number, ca: string): Promise<string> {
  return new Promise((res, rej) => {
    const s = connect({ host: "127.0.0.1", port, ca, servername: "localhost" }, () => {
      res(s.getPeerCertificate().serialNumber);
      s.destroy();
    });
    s.on("error", rej);
  });
}

const kubeconfigCa = (dir: string) => Buffer.from(JSON.parse(readFileSync(`${dir}/kubeconfig`, "utf8")).clusters[0].cluster["certificate-authority-data"], "base64").toString();

describe("skein apiserver", () => {
  const tmp = useTempDir("apiserver-main");

  test("a --dir that does not exist is made (0700)", async () => {
    const dir = `${tmp}/not/yet/there`;
    const a = await apiserver(dir);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(`${dir}/certs.json`).mode & 0o777).toBe(0o600);
    a.p.kill("SIGTERM");
    expect(await a.p.exited).toBe(0);
  }, 60_000);

  test("objects written survive a crash (SIGKILL)", async () => {
    const dir = `${tmp}/crash`;
    mkdirSync(dir);
    const a = await apiserver(dir);
    await a.api.create("/api/v1/namespaces", { metadata: { name: "kept" } });
    await a.api.create("/api/v1/namespaces/kept/services", { metadata: { name: "web" }, spec: { ports: [{ port: 80 }] } });
    await waitFor("the write is saved", () => existsSync(`${dir}/state.json`) && readFileSync(`${dir}/state.json`, "utf8").includes('"web"'), 10_000);
    a.p.kill("SIGKILL");
    await a.p.exited;
    const b = await apiserver(dir);
    expect((await b.api.request("GET", "/api/v1/namespaces/kept/services/web")).metadata.name).toBe("web");
    b.p.kill("SIGTERM");
    expect(await b.p.exited).toBe(0);
  }, 60_000);

  test("CRDs and their objects are kept: read back in any order, a custom object without its CRD refused", async () => {
    const dir = `${tmp}/crds`;
    mkdirSync(dir);
    const a = await apiserver(dir);
    const crd = (group: string) => ({
      metadata: { name: `gizmos.${group}` },
      spec: { group, scope: "Namespaced", names: { plural: "gizmos", kind: "Gizmo" }, versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object", properties: { spec: { type: "object", properties: { n: { type: "integer" } } } } } } }] },
    });
    await a.api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd("a.example.com"));
    await a.api.create("/apis/a.example.com/v1/namespaces/default/gizmos", { metadata: { name: "g" }, spec: { n: 1 } });
    a.p.kill("SIGTERM");
    expect(await a.p.exited).toBe(0);
    // objects before the CRD that defines them (a file written by hand, or by another order)
    const saved = JSON.parse(readFileSync(`${dir}/state.json`, "utf8"));
    saved.objects.reverse();
    writeFileSync(`${dir}/state.json`, JSON.stringify(saved));
    const b = await apiserver(dir);
    expect((await b.api.request("GET", "/apis/a.example.com/v1/namespaces/default/gizmos/g")).spec).toEqual({ n: 1 });
    b.p.kill("SIGTERM");
    expect(await b.p.exited).toBe(0);
    // a journal that deletes the CRD but not its object: refused, naming the object
    const rev = JSON.parse(readFileSync(`${dir}/state.json`, "utf8")).rev as number;
    writeFileSync(`${dir}/journal.jsonl`, JSON.stringify({ rev: rev + 1, group: "apiextensions.k8s.io", plural: "customresourcedefinitions", name: "gizmos.a.example.com" }) + "\n");
    const c = await apiserver(dir);
    expect((await c.exited).code).toBe(1);
    expect(c.out.err).toContain("(gizmos default/g): its CustomResourceDefinition is gone");
  }, 60_000);

  test.each([['{"rev": 12, "objects": ['], ['{"rev": 12}'], ['{"rev": 12, "objects": [{"group": "", "plural": "pods", "object": {}}]}']])("a state file it cannot read (%s): an error naming it, the file kept as it was", async (text) => {
    const dir = useTempDir("apiserver-corrupt");
    writeFileSync(`${dir}/state.json`, text);
    const a = await apiserver(dir);
    expect((await a.exited).code).toBe(1);
    expect(a.out.err).toContain(`${dir}/state.json: not a saved API server state`);
    expect(readFileSync(`${dir}/state.json`, "utf8")).toBe(text);
  }, 60_000);

  test("a save that fails is logged, answered by /readyz and by the exit status", async () => {
    const dir = `${tmp}/unsaveable`;
    mkdirSync(dir);
    const a = await apiserver(dir);
    // the temporary file's name taken by a directory: every save fails, even as root
    mkdirSync(`${dir}/state.json.tmp`);
    expect((await fetch("http://localhost/readyz", { unix: `${dir}/api.sock` } as RequestInit)).status).toBe(200);
    await a.api.create("/api/v1/namespaces", { metadata: { name: "lost" } });
    await waitFor("/readyz fails", async () => (await fetch("http://localhost/readyz", { unix: `${dir}/api.sock` } as RequestInit)).status === 500, 10_000);
    expect(a.out.err).toContain(`ERROR: saving ${dir}/state.json failed`);
    a.p.kill("SIGTERM");
    expect(await a.p.exited).toBe(1);
    expect(a.out.text).toContain("NOT saved");
    // a restart that cannot save either says what state.json holds (the journal has the rest)
    const rev = JSON.parse(readFileSync(`${dir}/state.json`, "utf8")).rev as number;
    const b = await apiserver(dir);
    expect((await b.exited).code).toBe(1);
    expect(b.out.err).toContain(`it holds revision ${rev}, the later writes are only in the journal`);
    expect(b.out.err).not.toContain("never saved");
  }, 60_000);

  test("a serving certificate near its end is re-issued by the same CA: while serving, and at start", async () => {
    const dir = `${tmp}/certs`;
    // valid 12 s, renewed 6 s before its end; the kubeconfig written at start keeps trusting it
    const a = await apiserver(dir, "--cert-validity", "12", "--cert-renew-before", "6");
    const first = JSON.parse(readFileSync(`${dir}/certs.json`, "utf8"));
    const ca = kubeconfigCa(dir);
    const s1 = await servedSerial(a.port, ca);
    await waitFor("a renewed certificate is served", async () => (await servedSerial(a.port, ca)) !== s1, 20_000, 250);
    expect(a.out.text).toContain("re-issued by the same CA");
    expect(await a.api.request("GET", "/api/v1/namespaces/default")).toMatchObject({ metadata: { name: "default" } });
    a.p.kill("SIGTERM");
    expect(await a.p.exited).toBe(0);
    const renewed = JSON.parse(readFileSync(`${dir}/certs.json`, "utf8"));
    expect(renewed.ca).toBe(first.ca);
    expect(renewed.cert).not.toBe(first.cert);
    // restarted with a margin longer than what is left: re-issued at start, by the same CA
    const b = await apiserver(dir, "--cert-validity", "600", "--cert-renew-before", "300");
    expect(b.out.text).toContain("near its end: re-issued by the same CA");
    const atStart = JSON.parse(readFileSync(`${dir}/certs.json`, "utf8"));
    expect(atStart.ca).toBe(first.ca);
    expect(atStart.cert).not.toBe(renewed.cert);
    expect(await servedSerial(b.port, ca)).toBeString();
    b.p.kill("SIGTERM");
    expect(await b.p.exited).toBe(0);
  }, 90_000);
});
