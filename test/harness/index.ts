// The namespace harness: every test gets a Lab whose namespaces carry a prefix unique to the
// run, and they are torn down in afterAll, on process exit, and by `skein cleanup --namespaces-only --prefix skt-`.
import { afterAll } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { resolve } from "node:path";
import { Lab, TEST_PREFIX } from "../../testing/lab.ts";
import { inNetns, run } from "../../agent/sys/exec.ts";

export const SKEIN = resolve(import.meta.dir, "../../dist/skein");
export const REFERENCE_CNI = "/usr/lib/cni";

/** The built binary, for tests that exec it; unit tests that only need a lab or a temp dir run without a build. */
export function builtSkein(): string {
  if (!existsSync(SKEIN)) throw new Error(`${SKEIN} is missing: run 'bun run build' before the tests that exec skein`);
  return SKEIN;
}

const cleanups: Array<() => void> = [];
process.on("exit", () => cleanups.splice(0).forEach((f) => f()));

/** A lab torn down after this test file, even when its tests fail. */
export function useLab(tag: string): Lab {
  const id = Math.random().toString(36).slice(2, 6);
  const lab = new Lab(`${TEST_PREFIX}${tag.slice(0, 8)}${id}-`, SKEIN);
  const destroy = () => lab.destroy();
  cleanups.push(destroy);
  afterAll(destroy);
  return lab;
}

/** A temporary directory removed after this test file. */
export function useTempDir(tag: string): string {
  const d = mkdtempSync(`${tmpdir()}/skein-${tag}-`);
  const rm = () => rmSync(d, { recursive: true, force: true });
  cleanups.push(rm);
  afterAll(rm);
  return d;
}

/** A CNI_PATH directory holding `skein` (the built binary). */
export function pluginDir(tmp: string): string {
  const dir = `${tmp}/cni-bin`;
  mkdirSync(dir, { recursive: true });
  if (!existsSync(`${dir}/skein`)) symlinkSync(builtSkein(), `${dir}/skein`);
  return dir;
}

/** Waits for a condition with a deadline; never a fixed sleep. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 5000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await Bun.sleep(everyMs);
  }
}

export interface PluginRun {
  exitCode: number;
  stdout: string;
  json: Record<string, unknown> | undefined;
}

/** Execs the skein binary as a CNI plugin (in a namespace when given), as a runtime would. */
export function runPlugin(o: { command: string; conf: unknown; netnsOfPlugin?: string; env?: Record<string, string> }): PluginRun {
  const stdin = typeof o.conf === "string" ? o.conf : JSON.stringify(o.conf);
  const p = Bun.spawnSync(inNetns(o.netnsOfPlugin, [builtSkein()]), {
    stdin: Buffer.from(stdin),
    env: { PATH: process.env.PATH, CNI_COMMAND: o.command, ...o.env },
  });
  const stdout = p.stdout.toString();
  let json: Record<string, unknown> | undefined;
  try {
    json = stdout.trim() ? JSON.parse(stdout) : undefined;
  } catch {
    json = undefined;
  }
  return { exitCode: p.exitCode ?? -1, stdout, json };
}

export function hostLinks(lab: Lab, ns: string): string[] {
  return run(inNetns(lab.path(ns), ["ip", "-o", "link", "show"])).stdout.match(/\bsk[0-9a-f]{13}\b/g) ?? [];
}

/** `inet skein` in `ns` as nft lists it in JSON: objects without handles (and nft's metainfo),
 * elements in one order, so that two namespaces' tables compare equal when their content is. */
export async function nftListing(lab: Lab, ns: string): Promise<string[]> {
  const j = JSON.parse((await lab.exec(ns, ["nft", "-j", "list", "table", "inet", "skein"])).stdout) as { nftables: Array<Record<string, Record<string, unknown>>> };
  return j.nftables
    .filter((o) => !o.metainfo)
    .map((o) => {
      const [kind, body] = Object.entries(o)[0]!;
      const { handle: _h, ...rest } = body;
      if (Array.isArray(rest.elem)) rest.elem = rest.elem.map((e) => JSON.stringify(e)).sort();
      return JSON.stringify({ [kind]: rest });
    })
    .sort();
}

/** `skein apiserver` in the lab's namespace `ns`, listening on `listen`, its files and Unix socket in `dir`. */
export function spawnApiServer(lab: Lab, ns: string, dir: string, listen: string, token: string, extra: string[] = []) {
  return lab.spawn(ns, [builtSkein(), "apiserver", "--dir", dir, "--listen", listen, "--token", token, "--unix", `${dir}/api.sock`, ...extra], { ready: "serving", what: "skein apiserver" });
}

/** `skein agent` in the lab's namespace "node" as the e2e tests run it (Node "node", the kubeconfig `skein apiserver` wrote in `dir`), once its tables are applied. */
export function spawnAgent(lab: Lab, dir: string, extra: string[] = []) {
  return lab.spawn("node", [builtSkein(), "agent", "--kubeconfig", `${dir}/kubeconfig`, "--node-name", "node", "--cluster-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/16", "--node-file", `${dir}/node.json`, "--coalesce-ms", "5", ...extra], {
    ready: "tables applied",
    timeoutMs: 10_000,
    what: "skein agent",
  });
}

/** A TCP port free on loopback right now (a server started a moment later takes it). */
export function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}
