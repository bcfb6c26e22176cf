// A small container-runtime side of CNI (what libcni does for containerd and CRI-O): runs a
// conflist's plugins in order for ADD, with each one's result as the next one's prevResult,
// in reverse for DEL, and CHECK/GC/STATUS against the cached result. The demo, the tests
// and the benchmarks use it to drive skein and the reference plugins exactly as kubelet's
// runtime would.
import { existsSync } from "node:fs";
import { inNetns, runAsync } from "../sys/exec.ts";

export interface PluginConf {
  type: string;
  capabilities?: Record<string, boolean>;
  [k: string]: unknown;
}

export interface Conflist {
  cniVersion: string;
  name: string;
  plugins: PluginConf[];
}

export interface Attachment {
  containerId: string;
  netns: string;
  ifname: string;
  args?: string;
  /** capability arguments (portMappings, bandwidth, …) injected as runtimeConfig */
  capabilityArgs?: Record<string, unknown>;
}

export class CniPluginError extends Error {
  constructor(readonly plugin: string, readonly command: string, readonly code: number | undefined, msg: string) {
    super(`CNI ${command} failed in plugin ${plugin}${code !== undefined ? ` (code ${code})` : ""}: ${msg}`);
    this.name = "CniPluginError";
  }
}

type Result = Record<string, unknown>;

export class CniRuntime {
  private readonly cache = new Map<string, Result>();

  /** `hostNetns`: path of the node's namespace the plugins run in (undefined: this one);
   * `env`: extra environment for every plugin. */
  constructor(private readonly opts: { path: string[]; hostNetns?: string; env?: Record<string, string> }) {}

  private find(type: string): string {
    for (const dir of this.opts.path) if (existsSync(`${dir}/${type}`)) return `${dir}/${type}`;
    throw new CniPluginError(type, "exec", undefined, `plugin ${type} not found in ${this.opts.path.join(":")}`);
  }

  async exec(command: string, plugin: PluginConf, conf: Record<string, unknown>, att?: Partial<Attachment>): Promise<Result | undefined> {
    const env: Record<string, string | undefined> = {
      PATH: process.env.PATH,
      CNI_COMMAND: command,
      CNI_CONTAINERID: att?.containerId,
      CNI_NETNS: att?.netns,
      CNI_IFNAME: att?.ifname,
      CNI_ARGS: att?.args,
      CNI_PATH: this.opts.path.join(":"),
      ...this.opts.env,
    };
    const r = await runAsync(inNetns(this.opts.hostNetns, [this.find(plugin.type)]), { stdin: JSON.stringify(conf), env, allowFail: true, timeoutMs: 60_000 });
    let parsed: Result | undefined;
    if (r.stdout.trim()) {
      try {
        parsed = JSON.parse(r.stdout);
      } catch {
        throw new CniPluginError(plugin.type, command, undefined, `printed something that is not JSON: ${r.stdout.slice(0, 200)}`);
      }
    }
    if (r.exitCode !== 0) {
      const e = parsed as { code?: number; msg?: string; details?: string } | undefined;
      throw new CniPluginError(plugin.type, command, e?.code, e?.msg ?? (r.stderr.trim() || `exit status ${r.exitCode}`));
    }
    return parsed;
  }

  private confFor(list: Conflist, plugin: PluginConf, att: Attachment | undefined, prevResult?: Result): Record<string, unknown> {
    const { capabilities, ...rest } = plugin;
    const conf: Record<string, unknown> = { ...rest, name: list.name, cniVersion: list.cniVersion };
    if (capabilities) {
      const rc: Record<string, unknown> = {};
      for (const [k, on] of Object.entries(capabilities)) if (on && att?.capabilityArgs?.[k] !== undefined) rc[k] = att.capabilityArgs[k];
      if (Object.keys(rc).length) conf.runtimeConfig = rc;
    }
    if (prevResult) conf.prevResult = prevResult;
    return conf;
  }

  private key(list: Conflist, att: Attachment): string {
    return `${list.name}/${att.containerId}/${att.ifname}`;
  }

  async add(list: Conflist, att: Attachment): Promise<Result> {
    let prev: Result | undefined;
    for (const p of list.plugins) prev = (await this.exec("ADD", p, this.confFor(list, p, att, prev), att)) ?? prev;
    if (!prev) throw new CniPluginError(list.name, "ADD", undefined, "the chain returned no result");
    this.cache.set(this.key(list, att), prev);
    return prev;
  }

  async check(list: Conflist, att: Attachment): Promise<void> {
    const prev = this.cache.get(this.key(list, att));
    for (const p of list.plugins) await this.exec("CHECK", p, this.confFor(list, p, att, prev), att);
  }

  /** Every plugin is called even if one fails; the errors are joined, as libcni does. */
  async del(list: Conflist, att: Attachment): Promise<void> {
    const prev = this.cache.get(this.key(list, att));
    const errors: string[] = [];
    for (const p of [...list.plugins].reverse()) {
      try {
        await this.exec("DEL", p, this.confFor(list, p, att, prev), att);
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
    if (errors.length) throw new CniPluginError(list.name, "DEL", undefined, errors.join("; "));
    this.cache.delete(this.key(list, att));
  }

  async gc(list: Conflist, valid: Array<{ containerID: string; ifname: string }>): Promise<void> {
    for (const p of list.plugins) await this.exec("GC", p, { ...this.confFor(list, p, undefined), "cni.dev/valid-attachments": valid });
  }

  async status(list: Conflist): Promise<void> {
    for (const p of list.plugins) await this.exec("STATUS", p, this.confFor(list, p, undefined));
  }
}
