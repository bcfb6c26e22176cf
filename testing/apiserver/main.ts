// `skein apiserver`: the test API server as a process of its own, for the e2e tests and the
// demo (a fixture: a real cluster has kube-apiserver). Its directory (made 0700 if missing)
// keeps what a restart needs: the CA with its key and the serving certificate (so clients
// keep trusting it), a kubeconfig, and the objects. The objects are saved shortly after every
// write (writes close together make one save), atomically (temporary file, fsync, rename), so
// a crash loses at most the last moments; a failed save is logged, turns /readyz to 500 and
// makes the exit status 1. A restarted server keeps the objects and the revision counter but
// no history: every earlier resourceVersion is then too old (410), as after an etcd compaction.
import { closeSync, existsSync, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { Store } from "./store.ts";
import { newStore, TestApiServer } from "./server.ts";
import { BUILTIN, type KubeObject } from "./resources.ts";
import { DEFAULT_VALIDITY_S, makeServingCerts, notAfter, renewCerts, type ServingCerts } from "./tls.ts";
import type { ServiceAllocatorOptions } from "./services.ts";

export interface ApiServerProcessOptions {
  dir: string;
  host: string;
  port: number;
  tokens: string[];
  unix?: string;
  bookmarkMs?: number;
  /** how long after a write the objects are saved (later writes in that time join the save) */
  saveDelayMs?: number;
  /** validity of a serving certificate it issues */
  certValiditySeconds?: number;
  /** a serving certificate with less validity left than this is re-issued (at start, and
   * while serving, before it ends) */
  certRenewBeforeSeconds?: number;
  watchBacklogBytes?: number;
  /** ClusterIP and NodePort ranges (defaults: 10.96.0.0/12, 30000-32767) */
  services?: Partial<ServiceAllocatorOptions>;
  log: (s: string) => void;
}

interface Saved {
  rev: number;
  objects: Array<{ group: string; plural: string; object: KubeObject }>;
}

/** Writes `file` so that it is either the old or the new content, even after a crash. */
export function writeAtomic(file: string, data: string, mode = 0o600): void {
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, "w", mode);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  const d = openSync(dirname(file), "r");
  try {
    fsyncSync(d);
  } finally {
    closeSync(d);
  }
}

function readCerts(file: string): ServingCerts {
  let c: Partial<ServingCerts>;
  try {
    c = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new Error(`${file}: not saved API server certificates (kept as it is; move it away to make new ones): ${(e as Error).message}`);
  }
  for (const k of ["ca", "cert", "key"] as const) if (typeof c[k] !== "string") throw new Error(`${file}: not saved API server certificates: "${k}" is missing (kept as it is; move it away to make new ones)`);
  try {
    notAfter(c.cert!);
  } catch (e) {
    throw new Error(`${file}: "cert" is not a PEM certificate: ${(e as Error).message}`);
  }
  return c as ServingCerts;
}

function readState(file: string): Store {
  const bad = (why: string) => new Error(`${file}: not a saved API server state (kept as it is; move it away to start empty): ${why}`);
  let saved: Saved;
  try {
    saved = JSON.parse(readFileSync(file, "utf8")) as Saved;
  } catch (e) {
    throw bad((e as Error).message);
  }
  if (!saved || typeof saved !== "object" || !Number.isSafeInteger(saved.rev) || saved.rev < 1 || !Array.isArray(saved.objects)) throw bad("no revision and object list");
  const byKey = new Map(BUILTIN.map((t) => [`${t.group}/${t.plural}`, t]));
  return new Store(BUILTIN, undefined, {
    rev: saved.rev,
    objects: saved.objects.map((x, i) => {
      const type = byKey.get(`${x?.group}/${x?.plural}`);
      if (!type) throw bad(`object ${i}: unknown resource ${x?.group}/${x?.plural}`);
      if (typeof x.object?.metadata?.name !== "string") throw bad(`object ${i}: no metadata.name`);
      return { type, object: x.object };
    }),
  });
}

export async function runApiServer(o: ApiServerProcessOptions): Promise<number> {
  mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  const certsFile = `${o.dir}/certs.json`;
  const stateFile = `${o.dir}/state.json`;
  const lifetimes = { validitySeconds: o.certValiditySeconds ?? DEFAULT_VALIDITY_S };
  const renewBefore = o.certRenewBeforeSeconds ?? lifetimes.validitySeconds / 3;
  if (renewBefore >= lifetimes.validitySeconds) throw new Error(`the renewal margin (${renewBefore} s) must be shorter than the certificates' validity (${lifetimes.validitySeconds} s)`);
  let certs: ServingCerts;
  if (existsSync(certsFile)) {
    const r = renewCerts(readCerts(certsFile), [o.host], renewBefore, lifetimes);
    certs = r.certs;
    if (r.renewed !== "no") writeAtomic(certsFile, JSON.stringify(certs));
    if (r.renewed === "cert") o.log(`TLS certificate was near its end: re-issued by the same CA\n`);
    if (r.renewed === "ca") o.log(`TLS certificate was near its end and its CA cannot sign another: NEW CA, clients need the new kubeconfig\n`);
  } else {
    certs = makeServingCerts([o.host], lifetimes);
    writeAtomic(certsFile, JSON.stringify(certs));
  }
  const store = existsSync(stateFile) ? readState(stateFile) : newStore();

  let saveError: string | undefined;
  let savedRev = -1;
  let lastSaveMs = 0;
  const save = () => {
    if (store.rev === savedRev) return;
    const t0 = performance.now();
    const snap = store.snapshot();
    const saved: Saved = { rev: snap.rev, objects: snap.objects.map(({ type, object }) => ({ group: type.group, plural: type.plural, object })) };
    try {
      writeAtomic(stateFile, JSON.stringify(saved));
      savedRev = snap.rev;
      lastSaveMs = performance.now() - t0;
      if (saveError) o.log(`saved ${stateFile} again (revision ${snap.rev})\n`);
      saveError = undefined;
    } catch (e) {
      saveError = `saving ${stateFile} failed: ${(e as Error).message}`;
      process.stderr.write(`skein apiserver: ERROR: ${saveError}; the objects since revision ${savedRev} are only in memory\n`);
    }
  };
  let pending: ReturnType<typeof setTimeout> | undefined;
  // a big store under steady writes spends at most a fifth of its time saving
  const schedule = () => {
    pending ??= setTimeout(
      () => {
        pending = undefined;
        save();
      },
      Math.max(o.saveDelayMs ?? 200, 4 * lastSaveMs),
    );
  };
  const stops = store.allTypes().map((t) => store.watch(t, { from: store.rev }, schedule));

  // a socket file left by a killed server would make the listen fail
  if (o.unix && existsSync(o.unix) && lstatSync(o.unix).isSocket()) unlinkSync(o.unix);
  const server = TestApiServer.start({ tokens: o.tokens, hostname: o.host, port: o.port, certs, store, unix: o.unix, bookmarkMs: o.bookmarkMs, watchBacklogBytes: o.watchBacklogBytes, notReady: () => saveError, services: o.services });
  // as kube-apiserver's repair loop, a Service holding what it may not is reported, not changed
  for (const p of server.allocationProblems) o.log(`warning: ${p}\n`);
  const kubeconfig = () => writeAtomic(`${o.dir}/kubeconfig`, server.kubeconfig());
  kubeconfig();

  // re-issue the serving certificate `renewBefore` ahead of its end, while serving
  let renewal: ReturnType<typeof setTimeout> | undefined;
  const planRenewal = () => {
    const due = notAfter(server.certs.cert) - renewBefore * 1000 - Date.now();
    renewal = setTimeout(
      () => {
        try {
          const r = renewCerts(server.certs, [o.host], renewBefore, lifetimes);
          if (r.renewed !== "no") {
            writeAtomic(certsFile, JSON.stringify(r.certs));
            server.setCerts(r.certs);
            kubeconfig();
            o.log(r.renewed === "cert" ? `TLS certificate re-issued by the same CA, valid until ${new Date(notAfter(r.certs.cert)).toISOString()}\n` : `TLS certificate and NEW CA issued: clients need the new kubeconfig\n`);
          }
        } catch (e) {
          process.stderr.write(`skein apiserver: ERROR: renewing the serving certificate failed: ${(e as Error).message}\n`);
        }
        planRenewal();
      },
      // setTimeout takes at most 2^31-1 ms; a later date is planned again then
      Math.min(Math.max(due, 1000), 2 ** 31 - 1),
    );
  };
  planRenewal();

  o.log(`serving ${server.url} (revision ${store.rev}); kubeconfig ${o.dir}/kubeconfig\n`);
  const signal = await new Promise<string>((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
  });
  clearTimeout(renewal);
  clearTimeout(pending);
  await server.stop();
  stops.forEach((s) => s());
  save();
  if (saveError) {
    o.log(`${signal}: NOT saved: ${saveError}\n`);
    return 1;
  }
  o.log(`${signal}: saved ${store.snapshot().objects.length} objects at revision ${store.rev}\n`);
  return 0;
}
