import pkg from "../package.json" with { type: "json" };
import { SUPPORTED_VERSIONS } from "./cni/spec.ts";

export const VERSION: string = pkg.version;

export function versionInfo() {
  return { skein: VERSION, cniVersions: [...SUPPORTED_VERSIONS], runtime: `bun ${Bun.version}`, platform: `${process.platform}/${process.arch}` };
}
