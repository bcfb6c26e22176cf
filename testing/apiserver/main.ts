// `skein apiserver`: the test API server as a process of its own, for the e2e tests and the
// demo (a fixture: a real cluster has kube-apiserver). Its directory keeps what a restart
// needs: the CA and serving certificate (so clients keep trusting it), a kubeconfig, and the
// objects, written on SIGTERM and read at start. A restarted server keeps the objects and
// the revision counter but no history: every earlier resourceVersion is then too old (410),
// as after an etcd compaction.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { Store } from "./store.ts";
import { newStore, TestApiServer } from "./server.ts";
import { BUILTIN, type KubeObject } from "./resources.ts";
import type { ServingCerts } from "./tls.ts";
import type { ServiceAllocatorOptions } from "./services.ts";
import { makeServingCerts } from "./tls.ts";

export interface ApiServerProcessOptions {
  dir: string;
  host: string;
  port: number;
  tokens: string[];
  unix?: string;
  bookmarkMs?: number;
  /** ClusterIP and NodePort ranges (defaults: 10.96.0.0/12, 30000-32767) */
  services?: Partial<ServiceAllocatorOptions>;
  log: (s: string) => void;
}

interface Saved {
  rev: number;
  objects: Array<{ group: string; plural: string; object: KubeObject }>;
}

export async function runApiServer(o: ApiServerProcessOptions): Promise<number> {
  const certsFile = `${o.dir}/certs.json`;
  const stateFile = `${o.dir}/state.json`;
  let certs: ServingCerts;
  if (existsSync(certsFile)) certs = JSON.parse(readFileSync(certsFile, "utf8")) as ServingCerts;
  else {
    certs = makeServingCerts([o.host]);
    writeFileSync(certsFile, JSON.stringify(certs), { mode: 0o600 });
  }
  let store: Store;
  if (existsSync(stateFile)) {
    let saved: Saved;
    try {
      saved = JSON.parse(readFileSync(stateFile, "utf8")) as Saved;
    } catch (e) {
      throw new Error(`${stateFile}: not a saved API server state: ${(e as Error).message}`);
    }
    const byKey = new Map(BUILTIN.map((t) => [`${t.group}/${t.plural}`, t]));
    store = new Store(BUILTIN, undefined, {
      rev: saved.rev,
      objects: saved.objects.map((x) => {
        const type = byKey.get(`${x.group}/${x.plural}`);
        if (!type) throw new Error(`${stateFile}: unknown resource ${x.group}/${x.plural}`);
        return { type, object: x.object };
      }),
    });
  } else store = newStore();
  const server = TestApiServer.start({ tokens: o.tokens, hostname: o.host, port: o.port, certs, store, unix: o.unix, bookmarkMs: o.bookmarkMs, services: o.services });
  // as kube-apiserver's repair loop, a Service holding what it may not is reported, not changed
  for (const p of server.allocationProblems) o.log(`warning: ${p}\n`);
  writeFileSync(`${o.dir}/kubeconfig`, server.kubeconfig(), { mode: 0o600 });
  o.log(`serving ${server.url} (revision ${store.rev}); kubeconfig ${o.dir}/kubeconfig\n`);
  const signal = await new Promise<string>((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
  });
  await server.stop();
  const snap = store.snapshot();
  const saved: Saved = { rev: snap.rev, objects: snap.objects.map(({ type, object }) => ({ group: type.group, plural: type.plural, object })) };
  writeFileSync(`${stateFile}.tmp`, JSON.stringify(saved));
  const { renameSync } = await import("node:fs");
  renameSync(`${stateFile}.tmp`, stateFile);
  o.log(`${signal}: saved ${saved.objects.length} objects at revision ${saved.rev}\n`);
  return 0;
}
