// CNI entrance: the binary runs as a CNI plugin when CNI_COMMAND is set. It reads the network
// configuration from stdin, prints a result or the spec's error object on stdout, and exits
// non-zero on error. Imports stay light: no Kubernetes client, NATS, HTTP or compiler here.
import { readFileSync, writeSync } from "node:fs";
import { ExecError } from "../sys/exec.ts";
import { NftError, openNft, type Nft } from "../datapath/nft.ts";
import { StoreCorruptError } from "../ipam/disk-store.ts";
import { cmdAdd, cmdCheck, cmdDel, cmdGc, cmdStatus, defaultStore, type Deps } from "./commands.ts";
import { parseNetConf } from "./config.ts";
import { parseEnv } from "./env.ts";
import { CniError, compareVersions, ErrorCode, isSupported, LATEST, SUPPORTED_VERSIONS } from "./spec.ts";

export interface CniIo {
  env: Record<string, string | undefined>;
  stdin: string;
}

export interface CniOutcome {
  stdout: string;
  exitCode: number;
}

function toCniError(e: unknown): CniError {
  if (e instanceof CniError) return e;
  if (e instanceof StoreCorruptError) return new CniError(ErrorCode.IoFailure, e.message);
  if (e instanceof ExecError || e instanceof NftError) return new CniError(ErrorCode.IoFailure, e.message);
  return new CniError(102, `internal error: ${(e as Error)?.message ?? String(e)}`, (e as Error)?.stack);
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
    const conf = parseNetConf(io.stdin);
    version = conf.cniVersion;
    if ((env.command === "STATUS" || env.command === "GC") && compareVersions(conf.cniVersion, "1.1.0") < 0) {
      throw new CniError(ErrorCode.IncompatibleVersion, `${env.command} needs cniVersion 1.1.0 or later, the configuration says ${conf.cniVersion}`);
    }
    let nft: Nft | undefined;
    const d: Deps = { store: defaultStore, nft: () => (nft ??= openNft()), now: Date.now, ...deps };
    switch (env.command) {
      case "ADD":
        return { stdout: JSON.stringify(cmdAdd(env, conf, d)), exitCode: 0 };
      case "DEL":
        cmdDel(env, conf, d);
        break;
      case "CHECK":
        cmdCheck(env, conf, d);
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
    return { stdout: JSON.stringify(toCniError(e).toJSON(version)), exitCode: 1 };
  }
}

export async function cniMain(): Promise<never> {
  let stdin = "";
  try {
    stdin = readFileSync(0, "utf8");
  } catch {
    // no stdin at all (closed): VERSION needs none, the others report an empty config
  }
  const out = runCni({ env: process.env, stdin });
  // writeSync on fd 1, not process.stdout: setting up Node's stream machinery costs a CNI
  // exec ~9 ms (measured with strace between the last read of stdin and exit).
  if (out.stdout) writeSync(1, out.stdout + "\n");
  process.exit(out.exitCode);
}
