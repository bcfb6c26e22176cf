// `skein apiserver`: the test API server as a process of its own, for the e2e tests and the
// demo (a fixture: a real cluster has kube-apiserver). Its directory (made 0700 if missing)
// keeps what a restart needs: the CA with its key and the serving certificate (so clients
// keep trusting it), a kubeconfig, and the objects. Every write is appended to a journal and
// flushed to disk before it is answered (journal.ts), so an acknowledged write survives a
// crash; the objects are saved shortly after a write (writes close together make one save),
// atomically (temporary file, fsync, rename), and the journal is then emptied. A failed save
// is logged, turns /readyz to 500 and makes the exit status 1; a failed journal append fails
// the write (500). What it loads is checked as a write would be, naming the file. A
// restarted server keeps the objects and the revision counter but no history: every earlier
// resourceVersion is then too old (410), as after an etcd compaction.
import { X509Certificate, createPrivateKey } from "node:crypto";
import { closeSync, existsSync, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import { ApiError, Store, typeKey } from "./store.ts";
import { newStore, TestApiServer } from "./server.ts";
import { BUILTIN, type KubeObject, type ResourceType } from "./resources.ts";
import { DEFAULT_VALIDITY_S, makeServingCerts, notAfter, renewCerts, type ServingCerts } from "./tls.ts";
import { validateStoredService, type ServiceAllocatorOptions } from "./services.ts";
import { checkTypeMeta, invalid, validateObject } from "./validate.ts";
import { crdErrors, isCrdType, storedTypeOf } from "./crd.ts";
import { Journal, readJournal, writeAll, type JournalEntry } from "./journal.ts";

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
  /** the most bytes of objects the watch history keeps (older resourceVersions then get 410) */
  watchHistoryBytes?: number;
  /** the journal's size past which a write first saves the snapshot (and empties it) */
  journalMaxBytes?: number;
  /** seconds an Event is kept after its last write (default an hour; 0: for ever) */
  eventTtlSeconds?: number;
  /** ClusterIP and NodePort ranges (defaults: 10.96.0.0/12, 30000-32767) */
  services?: Partial<ServiceAllocatorOptions>;
  log: (s: string) => void;
}

interface Saved {
  rev: number;
  objects: Array<{ group: string; plural: string; object: KubeObject }>;
}

/** Writes `file` so that it is either the old or the new content, even after a crash; on any
 * failure (a full disk too) the old content stays and the temporary file is removed. */
export function writeAtomic(file: string, data: string, mode = 0o600): void {
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, "w", mode);
  try {
    writeAll(fd, Buffer.from(data));
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {}
    throw e;
  }
  closeSync(fd);
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
  const check = (what: string, f: () => unknown) => {
    try {
      f();
    } catch (e) {
      throw new Error(`${file}: ${what}: ${(e as Error).message} (kept as it is; move it away to make new ones)`);
    }
  };
  check(`"cert" is not a PEM certificate`, () => notAfter(c.cert!));
  check(`"ca" is not a PEM certificate`, () => notAfter(c.ca!));
  check(`"key" is not a PEM private key`, () => createPrivateKey(c.key!));
  check(`"key" is not the key of "cert"`, () => {
    if (!new X509Certificate(c.cert!).checkPrivateKey(createPrivateKey(c.key!))) throw new Error("they do not match");
  });
  check(`"cert" is not issued by "ca"`, () => {
    if (!new X509Certificate(c.cert!).verify(new X509Certificate(c.ca!).publicKey)) throw new Error("its signature does not verify with the CA's key");
  });
  if (c.caKey !== undefined) {
    check(`"caKey" is not the key of "ca"`, () => {
      if (typeof c.caKey !== "string" || !new X509Certificate(c.ca!).checkPrivateKey(createPrivateKey(c.caKey))) throw new Error("they do not match");
    });
  }
  return c as ServingCerts;
}

const objectName = (o: KubeObject) => `${o.metadata?.namespace ? `${o.metadata.namespace}/` : ""}${o.metadata?.name}`;

/** The saved objects with the journal's later writes replayed over them, checked as a write
 * would check them (a file edited by hand or damaged is refused, naming the file and object). */
function readState(file: string, journalFile: string, log: (s: string) => void, historyBytes?: number): { store: Store; fileRev: number } | undefined {
  const bad = (why: string, f = file) => new Error(`${f}: not a saved API server state (kept as it is; move it away to start empty): ${why}`);
  const entries = readJournal(journalFile, log);
  if (!existsSync(file)) {
    if (entries.length) throw bad("there is a journal but no state.json to replay it over", journalFile);
    return undefined;
  }
  let saved: Saved;
  try {
    saved = JSON.parse(readFileSync(file, "utf8")) as Saved;
  } catch (e) {
    throw bad((e as Error).message);
  }
  if (!saved || typeof saved !== "object" || !Number.isSafeInteger(saved.rev) || saved.rev < 1 || !Array.isArray(saved.objects)) throw bad("no revision and object list");
  // the types a CRD defines come and go with it, as the objects are read
  const byKey = new Map(BUILTIN.map((t) => [typeKey(t), t]));
  const objects = new Map<string, { type: ResourceType; object: KubeObject; where: string; f: string }>();
  const key = (t: ResourceType, ns: string | undefined, name: string) => `${typeKey(t)}/${t.namespaced ? (ns ?? "") : ""}/${name}`;
  const put = (type: ResourceType | undefined, object: KubeObject, where: string, f: string, replace: boolean) => {
    if (!type) throw bad(`${where}: unknown resource`, f);
    if (!object || typeof object !== "object" || typeof object.metadata?.name !== "string") throw bad(`${where}: no metadata.name`, f);
    try {
      // a custom object keeps the version and kind it was written in (its CRD's then)
      if (!type.custom) checkTypeMeta(type, object);
      else if (typeof object.apiVersion !== "string" || !object.apiVersion.startsWith(`${type.group}/`) || typeof object.kind !== "string") throw new Error(`apiVersion ${JSON.stringify(object.apiVersion)} and kind ${JSON.stringify(object.kind)} are not of ${type.plural}.${type.group}`);
      validateObject(type, object);
      if (isCrdType(type)) {
        const errs = crdErrors(object);
        if (errs.length) throw invalid(type, object.metadata.name, errs);
      }
      // ValidateService is the allocator's (services.ts), not a FIELD_RULE
      if (type.kind === "Service" && !type.group) validateStoredService(object);
    } catch (e) {
      throw bad(`${where} (${type.plural} ${objectName(object)}): ${e instanceof ApiError ? e.message : (e as Error).message}`, f);
    }
    const k = key(type, object.metadata.namespace, object.metadata.name);
    if (!replace && objects.has(k)) throw bad(`${where} (${type.plural} ${objectName(object)}): saved twice`, f);
    objects.set(k, { type, object, where, f });
    if (isCrdType(type)) {
      const t = storedTypeOf(object);
      byKey.set(typeKey(t), t);
    }
  };
  const forget = (type: ResourceType, name: string) => {
    const crd = objects.get(key(type, undefined, name))?.object;
    if (isCrdType(type) && crd) byKey.delete(typeKey(storedTypeOf(crd)));
  };
  // CRDs first: their objects need the types they define
  const order = saved.objects.map((x, i) => ({ x, i })).sort((a, b) => Number(!isCrdType(a.x ?? {})) - Number(!isCrdType(b.x ?? {})));
  for (const { x, i } of order) put(byKey.get(`${x?.group}/${x?.plural}`), x?.object, `object ${i}`, file, false);
  let rev = saved.rev;
  entries.forEach((e, i) => {
    // lines already in the snapshot (a crash between its save and the journal's emptying)
    if (e.rev <= saved.rev) return;
    if (e.rev !== rev + 1) throw bad(`line ${i + 1}: revision ${e.rev} follows ${rev} (writes are missing)`, journalFile);
    rev = e.rev;
    const type = byKey.get(`${e.group}/${e.plural}`);
    if (e.object) put(type, e.object, `line ${i + 1}`, journalFile, true);
    else if (!type) throw bad(`line ${i + 1}: unknown resource ${e.group}/${e.plural}`, journalFile);
    else {
      forget(type, e.name!);
      objects.delete(key(type, e.namespace, e.name!));
    }
  });
  for (const { type, object, where, f } of objects.values()) {
    const rv = object.metadata.resourceVersion;
    if (typeof rv !== "string" || !/^[1-9]\d{0,15}$/.test(rv) || Number(rv) > rev) {
      throw bad(`${where} (${type.plural} ${objectName(object)}): resourceVersion ${JSON.stringify(rv)} is not a revision up to the saved one (${rev}), so it would be handed out again`, f);
    }
  }
  for (const { type, object, where, f } of objects.values()) {
    if (!byKey.has(typeKey(type))) throw bad(`${where} (${type.plural} ${objectName(object)}): its CustomResourceDefinition is gone`, f);
  }
  return { store: new Store([...byKey.values()], undefined, { rev, objects: [...objects.values()] }, historyBytes), fileRev: saved.rev };
}

export async function runApiServer(o: ApiServerProcessOptions): Promise<number> {
  if (existsSync(o.dir) && !statSync(o.dir).isDirectory()) throw new Error(`--dir ${o.dir}: not a directory`);
  mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  const certsFile = `${o.dir}/certs.json`;
  const stateFile = `${o.dir}/state.json`;
  const journalFile = `${o.dir}/journal.jsonl`;
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
  const loaded = readState(stateFile, journalFile, o.log, o.watchHistoryBytes);
  const store = loaded?.store ?? newStore(undefined, undefined, o.watchHistoryBytes);

  let saveError: string | undefined;
  // what state.json holds: the loaded revision unless the journal added to it
  let savedRev = loaded && !statSync(journalFile, { throwIfNoEntry: false })?.size ? store.rev : -1;
  // what state.json holds, for the message when a save fails (-1: there is none)
  let fileRev = loaded?.fileRev ?? -1;
  let lastSaveMs = 0;
  const journal = new Journal(journalFile);
  const save = () => {
    if (store.rev === savedRev) return;
    const t0 = performance.now();
    const snap = store.snapshot();
    const saved: Saved = { rev: snap.rev, objects: snap.objects.map(({ type, object }) => ({ group: type.group, plural: type.plural, object })) };
    try {
      writeAtomic(stateFile, JSON.stringify(saved));
      savedRev = fileRev = snap.rev;
      lastSaveMs = performance.now() - t0;
      if (saveError) o.log(`saved ${stateFile} again (revision ${snap.rev})\n`);
      saveError = undefined;
    } catch (e) {
      saveError = `saving ${stateFile} failed: ${(e as Error).message}`;
      process.stderr.write(`skein apiserver: ERROR: ${saveError}; ${fileRev < 0 ? "it was never saved" : `it holds revision ${fileRev}`}, the later writes are only in the journal ${journalFile}\n`);
      return;
    }
    try {
      journal.reset();
    } catch (e) {
      // the journal's lines are all in the snapshot now: at start they are skipped
      process.stderr.write(`skein apiserver: ERROR: emptying ${journalFile} failed: ${(e as Error).message}\n`);
    }
  };
  // state.json holds what the journal held, so that new lines follow no dropped tail
  save();
  if (saveError) throw new Error(saveError);
  journal.reset();

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
  const journalMax = o.journalMaxBytes ?? 64 * 1024 * 1024;
  store.beforeCommit = (t, key, obj) => {
    // the journal is bounded: past its size the snapshot is saved first, which empties it
    if (journal.bytes > journalMax) save();
    if (journal.bytes > journalMax) throw new ApiError(500, "InternalError", `Internal error occurred: the write is refused: ${saveError ?? `${journalFile} is full`}`);
    const e: JournalEntry = { rev: store.rev + 1, group: t.group, plural: t.plural };
    if (obj) e.object = obj;
    else {
      const [ns, name] = key.split("/") as [string, string];
      if (ns) e.namespace = ns;
      e.name = name;
    }
    try {
      journal.append(e);
    } catch (err) {
      process.stderr.write(`skein apiserver: ERROR: appending to ${journalFile} failed: ${(err as Error).message}; the write is refused\n`);
      throw new ApiError(500, "InternalError", `Internal error occurred: the write could not be made durable: ${(err as Error).message}`);
    }
    schedule();
  };

  // a socket file left by a killed server would make the listen fail
  if (o.unix && existsSync(o.unix) && lstatSync(o.unix).isSocket()) unlinkSync(o.unix);
  const server = TestApiServer.start({ tokens: o.tokens, hostname: o.host, port: o.port, certs, store, unix: o.unix, bookmarkMs: o.bookmarkMs, watchBacklogBytes: o.watchBacklogBytes, notReady: () => saveError, services: o.services, eventTtlSeconds: o.eventTtlSeconds });
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
  store.beforeCommit = undefined;
  save();
  journal.close();
  if (saveError) {
    o.log(`${signal}: NOT saved: ${saveError}\n`);
    return 1;
  }
  o.log(`${signal}: saved ${store.snapshot().objects.length} objects at revision ${store.rev}\n`);
  return 0;
}
