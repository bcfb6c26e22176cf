// `skein apiserver` (the built binary) and what it keeps: an acknowledged write survives kill -9
// (the journal), a full --dir leaves state.json whole and is reported, what it loads from --dir
// is checked as a write would be, the watch history is bounded in bytes and a resumed watch
// gets its events or 410, and bad flags are named.
import { afterAll, expect, test } from "bun:test";
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { SKEIN, waitFor, freePort } from "./harness/index.ts";
import { runAsync } from "../agent/sys/exec.ts";

const TOKEN = "skap-token";
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function tmp(tag: string): string {
  const d = mkdtempSync(`${tmpdir()}/skap-${tag}-`);
  dirs.push(d);
  return d;
}

/** Feeds a child's output, as text, to `sink` until it ends. */
function drain(s: ReadableStream<Uint8Array>, sink: (text: string) => void): void {
  void (async () => {
    const dec = new TextDecoder();
    for await (const c of s) sink(dec.decode(c, { stream: true }));
  })();
}

const api = (port: number) => async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
  const r = await fetch(`https://127.0.0.1:${port}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
    tls: { rejectUnauthorized: false },
  } as RequestInit);
  const text = await r.text();
  return { status: r.status, text, json: () => JSON.parse(text) };
};

/** Runs `argv` (a skein apiserver command line) until it serves or exits. */
async function spawn(argv: string[], port: number) {
  const proc = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe" });
  let out = "";
  drain(proc.stdout, (t) => (out += t));
  drain(proc.stderr, (t) => (out += t));
  await waitFor("skein apiserver serving or exited", () => out.includes("serving") || proc.exitCode !== null, 15_000);
  return {
    proc,
    port,
    out: () => out,
    req: api(port),
    serving: out.includes("serving"),
    stop: async (signal: NodeJS.Signals = "SIGTERM") => {
      if (proc.exitCode === null) proc.kill(signal);
      return proc.exited;
    },
  };
}

const startApi = (dir: string, port = freePort(), extra: string[] = []) => spawn([SKEIN, "apiserver", "--dir", dir, "--listen", `127.0.0.1:${port}`, "--token", TOKEN, ...extra], port);
const cm = (name: string, a = "x") => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name }, data: { a } });
const merge = { "content-type": "application/merge-patch+json" };

test("50 acknowledged creates, then SIGKILL: all 50 are there after a restart; a torn journal tail is dropped, other damage refused", async () => {
  const dir = tmp("dur");
  let a = await startApi(dir);
  const rs = await Promise.all(Array.from({ length: 50 }, (_, i) => a.req("POST", "/api/v1/namespaces/default/configmaps", cm(`skap-d${i}`))));
  expect(rs.map((r) => r.status)).toEqual(Array(50).fill(201));
  a.proc.kill("SIGKILL");
  await a.proc.exited;
  // a write cut short by the crash: never answered, so dropped
  appendFileSync(`${dir}/journal.jsonl`, '{"rev":99999,"group":"","plur');
  a = await startApi(dir, a.port);
  const names = (await a.req("GET", "/api/v1/namespaces/default/configmaps")).json().items.map((c: any) => c.metadata.name);
  expect(names.filter((n: string) => n.startsWith("skap-d")).length).toBe(50);
  expect(a.out()).toContain("journal.jsonl: dropped its last line");
  // written again at start: the dropped tail is gone, and the next line starts a line of its own
  expect((await a.req("POST", "/api/v1/namespaces/default/configmaps", cm("skap-after"))).status).toBe(201);
  a.proc.kill("SIGKILL");
  await a.proc.exited;
  const lines = readFileSync(`${dir}/journal.jsonl`, "utf8").split("\n");
  expect(lines.length).toBe(2);
  expect(JSON.parse(lines[0]!).object.metadata.name).toBe("skap-after");

  // a complete line that does not read is damage, not a crash: refused, naming the file
  writeFileSync(`${dir}/journal.jsonl`, `{"rev": 1\n${lines[0]}\n`);
  const b = await startApi(dir, a.port);
  expect(b.serving).toBe(false);
  expect(await b.proc.exited).not.toBe(0);
  expect(b.out()).toContain("journal.jsonl: line 1");
}, 60_000);

test("a full disk under --dir: writes are answered 201 only once on disk, state.json stays whole, and the failed save is reported", async () => {
  // a small tmpfs in a mount namespace of the server alone, read through /proc/<pid>/root
  const dir = tmp("full");
  const port = freePort();
  const a = await spawn(["unshare", "-m", "sh", "-c", `mount -t tmpfs -o size=300k tmpfs ${dir} && exec ${SKEIN} apiserver --dir ${dir} --listen 127.0.0.1:${port} --token ${TOKEN}`], port);
  expect(a.serving).toBe(true);
  const state = `/proc/${a.proc.pid}/root${dir}/state.json`;
  const saved = () => JSON.parse(readFileSync(state, "utf8")).objects.map((o: any) => o.object.metadata.name) as string[];
  const acked: string[] = [];
  for (let i = 0; i < 3; i++) {
    const name = `skap-f${i}`;
    const r = await a.req("POST", "/api/v1/namespaces/default/configmaps", cm(name, "x".repeat(100_000)));
    // the journal line of a write that cannot be kept fails it (500); it is not in memory either
    expect([201, 500]).toContain(r.status);
    if (r.status === 201) acked.push(name);
    else expect((await a.req("GET", `/api/v1/namespaces/default/configmaps/${name}`)).status).toBe(404);
    // the first write's save fits; then state.json and the journal together fill the disk
    if (i === 0) await waitFor("the first save", () => existsSync(state) && saved().includes(name), 10_000);
  }
  expect(acked.length).toBeGreaterThanOrEqual(2);
  const ready = await waitFor("the failed save reported by /readyz", async () => ((await a.req("GET", "/readyz")).status === 500 ? true : undefined), 10_000);
  expect(ready).toBe(true);
  expect(a.out()).toMatch(/ERROR: saving .*state\.json failed: .*(ENOSPC|no space|short write)/i);
  expect(a.out()).not.toContain("revision -1");
  // the old state.json is whole: the first write is in it
  expect(saved()).toContain("skap-f0");
  expect(await a.stop()).toBe(1);
  expect(a.out()).toContain("SIGTERM: NOT saved");
}, 60_000);

/** Reads a watch response until its first line, its end or `ms`; returns what came. */
async function firstLine(port: number, path: string, ms: number): Promise<string> {
  const res = await fetch(`https://127.0.0.1:${port}${path}`, { headers: { authorization: `Bearer ${TOKEN}` }, tls: { rejectUnauthorized: false } } as RequestInit);
  expect(res.status).toBe(200);
  const rd = res.body!.getReader();
  let s = "";
  const deadline = Date.now() + ms;
  while (!s.includes("\n") && Date.now() < deadline) {
    const x = await Promise.race([rd.read(), Bun.sleep(deadline - Date.now()).then(() => undefined)]);
    if (!x || x.done) break;
    s += new TextDecoder().decode(x.value);
  }
  await rd.cancel().catch(() => {});
  return s.split("\n")[0]!;
}

const rssKiB = (pid: number) => Number(readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)![1]);

test("watch history: a resume past 40 one-megabyte updates gets 410, not an empty 200; 250 two-megabyte updates keep RSS bounded", async () => {
  const a = await startApi(tmp("whist"));
  try {
    const c = await a.req("POST", "/api/v1/namespaces/default/configmaps", cm("skap-big"));
    expect(c.status).toBe(201);
    const rv0 = c.json().metadata.resourceVersion;
    for (let i = 0; i < 40; i++) {
      expect((await a.req("PATCH", "/api/v1/namespaces/default/configmaps/skap-big", { data: { a: String.fromCharCode(97 + (i % 26)).repeat(1_000_000) } }, merge)).status).toBe(200);
    }
    // 40 MB of events exceed what one watch may queue (32 MiB): an empty stream would have an
    // informer watch again from the same resourceVersion forever; 410 has it list again
    const first = await firstLine(a.port, `/api/v1/configmaps?watch=1&resourceVersion=${rv0}`, 10_000);
    expect(first.length).toBeGreaterThan(0);
    const ev = JSON.parse(first);
    if (ev.type === "ERROR") expect(ev.object.code).toBe(410);
    else expect(ev.object.metadata.resourceVersion).toBe(String(Number(rv0) + 1));

    expect((await a.req("POST", "/api/v1/namespaces/default/configmaps", cm("skap-churn"))).status).toBe(201);
    const before = rssKiB(a.proc.pid);
    for (let i = 0; i < 250; i++) {
      expect((await a.req("PATCH", "/api/v1/namespaces/default/configmaps/skap-churn", { data: { a: String.fromCharCode(97 + (i % 26)).repeat(2_000_000) } }, merge)).status).toBe(200);
    }
    // the history of 250 copies (500 MB) is cut to --watch-history-bytes (64 MiB)
    const grown = rssKiB(a.proc.pid) - before;
    console.log(`RSS grew by ${Math.round(grown / 1024)} MiB over 250 two-megabyte updates`);
    expect(grown).toBeLessThan(256 * 1024);
    // and a resume from before them is 410, as after a compaction
    const gone = JSON.parse(await firstLine(a.port, `/api/v1/configmaps?watch=1&resourceVersion=${rv0}`, 10_000));
    expect(gone.type).toBe("ERROR");
    expect(gone.object.code).toBe(410);
  } finally {
    await a.stop();
  }
}, 300_000);

/** A --dir holding what one clean run saved (state.json, certs.json, an empty journal). */
async function savedDir(tag: string): Promise<string> {
  const d = tmp(tag);
  const a = await startApi(d);
  expect((await a.req("POST", "/api/v1/namespaces/default/services", { apiVersion: "v1", kind: "Service", metadata: { name: "skap-a" }, spec: { ports: [{ port: 80 }] } })).status).toBe(201);
  expect(await a.stop()).toBe(0);
  return d;
}

/** Starts the server on `d` expecting a refusal: its exit status and output. */
async function refused(d: string): Promise<string> {
  const a = await startApi(d);
  if (a.serving) await a.stop();
  expect(a.serving).toBe(false);
  expect(await a.proc.exited).not.toBe(0);
  return a.out();
}

test.each([
  ["a Service named ../x", (s: any) => s.objects.push({ group: "", plural: "services", object: { apiVersion: "v1", kind: "Service", metadata: { name: "../x", namespace: "default", resourceVersion: "1" }, spec: { ports: [{ port: 80 }] } } }), /state\.json: .*object \d+ \(services default\/\.\.\/x\)/],
  ["a revision below its objects' resourceVersions", (s: any) => (s.rev = 1), /state\.json: .*resourceVersion "\d+" is not a revision up to the saved one \(1\)/],
  ["an object saved twice", (s: any) => s.objects.push(s.objects[0]), /state\.json: .*saved twice/],
  // ValidateService is services.ts's, not validateObject's: checked at load too
  ["a Service with port 999999", (s: any) => (s.objects.find((o: any) => o.object.metadata.name === "skap-a").object.spec.ports[0].port = 999999), /state\.json: .*object \d+ \(services default\/skap-a\): Service "skap-a" is invalid: spec\.ports\[0\]\.port: Invalid value: 999999/],
  ["a Service whose status.loadBalancer is a string", (s: any) => (s.objects.find((o: any) => o.object.metadata.name === "skap-a").object.status = { loadBalancer: "zzz" }), /state\.json: .*\(services default\/skap-a\): .*status\.loadBalancer/],
])("state.json holding %s is refused, naming the file and object, and kept", async (_, edit, why) => {
  const d = await savedDir("st");
  const s = JSON.parse(readFileSync(`${d}/state.json`, "utf8"));
  edit(s);
  writeFileSync(`${d}/state.json`, JSON.stringify(s));
  expect(await refused(d)).toMatch(why);
  expect(JSON.parse(readFileSync(`${d}/state.json`, "utf8"))).toEqual(s);
}, 60_000);

test("a journal line the server would refuse as a write (Service port 999999) is refused at start, naming the file, object and field, and kept", async () => {
  const d = await savedDir("jv");
  const rev = JSON.parse(readFileSync(`${d}/state.json`, "utf8")).rev as number;
  const svc = {
    apiVersion: "v1", kind: "Service",
    metadata: { name: "skap-bad", namespace: "default", resourceVersion: String(rev + 1), uid: "skap-u1" },
    spec: { type: "ClusterIP", ports: [{ port: 999999, protocol: "TCP" }], clusterIP: "10.96.0.50", clusterIPs: ["10.96.0.50"] },
  };
  appendFileSync(`${d}/journal.jsonl`, JSON.stringify({ rev: rev + 1, group: "", plural: "services", object: svc }) + "\n");
  const before = readFileSync(`${d}/journal.jsonl`, "utf8");
  expect(await refused(d)).toMatch(/journal\.jsonl: .*line 1 \(services default\/skap-bad\): .*spec\.ports\[0\]\.port: Invalid value: 999999/);
  expect(readFileSync(`${d}/journal.jsonl`, "utf8")).toBe(before);
}, 60_000);

test.each([
  ["a key that is not the certificate's", (c: any) => (c.key = c.caKey), /certs\.json: "key" is not the key of "cert"/],
  ["a ca that is not PEM", (c: any) => (c.ca = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), /certs\.json: "ca" is not a PEM certificate/],
])("certs.json with %s is refused, naming the file", async (_, edit, why) => {
  const d = await savedDir("ck");
  const c = JSON.parse(readFileSync(`${d}/certs.json`, "utf8"));
  edit(c);
  writeFileSync(`${d}/certs.json`, JSON.stringify(c));
  expect(await refused(d)).toMatch(why);
}, 60_000);

test("--listen with a port out of range, and --dir that is a file, are named", async () => {
  const d = tmp("flags");
  const { stdout: out, stderr: err, exitCode: code } = await runAsync([SKEIN, "apiserver", "--dir", d, "--listen", "127.0.0.1:99999", "--token", TOKEN], { allowFail: true });
  expect(code).toBe(2);
  expect(out + err).toContain("--listen");
  expect(out + err).toContain("99999");
  writeFileSync(`${d}/file`, "");
  const { stdout: out2, stderr: err2, exitCode: code2 } = await runAsync([SKEIN, "apiserver", "--dir", `${d}/file`, "--listen", `127.0.0.1:${freePort()}`, "--token", TOKEN], { allowFail: true });
  expect(code2).not.toBe(0);
  expect(out2 + err2).toContain(`--dir ${d}/file: not a directory`);
}, 30_000);
