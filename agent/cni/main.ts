// CNI entrance: the binary runs as a CNI plugin when CNI_COMMAND is set. It reads the network
// configuration from stdin, prints a result or the spec's error object on stdout, and exits
// non-zero on error. Imports stay light: no Kubernetes client, NATS, HTTP or compiler here.
import { writeSync } from "node:fs";
import { openNft, type Nft } from "../datapath/nft.ts";
import { readFdBounded, TooLargeError } from "../sys/bounded-read.ts";
import { cmdAdd, cmdCheck, cmdDel, cmdDelLenient, cmdGc, cmdStatus, defaultStore, storeOf, withContainerLock, type Deps } from "./commands.ts";
import { parseNetConf, type NetConf } from "./config.ts";
import { parseEnv } from "./env.ts";
import { INTERNAL_ERROR, toCniError } from "./errors.ts";
import { CniError, compareVersions, ErrorCode, isSupported, LATEST, SUPPORTED_VERSIONS } from "./spec.ts";

/** A configuration with a prevResult is a few KiB; this is far above any real one. */
export const STDIN_LIMIT = 1024 * 1024;

export interface CniIo {
  env: Record<string, string | undefined>;
  stdin: string;
}

export interface CniOutcome {
  stdout: string;
  exitCode: number;
  /** for the runtime's log: what a lenient DEL did, or an internal error's stack */
  stderr?: string;
}

export function runCni(io: CniIo, deps?: Partial<Deps>): CniOutcome {
  let version: string = LATEST;
  try {
    const env = parseEnv(io.env);
    if (env.command === "VERSION") {
      let asked: string | undefined;
      try {
        asked = JSON.parse(io.stdin || "{}").cniVersion;
      } catch {
        // VERSION answers whatever stdin holds
      }
      return {
        stdout: JSON.stringify({ cniVersion: asked && isSupported(asked) ? asked : LATEST, supportedVersions: SUPPORTED_VERSIONS }),
        exitCode: 0,
      };
    }
    let conf: NetConf;
    try {
      conf = parseNetConf(io.stdin);
    } catch (e) {
      if (env.command !== "DEL" || !(e instanceof CniError)) throw e;
      const where = storeOf(io.stdin);
      const del = () => cmdDelLenient(env, where, e, { store: defaultStore, ...deps });
      // Without a readable network name and data directory there is no state to touch, only
      // the veth (by name), and no lock file to take.
      const report = typeof where === "string" ? del() : withContainerLock(where.dataDir, env.containerId, del);
      return { stdout: "", exitCode: 0, stderr: report };
    }
    version = conf.cniVersion;
    if ((env.command === "STATUS" || env.command === "GC") && compareVersions(conf.cniVersion, "1.1.0") < 0) {
      throw new CniError(ErrorCode.IncompatibleVersion, `${env.command} needs cniVersion 1.1.0 or later, the configuration says ${conf.cniVersion}`);
    }
    let nft: Nft | undefined;
    const d: Deps = { store: defaultStore, nft: () => (nft ??= openNft()), now: Date.now, ...deps };
    switch (env.command) {
      case "ADD":
        return { stdout: JSON.stringify(withContainerLock(conf.dataDir, env.containerId, () => cmdAdd(env, conf, d))), exitCode: 0 };
      case "DEL":
        withContainerLock(conf.dataDir, env.containerId, () => cmdDel(env, conf, d));
        break;
      case "CHECK":
        withContainerLock(conf.dataDir, env.containerId, () => cmdCheck(env, conf, d));
        break;
      case "STATUS":
        cmdStatus(conf, d);
        break;
      case "GC":
        cmdGc(conf, d);
        break;
    }
    return { stdout: "", exitCode: 0 };
  } catch (e) {
    const err = toCniError(e);
    return { stdout: JSON.stringify(err.toJSON(version)), exitCode: 1, stderr: err.code === INTERNAL_ERROR ? (e as Error)?.stack : undefined };
  }
}

export async function cniMain(): Promise<never> {
  const t0 = performance.now();
  let stdin = "";
  let out: CniOutcome | undefined;
  try {
    stdin = readFdBounded(0, STDIN_LIMIT, "the network configuration on stdin").toString("utf8");
  } catch (e) {
    // An endless writer ends here, at the limit; no stdin at all (closed) reads as empty:
    // VERSION needs none, the others report an empty config.
    if (e instanceof TooLargeError) out = { stdout: JSON.stringify(new CniError(ErrorCode.DecodeFailure, e.message).toJSON(LATEST)), exitCode: 1 };
  }
  out ??= runCni({ env: process.env, stdin });
  if (out.stderr) writeSync(2, `skein: ${out.stderr}\n`);
  // writeSync on fd 1, not process.stdout: setting up Node's stream machinery for one write
  // would lengthen every CNI exec (docs/measurements.md).
  if (out.stdout) writeSync(1, out.stdout + "\n");
  const command = process.env.CNI_COMMAND;
  if (command && command !== "VERSION" && /^[A-Z]{2,8}$/.test(command)) {
    let result: "ok" | number = "ok";
    if (out.exitCode !== 0) {
      try {
        result = (JSON.parse(out.stdout) as { code?: number }).code ?? 999;
      } catch {
        result = 999;
      }
    }
    const { reportToAgent } = await import("./report.ts");
    await reportToAgent({ command, result, seconds: (performance.now() - t0) / 1000 });
  }
  process.exit(out.exitCode);
}
