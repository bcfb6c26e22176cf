import { describe, expect, test } from "bun:test";
import { NetlinkError } from "../sys/netlink.ts";
import { StoreCorruptError } from "../ipam/disk-store.ts";
import { toCniError, withCleanupFailures } from "./errors.ts";
import { LinkError, toLinkError } from "./links.ts";
import { CniError } from "./spec.ts";

describe("netlink failures", () => {
  const cases: Array<[number, number]> = [
    [16, 11], // EBUSY
    [11, 11], // EAGAIN
    [105, 11], // ENOBUFS
    [4, 11], // EINTR
    [12, 11], // ENOMEM
    [1, 5], // EPERM
    [13, 5], // EACCES
    [17, 5], // EEXIST
    [19, 5], // ENODEV
    [22, 5], // EINVAL
  ];
  for (const [errno, code] of cases) {
    test(`errno ${errno} -> code ${code}, one line, no details`, () => {
      const e = toCniError(toLinkError(new NetlinkError("create veth sk0123", errno)));
      expect(e.code).toBe(code);
      expect(e.message).toStartWith("create veth sk0123: ");
      expect(e.details).toBeUndefined();
    });
  }

  test("a file system errno (a sysctl write) is classified the same way", () => {
    const busy = Object.assign(new Error("EBUSY: resource busy or locked, open '/proc/sys/net/ipv4/ip_forward'"), { code: "EBUSY" });
    expect(toCniError(toLinkError(busy)).code).toBe(11);
    const denied = Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" });
    expect(toCniError(denied).code).toBe(5);
  });

  test("a message over several lines becomes one", () => {
    expect(toLinkError(new Error("ip -batch - exited 1: RTNETLINK answers: File exists\nCommand failed -:3\n")).message).toBe("ip -batch - exited 1: RTNETLINK answers: File exists; Command failed -:3");
  });

  test("an internal error carries no stack in details", () => {
    const e = toCniError(new TypeError("x is undefined"));
    expect(e.code).toBe(102);
    expect(e.message).toBe("internal error: x is undefined");
    expect(JSON.stringify(e.toJSON("1.1.0"))).not.toContain("at ");
  });
});

describe("an ADD whose cleanup fails too", () => {
  test("reports both, the original first, with the original's code", () => {
    const e = withCleanupFailures(new LinkError("add address fd00::2/128: EACCES", false), [
      new LinkError("delete sk0123: EBUSY", true),
      new StoreCorruptError("/var/lib/skein/ipam/n.cbor", "does not decode as CBOR"),
    ]);
    expect(e.code).toBe(5);
    expect(e.message).toBe(
      "add address fd00::2/128: EACCES; cleaning up after the failed ADD also failed: delete sk0123: EBUSY; IPAM state /var/lib/skein/ipam/n.cbor is corrupt (does not decode as CBOR); it was left untouched: restore it from a backup, or remove it only when no pod on this node holds an address",
    );
  });

  test("a transient original keeps code 11; no cleanup failure leaves it as it was", () => {
    expect(withCleanupFailures(new LinkError("set eth0 up: EBUSY", true), [new Error("boom")]).code).toBe(11);
    const plain = withCleanupFailures(new CniError(103, "address taken"), []);
    expect([plain.code, plain.message]).toEqual([103, "address taken"]);
  });
});

test("the error object's message is bounded: a huge one is cut, saying how much was left out", () => {
  const j = new CniError(3, `no address is allocated to container ${"c".repeat(130_000)} interface eth0`).toJSON("1.1.0");
  expect(j.msg.length).toBeLessThan(4200);
  expect(j.msg).toStartWith("no address is allocated to container ccc");
  expect(j.msg).toEndWith(`… (${130_000 + 52 - 4096} more characters)`);
  expect(new CniError(3, "short").toJSON("1.1.0").msg).toBe("short");
});
