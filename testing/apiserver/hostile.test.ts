// The test API server against hostile requests: paths whose dot segments or encoded slashes
// would route elsewhere, bodies of another kind than the path, names Kubernetes refuses,
// bodies too large or nested too deep, and a watch client that never reads.
import { afterAll, describe, expect, test } from "bun:test";
import { connect } from "node:tls";
import { TestApiServer } from "./server.ts";
import { MAX_BODY_BYTES, MAX_JSON_DEPTH } from "./body.ts";
import { waitFor } from "../../test/harness/index.ts";

const servers: TestApiServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
});
const start = (o: Partial<Parameters<typeof TestApiServer.start>[0]> = {}) => {
  const s = TestApiServer.start({ tokens: ["t"], ...o });
  servers.push(s);
  return s;
};

/** One request with its target sent byte for byte (fetch would resolve dot segments itself). */
function raw(s: TestApiServer, method: string, target: string, body = ""): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    let got = "";
    const sock = connect({ host: "127.0.0.1", port: s.port, ca: s.certs.ca, servername: "localhost" }, () => {
      sock.write(`${method} ${target} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    });
    sock.on("data", (d) => (got += d.toString()));
    sock.on("error", reject);
    sock.on("end", () => {
      const [head, ...rest] = got.split("\r\n\r\n");
      const text = rest.join("\r\n\r\n");
      const chunked = /transfer-encoding: chunked/i.test(head!);
      const payload = chunked ? text.replace(/(^|\r\n)[0-9a-f]+\r\n/g, "") : text;
      let parsed: unknown = payload;
      try {
        parsed = JSON.parse(payload);
      } catch {}
      resolve({ status: Number(head!.split(" ")[1]), body: parsed });
    });
  });
}

const api = async (s: TestApiServer, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
  const r = await fetch(s.url + path, { method, headers: { authorization: "Bearer t", "content-type": "application/json", ...headers }, body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body), tls: { ca: s.certs.ca } } as RequestInit);
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : undefined };
};

describe("paths", () => {
  const s = start();
  test.each([
    ["DELETE", "/api/v1/namespaces/default/services/%2e%2e"],
    ["DELETE", "/api/v1/namespaces/default/services/%2E%2e"],
    ["DELETE", "/api/v1/namespaces/default/services/.."],
    ["DELETE", "/api/v1/namespaces/kube-system/services/x/%2e%2e/%2e%2e/%2e%2e/default"],
    ["DELETE", "/api/v1/namespaces/kube-system/services/x/../../../default"],
    ["DELETE", "/api/v1/namespaces/default/services/x\\..\\..\\..\\..\\namespaces\\default"],
    ["DELETE", "/api/v1/x/x/x/x/x/x/x/../../../../../../../namespaces/default"],
    ["DELETE", "/api/v1/namespaces/default/services/a%2f..%2f..%2f..%2fnamespaces%2fdefault"],
    ["GET", "/api/v1/namespaces/%2e%2e/services"],
  ])("%s %s reaches no other object", async (method, target) => {
    const r = await raw(s, method, target);
    expect([400, 404]).toContain(r.status);
    expect(r.body).toMatchObject({ kind: "Status", status: "Failure" });
    expect((await api(s, "GET", "/api/v1/namespaces/default")).status).toBe(200);
  });

  test("a dot segment or a slash in a name is BadRequest naming it, as kube-apiserver's path check", async () => {
    expect(await raw(s, "GET", "/api/v1/namespaces/default/services/%2e%2e")).toMatchObject({ status: 400, body: { reason: "BadRequest", message: `Name parameter invalid: "..": may not be '..'` } });
    expect(await raw(s, "GET", "/api/v1/namespaces/default/services/a%2fb")).toMatchObject({ status: 400, body: { message: `Name parameter invalid: "a/b": may not contain '/'` } });
    expect(await raw(s, "GET", "/api/v1/namespaces/%2e/services/a")).toMatchObject({ status: 400, body: { message: `Namespace parameter invalid: ".": may not be '.'` } });
  });
});

describe("bodies", () => {
  const s = start();

  test("a Pod posted to /services is 400, never stored as a Service; a missing kind is taken from the path", async () => {
    const pod = await api(s, "POST", "/api/v1/namespaces/default/services", { kind: "Pod", apiVersion: "v1", metadata: { name: "p" } });
    expect(pod).toMatchObject({ status: 400, body: { reason: "BadRequest", message: expect.stringContaining("Pod in version \"v1\" cannot be handled as a Service") } });
    const v2 = await api(s, "POST", "/api/v1/namespaces/default/services", { kind: "Service", apiVersion: "networking.k8s.io/v1", metadata: { name: "p" } });
    expect(v2).toMatchObject({ status: 400, body: { message: "the API version in the data (networking.k8s.io/v1) does not match the expected API version (v1)" } });
    expect((await api(s, "GET", "/api/v1/namespaces/default/services/p")).status).toBe(404);
    const ok = await api(s, "POST", "/api/v1/namespaces/default/services", { metadata: { name: "p" }, spec: { ports: [{ port: 80 }] } });
    expect(ok).toMatchObject({ status: 201, body: { kind: "Service", apiVersion: "v1" } });
    const put = await api(s, "PUT", "/api/v1/namespaces/default/services/p", { kind: "Pod", apiVersion: "v1", metadata: { name: "p" } });
    expect(put.status).toBe(400);
    const patch = await api(s, "PATCH", "/api/v1/namespaces/default/services/p", { kind: "Pod" }, { "content-type": "application/merge-patch+json" });
    expect(patch.status).toBe(400);
  });

  test("names, generateName, namespaces and labels are validated per kind: 422 naming the field", async () => {
    const post = (plural: string, metadata: object, ns = "default") => api(s, "POST", plural === "namespaces" || plural === "nodes" ? `/api/v1/${plural}` : `/api/v1/namespaces/${ns}/${plural}`, { metadata });
    const svc = await post("services", { name: "1web" });
    expect(svc).toMatchObject({ status: 422, body: { reason: "Invalid", details: { kind: "Service", causes: [{ field: "metadata.name", reason: "FieldValueInvalid" }] } } });
    expect(svc.body.message).toStartWith(`Service "1web" is invalid: metadata.name: Invalid value: "1web": a DNS-1035 label must consist of`);
    expect((await post("pods", { name: "1web" })).status).toBe(201);
    expect((await post("pods", { name: "a.b" })).status).toBe(201);
    expect((await post("services", { name: "a.b" })).status).toBe(422);
    expect((await post("namespaces", { name: "a.b" })).body.message).toContain("a lowercase RFC 1123 label must consist of");
    expect((await post("nodes", { name: "node-1.example.com" })).status).toBe(201);
    expect((await post("pods", { name: "x".repeat(254) })).body.message).toContain("must be no more than 253 characters");
    expect((await post("services", { name: "x".repeat(64) })).body.message).toContain("must be no more than 63 characters");
    expect((await post("pods", { name: "Web" })).status).toBe(422);
    expect((await post("pods", { generateName: "Web-" })).body.details.causes.map((c: { field: string }) => c.field)).toContain("metadata.generateName");
    const gen = await post("pods", { generateName: "x".repeat(70) + "-" });
    expect(gen.status).toBe(201);
    expect(gen.body.metadata.name.length).toBe(63);
    const labels = await post("pods", { name: "l", labels: { "a/b/c": "x", ok: "bad value", "example.com/fine": "v" } });
    expect(labels.status).toBe(422);
    expect(labels.body.details.causes.map((c: { field: string }) => c.field)).toEqual(["metadata.labels", "metadata.labels"]);
    expect(labels.body.message).toContain(`metadata.labels: Invalid value: "bad value": a valid label must be an empty string`);
    expect((await post("pods", { name: "l", labels: { "example.com/app": "web", "app.kubernetes.io/name": "" } })).status).toBe(201);
    expect((await post("pods", { name: "n", namespace: "kube-system" })).body.message).toBe("the namespace of the provided object does not match the namespace sent on the request");
    // an update that would make a name valid elsewhere invalid here is refused too
    const upd = await api(s, "PUT", "/api/v1/namespaces/default/pods/l", { metadata: { name: "l", labels: { "-x": "y" } } });
    expect(upd.status).toBe(422);
  });

  test(`a body over ${MAX_BODY_BYTES} bytes is 413, also sent chunked without content-length`, async () => {
    const big = JSON.stringify({ metadata: { name: "big" }, data: { x: "y".repeat(MAX_BODY_BYTES) } });
    expect(await api(s, "POST", "/api/v1/namespaces/default/pods", big)).toMatchObject({ status: 413, body: { reason: "RequestEntityTooLarge", code: 413 } });
    // a stream of unknown length: the server must stop reading at the limit, not buffer it all
    let sent = 0;
    const chunk = new TextEncoder().encode("y".repeat(64 * 1024));
    const stream = new ReadableStream<Uint8Array>({
      start: (c) => c.enqueue(new TextEncoder().encode('{"metadata":{"name":"big"},"data":{"x":"')),
      pull: (c) => {
        // 64 MiB if the server kept reading: far past the limit
        if (sent > 64 * 1024 * 1024) return c.close();
        sent += chunk.byteLength;
        c.enqueue(chunk);
      },
    });
    const r = await fetch(s.url + "/api/v1/namespaces/default/pods", { method: "POST", headers: { authorization: "Bearer t", "content-type": "application/json" }, body: stream, tls: { ca: s.certs.ca } } as RequestInit);
    expect(r.status).toBe(413);
    expect(sent).toBeLessThan(32 * 1024 * 1024);
    expect((await api(s, "GET", "/api/v1/namespaces/default/pods/big")).status).toBe(404);
  });

  test(`JSON nested deeper than ${MAX_JSON_DEPTH} levels is 400, and lists and the rest keep working`, async () => {
    const nest = (n: number) => "[".repeat(n) + "]".repeat(n);
    const deep = `{"metadata":{"name":"deep"},"spec":${nest(100_000)}}`;
    expect(await api(s, "POST", "/api/v1/namespaces/default/services", deep)).toMatchObject({ status: 400, body: { reason: "BadRequest", message: expect.stringContaining(`nested deeper than ${MAX_JSON_DEPTH} levels`) } });
    await api(s, "POST", "/api/v1/namespaces/default/services", { metadata: { name: "shallow" }, spec: { ports: [{ port: 80 }] } });
    expect(await api(s, "PATCH", "/api/v1/namespaces/default/services/shallow", `{"spec":${nest(MAX_JSON_DEPTH + 1)}}`, { "content-type": "application/merge-patch+json" })).toMatchObject({ status: 400 });
    // patches that each stay under the limit cannot stack into an object over it
    const under = `{"spec":{"a":${nest(MAX_JSON_DEPTH - 3)}}}`;
    expect((await api(s, "PATCH", "/api/v1/namespaces/default/services/shallow", under, { "content-type": "application/merge-patch+json" })).status).toBe(200);
    const deeper = JSON.stringify([{ op: "add", path: "/spec/a" + "/0".repeat(MAX_JSON_DEPTH - 3), value: JSON.parse(nest(100)) }]);
    expect(await api(s, "PATCH", "/api/v1/namespaces/default/services/shallow", deeper, { "content-type": "application/json-patch+json" })).toMatchObject({ status: 422, body: { message: expect.stringContaining(`nested deeper than ${MAX_JSON_DEPTH} levels`) } });
    const list = await api(s, "GET", "/api/v1/services");
    expect(list.status).toBe(200);
    expect(list.body.items.map((o: { metadata: { name: string } }) => o.metadata.name)).toContain("shallow");
    expect((await api(s, "GET", "/api/v1/namespaces/default/services/deep")).status).toBe(404);
  });
});

describe("fields", () => {
  const s = start();

  test("a port written as 1e400 (no int32 once parsed) is 422 naming it, and nothing is stored", async () => {
    const r = await api(s, "POST", "/api/v1/namespaces/default/services", '{"metadata":{"name":"inf"},"spec":{"ports":[{"port":1e400}]}}');
    expect(r).toMatchObject({ status: 422, body: { reason: "Invalid", details: { causes: [{ field: "spec.ports[0].port" }] } } });
    expect((await api(s, "GET", "/api/v1/namespaces/default/services/inf")).status).toBe(404);
  });

  test("a patch cannot set system metadata: deletionTimestamp, uid and creationTimestamp keep the server's values", async () => {
    const made = (await api(s, "POST", "/api/v1/namespaces/default/services", { metadata: { name: "dts" }, spec: { ports: [{ port: 80 }] } })).body;
    const merge = { "content-type": "application/merge-patch+json" };
    const r = await api(s, "PATCH", "/api/v1/namespaces/default/services/dts", { metadata: { deletionTimestamp: "2020-01-01T00:00:00Z", deletionGracePeriodSeconds: 0, uid: "forged", creationTimestamp: "2000-01-01T00:00:00Z", labels: { a: "b" } } }, merge);
    expect(r.status).toBe(200);
    const g = (await api(s, "GET", "/api/v1/namespaces/default/services/dts")).body;
    expect(g.metadata.deletionTimestamp).toBeUndefined();
    expect(g.metadata.deletionGracePeriodSeconds).toBeUndefined();
    expect(g.metadata).toMatchObject({ uid: made.metadata.uid, creationTimestamp: made.metadata.creationTimestamp, labels: { a: "b" } });
  });
});

test("a port already served is refused, not shared (the listener sets reusePort for certificate renewal)", () => {
  const a = start();
  expect(() => start({ port: a.port })).toThrow(/cannot listen on 127.0.0.1:\d+: in use/);
});

describe("watch", () => {
  test("a client that never reads a watch cannot grow the server's memory: its stream ends past the backlog limit", async () => {
    const limit = 1024 * 1024;
    const s = start({ watchBacklogBytes: limit });
    const watchers = s.store.watcherCount();
    // a TLS client that sends a watch and then reads nothing
    const sock = connect({ host: "127.0.0.1", port: s.port, ca: s.certs.ca, servername: "localhost" }, () => {
      sock.write(`GET /api/v1/services?watch=true HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t\r\n\r\n`);
    });
    sock.pause();
    await waitFor("the watch is registered", () => s.store.watcherCount() === watchers + 1);
    // 64 MiB of events if none were dropped
    const pad = "x".repeat(60_000);
    const t = s.store.type("", "services")!;
    for (let i = 0; i < 1024; i++) {
      s.store.create(t, "default", { metadata: { name: `s${i}`, annotations: { pad } }, spec: { ports: [{ port: 80 }] } });
      if (i % 64 === 0) await Bun.sleep(0);
    }
    // what reaches the client is what the kernel's buffers held, then the end of the chunked
    // response (the connection itself may stay open for the next request)
    let received = 0;
    let tail = "";
    sock.on("data", (d: Buffer) => {
      received += d.length;
      tail = (tail + d.toString("latin1")).slice(-16);
    });
    sock.resume();
    await waitFor("the watch response ends", () => tail.endsWith("\r\n0\r\n\r\n"), 20_000);
    sock.destroy();
    expect(received).toBeLessThan(16 * 1024 * 1024);
    // the server held at most the limit (and the event that passed it), and holds nothing now
    expect(s.maxWatchBacklog).toBeLessThanOrEqual(limit + 70_000);
    expect(s.watchBacklog()).toBe(0);
    expect(s.store.watcherCount()).toBe(watchers);
  }, 60_000);

  test("many watches that never read are ended once all together queue past the server's limit; one that reads is not", async () => {
    const total = 8 * 1024 * 1024;
    const s = start({ watchBacklogTotalBytes: total });
    const watchers = s.store.watcherCount();
    // clients that send a watch and then read nothing; each alone stays under its own limit
    const stalled = Array.from({ length: 6 }, () => {
      const sock = connect({ host: "127.0.0.1", port: s.port, ca: s.certs.ca, servername: "localhost" }, () => {
        sock.write(`GET /api/v1/services?watch=true HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t\r\n\r\n`);
      });
      sock.pause();
      sock.on("error", () => {});
      return sock;
    });
    await waitFor("the stalled watches are registered", () => s.store.watcherCount() === watchers + stalled.length);
    const ctl = new AbortController();
    const r = await fetch(`${s.url}/api/v1/services?watch=true`, { headers: { authorization: "Bearer t" }, tls: { ca: s.certs.ca }, signal: ctl.signal } as RequestInit);
    expect(r.status).toBe(200);
    let seen = 0;
    let closed = false;
    void (async () => {
      let buf = "";
      for await (const c of r.body!.pipeThrough(new TextDecoderStream())) {
        buf += c;
        const lines = buf.split("\n");
        buf = lines.pop()!;
        seen += lines.filter((l) => l.startsWith('{"type":"ADDED"')).length;
      }
      closed = true;
    })().catch(() => (closed = true));
    await waitFor("the reading watch is registered", () => s.store.watcherCount() === watchers + stalled.length + 1);
    // 6 x 30 MB would be queued for the stalled ones if nothing were shed
    const pad = "x".repeat(60_000);
    const t = s.store.type("", "services")!;
    const n = 512;
    let most = 0;
    try {
      for (let i = 0; i < n; i++) {
        s.store.create(t, "default", { metadata: { name: `s${i}`, annotations: { pad } }, spec: { ports: [{ port: 80 }] } });
        most = Math.max(most, s.watchBacklog());
        if (i % 8 === 0) await waitFor("the reading watch keeps up", () => seen >= i - 8 || closed, 10_000);
      }
      await waitFor("the reading watch has every event", () => seen === n || closed, 20_000);
      expect(closed).toBe(false);
      expect(seen).toBe(n);
      expect(most).toBeLessThanOrEqual(total);
      // the stalled ones were ended: only the reading watch is left
      expect(s.store.watcherCount()).toBe(watchers + 1);
    } finally {
      stalled.forEach((sock) => sock.destroy());
      ctl.abort();
    }
  }, 60_000);
});
