// The parts of the CNI specification (1.1) this plugin speaks: versions and error codes.

export const SUPPORTED_VERSIONS = ["0.4.0", "1.0.0", "1.1.0"] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST: CniVersion = "1.1.0";

export const ErrorCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnv: 4,
  IoFailure: 5,
  DecodeFailure: 6,
  InvalidNetworkConfig: 7,
  TryAgainLater: 11,
  /** STATUS: cannot service ADD requests */
  NotAvailable: 50,
  /** STATUS: cannot service ADD, and existing pods may have limited connectivity */
  NotAvailableLimited: 51,
  /** plugin-specific (100+): the pod CIDR has no free address */
  RangeExhausted: 100,
} as const;

/** A message echoes outside input (ids, paths, file content): the runtime's log gets its start. */
export const MESSAGE_LIMIT = 4096;
const bounded = (s: string) => (s.length <= MESSAGE_LIMIT ? s : `${s.slice(0, MESSAGE_LIMIT)}… (${s.length - MESSAGE_LIMIT} more characters)`);

export class CniError extends Error {
  constructor(
    readonly code: number,
    msg: string,
    readonly details?: string,
  ) {
    super(msg);
    this.name = "CniError";
  }

  toJSON(cniVersion: string) {
    return { cniVersion, code: this.code, msg: bounded(this.message), ...(this.details ? { details: bounded(this.details) } : {}) };
  }
}

export function isSupported(v: string): v is CniVersion {
  return (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** Compares dotted versions numerically: -1, 0 or 1. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

export const COMMANDS = ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION"] as const;
export type CniCommand = (typeof COMMANDS)[number];
