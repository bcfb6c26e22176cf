// skein apiserver whose --dir fills up: the saved state must stay whole (atomic save) and the
// failure must be reported (log or /readyz), never a truncated state.json with "saved" printed.
// The small filesystem is a tmpfs in a private mount namespace of the server alone; the test
// reads it through /proc/<pid>/root.
import { afterAll, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { SKEIN, waitFor } from "../harness/index.ts";
import { TOKEN, drain, freePort, removeDir, skhaDir } from "./lib.ts";

const dir = skhaDir("full");
afterAll(() => removeDir(dir));

test("a full disk under --dir leaves state.json whole and is reported", async () => {
  const port = freePort();
  const proc = Bun.spawn(["unshare", "-m", "sh", "-c", `mount -t tmpfs -o size=300k tmpfs ${dir} && exec ${SKEIN} apiserver --dir ${dir} --listen 127.0.0.1:${port} --token ${TOKEN}`], { stdout: "pipe", stderr: "pipe" });
  let out = "";
  drain(proc.stdout, (t) => (out += t));
  drain(proc.stderr, (t) => (out += t));
  try {
    await waitFor("serving", () => out.includes("serving"), 15_000);
    const api = (method: string, path: string, body?: unknown) =>
      fetch(`https://127.0.0.1:${port}${path}`, { method, headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" }, body: body && JSON.stringify(body), tls: { rejectUnauthorized: false } } as RequestInit);
    for (let i = 0; i < 3; i++) {
      const r = await api("POST", "/api/v1/namespaces/default/configmaps", { apiVersion: "v1", kind: "ConfigMap", metadata: { name: `skha-f${i}` }, data: { a: "x".repeat(150_000) } });
      expect(r.status).toBe(201);
    }
    const state = `/proc/${proc.pid}/root${dir}/state.json`;
    // the state cannot hold all three: wait until the server has tried to save (the file exists
    // and it had time to save the later writes) and then look at what it says and left behind
    await waitFor("a save attempt", () => existsSync(state), 10_000);
    const reported = await waitFor(
      "the failed save reported in the log or /readyz",
      async () => {
        const ready = await api("GET", "/readyz");
        await ready.text();
        return /error|fail|no space|ENOSPC/i.test(out) || ready.status !== 200;
      },
      10_000,
    ).catch((e) => e as Error);
    let whole = true;
    try {
      JSON.parse(readFileSync(state, "utf8"));
    } catch {
      whole = false;
    }
    expect(whole).toBe(true);
    expect(reported).toBe(true);
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
}, 60_000);
