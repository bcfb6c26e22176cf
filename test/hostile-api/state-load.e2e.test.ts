// What skein apiserver loads from --dir is checked as strictly as what it is sent: a saved object
// with a name no request could create, a resourceVersion above the saved revision, or a key that
// does not match its certificate is refused at start with the file named, and the file is kept.
import { afterAll, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { SKEIN } from "../harness/index.ts";
import { TOKEN, drain, freePort, removeDir, skhaDir, startApi } from "./lib.ts";

const dirs: string[] = [];
afterAll(() => dirs.forEach(removeDir));

/** A --dir holding what one clean run saved (state.json, certs.json). */
async function savedDir(tag: string): Promise<string> {
  const d = skhaDir(tag);
  dirs.push(d);
  const api = await startApi(d);
  expect((await api.req("POST", "/api/v1/namespaces/default/services", { apiVersion: "v1", kind: "Service", metadata: { name: "skha-a" }, spec: { ports: [{ port: 80 }] } })).status).toBe(201);
  await api.stop();
  return d;
}

async function runOnce(d: string): Promise<{ code: number | null; text: string }> {
  const p = Bun.spawn([SKEIN, "apiserver", "--dir", d, "--listen", `127.0.0.1:${freePort()}`, "--token", TOKEN], { stdout: "pipe", stderr: "pipe" });
  let text = "";
  drain(p.stdout, (t) => (text += t));
  drain(p.stderr, (t) => (text += t));
  const deadline = Date.now() + 10_000;
  while (p.exitCode === null && !text.includes("serving") && Date.now() < deadline) await Bun.sleep(50);
  if (p.exitCode === null) {
    p.kill("SIGTERM");
    await p.exited;
  }
  return { code: text.includes("serving") ? null : p.exitCode, text };
}

test("state.json holding a Service named ../x is refused, naming the file", async () => {
  const d = await savedDir("stname");
  const s = JSON.parse(readFileSync(`${d}/state.json`, "utf8"));
  s.objects.push({ group: "", plural: "services", object: { apiVersion: "v1", kind: "Service", metadata: { name: "../x", namespace: "default", resourceVersion: "1" }, spec: { ports: [{ port: 80 }] } } });
  writeFileSync(`${d}/state.json`, JSON.stringify(s));
  const r = await runOnce(d);
  // observed: it starts and serves "../x"
  expect(r.code).not.toBeNull();
  expect(r.text).toContain("state.json");
}, 60_000);

test("state.json whose revision is below its objects' resourceVersions is refused (else resourceVersions repeat)", async () => {
  const d = await savedDir("strev");
  const s = JSON.parse(readFileSync(`${d}/state.json`, "utf8"));
  s.rev = 1;
  writeFileSync(`${d}/state.json`, JSON.stringify(s));
  const r = await runOnce(d);
  expect(r.code).not.toBeNull();
  expect(r.text).toContain("state.json");
}, 60_000);

test("certs.json whose key is not the certificate's names certs.json in the error", async () => {
  const d = await savedDir("stkey");
  const c = JSON.parse(readFileSync(`${d}/certs.json`, "utf8"));
  c.key = c.caKey;
  writeFileSync(`${d}/certs.json`, JSON.stringify(c));
  const r = await runOnce(d);
  expect(r.code).not.toBeNull();
  // observed: "skein: error:0b000074:X.509 certificate routines:OPENSSL_internal:KEY_VALUES_MISMATCH"
  expect(r.text).toContain("certs.json");
}, 60_000);
