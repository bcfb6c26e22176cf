// IPAM state on disk: one CBOR file per network, replaced atomically (write, fsync, rename)
// under a kernel file lock. A file that does not decode is reported and never reset: it is
// the only record of which pod holds which address.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from "node:fs";
// The subpath entries skip cbor-x's attempt to load its optional native addon, which slows
// every CNI exec's start-up (docs/measurements.md).
import { decode } from "cbor-x/decode";
import { encode } from "cbor-x/encode";
import * as v from "valibot";
import { addressFamily, AddressError, parseCidr } from "../../compiler/address.ts";
import { NotAFileError, readFileBounded, TooLargeError } from "../sys/bounded-read.ts";
import { withFileLock } from "../sys/flock.ts";
import { emptyState, type IpamState } from "./allocator.ts";
import type { IpamStore } from "./store.ts";

const FORMAT = "skein-ipam";
/** A /16 pod CIDR taken in full is about 6 MiB of state; a node holds a few hundred pods. */
export const STATE_LIMIT = 16 * 1024 * 1024;
const VERSION = 1;

const AllocationSchema = v.object({
  containerId: v.string(),
  ifname: v.string(),
  ip: v.string(),
  pool: v.string(),
  at: v.number(),
});
const FileSchema = v.object({
  format: v.literal(FORMAT),
  version: v.literal(VERSION),
  allocations: v.array(AllocationSchema),
  cursors: v.record(v.string(), v.string()),
});

export class StoreCorruptError extends Error {
  constructor(readonly path: string, why: string) {
    super(`IPAM state ${path} is corrupt (${why}); it was left untouched: restore it from a backup, or remove it only when no pod on this node holds an address`);
    this.name = "StoreCorruptError";
  }
}

/** A write refused because the state would grow past what a read accepts. */
export class StoreFullError extends Error {
  constructor(readonly path: string, size: number) {
    super(`IPAM state ${path} would grow to ${(size / 1048576).toFixed(1)} MiB, past its limit of ${STATE_LIMIT / 1048576} MiB: this change is refused, the state is left as it was`);
    this.name = "StoreFullError";
  }
}

export class DiskStore implements IpamStore {
  readonly path: string;
  private readonly lockPath: string;

  constructor(readonly dir: string, network: string) {
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(network)) throw new Error(`invalid network name for an IPAM store: ${JSON.stringify(network)}`);
    this.path = `${dir}/${network}.cbor`;
    this.lockPath = `${dir}/${network}.lock`;
  }

  read(): IpamState {
    if (!existsSync(this.path)) return emptyState();
    let bytes: Buffer;
    try {
      bytes = readFileBounded(this.path, STATE_LIMIT, `IPAM state ${this.path}`);
    } catch (e) {
      if (e instanceof TooLargeError) throw new StoreCorruptError(this.path, `larger than ${STATE_LIMIT / 1048576} MiB`);
      if (e instanceof NotAFileError) throw new StoreCorruptError(this.path, "not a regular file");
      throw e;
    }
    let raw: unknown;
    try {
      raw = decode(bytes);
    } catch (e) {
      throw new StoreCorruptError(this.path, `does not decode as CBOR: ${(e as Error).message}`);
    }
    const parsed = v.safeParse(FileSchema, raw);
    if (!parsed.success) {
      const issue = parsed.issues[0];
      const where = issue?.path?.map((p) => String(p.key)).join(".") || "top level";
      throw new StoreCorruptError(this.path, `unexpected content at ${where}: ${issue?.message}`);
    }
    const state = emptyState();
    for (const [i, a] of parsed.output.allocations.entries()) {
      // Read strictly, as everything else takes addresses: "10.0.0.02" would be a second
      // key for 10.0.0.2 (handed out twice), "__proto__" no key at all.
      try {
        addressFamily(a.ip);
        parseCidr(a.pool);
      } catch (e) {
        if (e instanceof AddressError) throw new StoreCorruptError(this.path, `allocations.${i}: ${e.message}`);
        throw e;
      }
      if (Object.hasOwn(state.allocations, a.ip)) throw new StoreCorruptError(this.path, `address ${a.ip} is allocated twice`);
      state.allocations[a.ip] = a;
    }
    state.cursors = parsed.output.cursors;
    return state;
  }

  update<T>(fn: (state: IpamState) => { state?: IpamState; result: T }): T {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    return withFileLock(this.lockPath, () => {
      const { state, result } = fn(this.read());
      if (state) this.write(state);
      return result;
    });
  }

  private write(state: IpamState): void {
    const body = encode({
      format: FORMAT,
      version: VERSION,
      allocations: Object.values(state.allocations),
      cursors: state.cursors,
    });
    // Written past the limit, the state could no longer be read: every later ADD, DEL and
    // GC of the network would fail. Only this change fails instead.
    if (body.length > STATE_LIMIT) throw new StoreFullError(this.path, body.length);
    const tmp = `${this.path}.tmp-${process.pid}`;
    const fd = openSync(tmp, "w", 0o600);
    try {
      // write(2) may take less than asked (seen here with 12 MiB states): a state cut short
      // would read as corrupt to every later call
      for (let off = 0; off < body.length; ) off += writeSync(fd, body, off, body.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
  }
}
