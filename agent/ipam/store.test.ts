import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { allocate } from "./allocator.ts";
import { poolFromCidr } from "./cidr.ts";
import { DiskStore, STATE_LIMIT, StoreCorruptError, StoreFullError } from "./disk-store.ts";
import { runStoreContract } from "./store.case.ts";
import { MemoryStore } from "./store.ts";
import { encode } from "cbor-x/encode";

const dirs: string[] = [];
const freshDir = () => {
  const d = mkdtempSync(`${tmpdir()}/skein-ipam-`);
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

runStoreContract("memory", () => new MemoryStore());
runStoreContract("disk", () => new DiskStore(freshDir(), "net"));

describe("DiskStore", () => {
  const pools = [poolFromCidr("10.244.1.0/24")];
  const seed = (s: DiskStore) => s.update((st) => ({ state: allocate(st, pools, { containerId: "keep", ifname: "eth0" }, 1).state, result: null }));

  test("survives a new process's view: state is re-read from disk", () => {
    const dir = freshDir();
    seed(new DiskStore(dir, "net"));
    expect(Object.values(new DiskStore(dir, "net").read().allocations)[0]?.containerId).toBe("keep");
  });

  test.each([
    ["truncated", (b: Buffer) => b.subarray(0, b.length - 5)],
    ["garbage", () => Buffer.from("not cbor at all \xff\xfe")],
    ["empty", () => Buffer.alloc(0)],
  ])("a %s file is reported, and left exactly as it was", (_name, mangle) => {
    const dir = freshDir();
    const s = new DiskStore(dir, "net");
    seed(s);
    const bad = mangle(readFileSync(s.path));
    writeFileSync(s.path, bad);
    expect(() => s.read()).toThrow(StoreCorruptError);
    expect(() => s.update((st) => ({ state: allocate(st, pools, { containerId: "new", ifname: "eth0" }, 2).state, result: null }))).toThrow(
      new RegExp(`IPAM state ${s.path} is corrupt`),
    );
    expect(readFileSync(s.path).equals(bad)).toBe(true);
  });

  test("a file of another shape names the field", () => {
    const dir = freshDir();
    const s = new DiskStore(dir, "net");
    writeFileSync(s.path, Buffer.from(encode({ format: "skein-ipam", version: 1, allocations: [{ ip: 5 }], cursors: {} })));
    expect(() => s.read()).toThrow(/allocations\.0\.containerId/);
  });

  test("a write that would pass the size limit is refused; the state stays readable and as it was", () => {
    const dir = freshDir();
    const s = new DiskStore(dir, "net");
    const id = (i: number) => `${i}-${"x".repeat(4 * 1024 * 1024)}`;
    let added = 0;
    const add = () => s.update((st) => ({ state: allocate(st, pools, { containerId: id(added), ifname: "eth0" }, 1).state, result: added++ }));
    for (let i = 0; i < 3; i++) add();
    const before = readFileSync(s.path);
    expect(() => add()).toThrow(StoreFullError);
    expect(() => add()).toThrow(new RegExp(`IPAM state ${s.path} would grow to 16\\.\\d MiB, past its limit of ${STATE_LIMIT / 1048576} MiB`));
    expect(readFileSync(s.path).equals(before)).toBe(true);
    expect(Object.keys(s.read().allocations)).toHaveLength(3);
  });

  test.each([
    ["10.250.95.02", /allocations\.1: "10\.250\.95\.02" is not a valid IPv4 address/],
    ["__proto__", /allocations\.1: "__proto__" is not a valid IP address/],
  ])("an allocation whose address %s is not read strictly is reported as corrupt", (ip, msg) => {
    const s = new DiskStore(freshDir(), "net");
    const alloc = (ip: string, containerId: string) => ({ containerId, ifname: "eth0", ip, pool: "10.250.95.0/24", at: 1 });
    writeFileSync(s.path, Buffer.from(encode({ format: "skein-ipam", version: 1, allocations: [alloc("10.250.95.3", "a"), alloc(ip, "old")], cursors: {} })));
    expect(() => s.read()).toThrow(StoreCorruptError);
    expect(() => s.read()).toThrow(msg);
  });

  test("rejects a network name that would escape the directory", () => {
    expect(() => new DiskStore(freshDir(), "../etc")).toThrow(/invalid network name/);
  });
});
