// The network configuration kubelet's runtime hands the plugin on stdin, validated with a
// schema so that every rejection names the field and the value.
import * as v from "valibot";
import { AddressError, addressFamily } from "../../compiler/address.ts";
import { poolFromCidr, parseCidr, type Pool } from "../ipam/cidr.ts";
import { CniError, ErrorCode, isSupported, SUPPORTED_VERSIONS, type CniVersion } from "./spec.ts";

export const DEFAULT_NODE_FILE = "/var/lib/skein/node.json";
export const DEFAULT_DATA_DIR = "/var/lib/skein/ipam";

/** a network name is also a file name in the data directory */
export const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

const Attachment = v.object({ containerID: v.pipe(v.string(), v.minLength(1)), ifname: v.pipe(v.string(), v.minLength(1)) });

const NetConfSchema = v.looseObject({
  cniVersion: v.string(),
  name: v.pipe(v.string(), v.regex(NETWORK_NAME, "must start with a letter or digit and hold only letters, digits, '_', '.', '-'")),
  type: v.string(),
  podCIDRs: v.optional(v.pipe(v.array(v.string()), v.minLength(1), v.maxLength(2))),
  clusterCIDRs: v.optional(v.array(v.string())),
  nodeFile: v.optional(v.pipe(v.string(), v.startsWith("/", "must be an absolute path")), DEFAULT_NODE_FILE),
  dataDir: v.optional(v.pipe(v.string(), v.startsWith("/", "must be an absolute path")), DEFAULT_DATA_DIR),
  // absent: the MTU the agent wrote in the node file for this node's overlay (else 1500)
  mtu: v.optional(v.pipe(v.number(), v.integer(), v.minValue(576), v.maxValue(65535))),
  masquerade: v.optional(v.boolean(), true),
  dns: v.optional(
    v.object({
      nameservers: v.optional(v.array(v.string())),
      domain: v.optional(v.string()),
      search: v.optional(v.array(v.string())),
      options: v.optional(v.array(v.string())),
    }),
  ),
  ipam: v.optional(v.looseObject({ type: v.optional(v.string()) })),
  prevResult: v.optional(v.unknown()),
  "cni.dev/valid-attachments": v.optional(v.array(Attachment)),
});

export type NetConf = v.InferOutput<typeof NetConfSchema> & { cniVersion: CniVersion };

export function parseNetConf(stdin: string): NetConf {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (e) {
    throw new CniError(ErrorCode.DecodeFailure, `network configuration on stdin is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new CniError(ErrorCode.DecodeFailure, "network configuration on stdin must be a JSON object");
  }
  const version = (raw as { cniVersion?: unknown }).cniVersion;
  if (typeof version !== "string" || !isSupported(version)) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      `incompatible CNI version ${JSON.stringify(version ?? null)}: skein speaks ${SUPPORTED_VERSIONS.join(", ")}`,
    );
  }
  const parsed = v.safeParse(NetConfSchema, raw);
  if (!parsed.success) {
    const issue = parsed.issues[0]!;
    const path = issue.path?.map((p) => (typeof p.key === "number" ? `[${p.key}]` : `.${String(p.key)}`)).join("").replace(/^\./, "") ?? "";
    const got = issue.input === undefined ? "missing" : JSON.stringify(issue.input);
    throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid network configuration: ${path || "config"} (${got}): ${issue.message}`);
  }
  const conf = parsed.output as NetConf;
  if (conf.ipam?.type !== undefined && conf.ipam.type !== "skein") {
    throw new CniError(
      ErrorCode.UnsupportedField,
      `unsupported field ipam.type: ${JSON.stringify(conf.ipam.type)}: skein allocates addresses itself from the node's pod CIDRs; leave ipam out`,
    );
  }
  // every address and CIDR read strictly (compiler/address.ts), pod CIDRs also for whether
  // they can work, so that ADD, CHECK and STATUS never meet one they cannot use
  for (const [i, ns] of (conf.dns?.nameservers ?? []).entries()) checked(ns, `dns.nameservers[${i}]`, addressFamily);
  for (const [i, c] of (conf.clusterCIDRs ?? []).entries()) checked(c, `clusterCIDRs[${i}]`, parseCidr);
  if (conf.podCIDRs) poolsFrom(conf.podCIDRs, "podCIDRs");
  return conf;
}

function checked<T>(s: string, field: string, parse: (s: string) => T): T {
  try {
    return parse(s);
  } catch (e) {
    if (e instanceof AddressError) throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid network configuration: ${field}: ${e.message}`);
    throw e;
  }
}

/** Pools from CIDR strings, at most one per address family, as Kubernetes' spec.podCIDRs. */
export function poolsFrom(cidrs: string[], source: string): Pool[] {
  const pools = cidrs.map((c, i) => checked(c, `${source}[${i}]`, poolFromCidr));
  const fams = pools.map((p) => p.family);
  if (new Set(fams).size !== fams.length) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid network configuration: ${source} has two CIDRs of one address family (${cidrs.join(", ")})`);
  }
  return pools;
}
