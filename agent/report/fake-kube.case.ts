// A KubeClient's request() for the reporters' unit tests: records every request and answers as
// kube-apiserver would for SkeinNodes (status subresource, 404 while the CRD is not installed)
// and Events (create, merge patch), with failures injected on demand.
import pino from "pino";
import { KubeError } from "../watch/kube.ts";
import { mergePatch } from "../../testing/apiserver/patch.ts";

export interface Call {
  method: string;
  path: string;
  body?: unknown;
  contentType?: string;
  at: number;
}

type Obj = Record<string, any>;

export class FakeKube {
  readonly calls: Call[] = [];
  /** the SkeinNode CRD is installed */
  crd = true;
  readonly objects = new Map<string, Obj>();
  /** status codes the next requests fail with, in order */
  readonly failures: number[] = [];
  /** requests that never answer until released */
  hang = false;
  private rv = 1;

  writes(filter?: (c: Call) => boolean): Call[] {
    return this.calls.filter((c) => c.method !== "GET" && (!filter || filter(c)));
  }

  async request<T = unknown>(method: string, path: string, o: { body?: unknown; contentType?: string } = {}): Promise<T> {
    this.calls.push({ method, path, body: o.body, contentType: o.contentType, at: Date.now() });
    if (this.hang) await new Promise(() => {});
    const fail = this.failures.shift();
    if (fail) throw new KubeError(fail, `${method} ${path}: ${fail} injected`);
    return this.answer(method, path, o.body as Obj) as T;
  }

  private answer(method: string, path: string, body: Obj): Obj {
    const nodes = "/apis/skein.io/v1alpha1/skeinnodes";
    const events = /^\/api\/v1\/namespaces\/([^/]+)\/events(?:\/([^/]+))?$/.exec(path);
    if (path.startsWith(nodes)) {
      if (!this.crd) throw new KubeError(404, `${method} ${path}: 404 the server could not find the requested resource`, "NotFound");
      const [name, sub] = path.slice(nodes.length + 1).split("/");
      const key = `skeinnodes/${name}`;
      if (method === "POST") {
        const k = `skeinnodes/${body.metadata.name}`;
        if (this.objects.has(k)) throw new KubeError(409, "409 already exists", "AlreadyExists");
        const made: Obj = { ...body, metadata: { ...body.metadata, uid: `sn-${this.rv}`, resourceVersion: String(this.rv++) } };
        delete made.status; // the status subresource's: ignored on create
        this.objects.set(k, made);
        return made;
      }
      const cur = this.objects.get(key);
      if (!cur) throw new KubeError(404, `${method} ${path}: 404 skeinnodes.skein.io "${name}" not found`, "NotFound");
      if (method === "GET") return structuredClone(cur);
      if (method === "PATCH") {
        // the status subresource writes status alone; the main resource everything else
        // (a merge patch's null would delete status; a key left out leaves it as it is)
        const { status: _ignored, ...rest } = body;
        const patch = sub === "status" ? { status: body.status } : rest;
        const next = mergePatch(cur, patch) as Obj;
        next.metadata.resourceVersion = String(this.rv++);
        this.objects.set(key, next);
        return next;
      }
    }
    if (events) {
      const [, ns, name] = events;
      if (method === "POST") {
        const k = `events/${ns}/${body.metadata.name}`;
        if (this.objects.has(k)) throw new KubeError(409, "409 already exists", "AlreadyExists");
        this.objects.set(k, body);
        return body;
      }
      const k = `events/${ns}/${name}`;
      const cur = this.objects.get(k);
      if (!cur) throw new KubeError(404, `${method} ${path}: 404 not found`, "NotFound");
      if (method === "PATCH") {
        const next = mergePatch(cur, body) as Obj;
        this.objects.set(k, next);
        return next;
      }
    }
    throw new KubeError(405, `${method} ${path}: not served by the fake`);
  }

  events(): Obj[] {
    return [...this.objects].filter(([k]) => k.startsWith("events/")).map(([, v]) => v);
  }
}

/** A logger whose lines a test reads. */
export function recordingLog(): { log: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: pino({ level: "debug" }, { write: (s: string) => void lines.push(s) }), lines };
}
