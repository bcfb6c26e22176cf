// rtnetlink notifications against a real kernel, in a namespace of the test's own: what ip
// changes is heard decoded, and an overflowing receive buffer is reported, never silent.
import { describe, expect, test } from "bun:test";
import { useLab, waitFor } from "../../test/harness/index.ts";
import { inNetns, run } from "./exec.ts";
import { RtEvents } from "./rtevents.ts";
import type { RtMsg } from "./rtnl.ts";

const lab = useLab("rtev");

const ip = (path: string, ...args: string[]) => run(inNetns(path, ["ip", ...args]));

describe("rtnetlink notifications", () => {
  test("a route, a neighbour and a link deleted by someone else are heard", async () => {
    const path = lab.host("a");
    ip(path, "link", "add", "v0", "type", "veth", "peer", "name", "v1");
    ip(path, "addr", "add", "192.0.2.1/24", "dev", "v0");
    ip(path, "link", "set", "v0", "up");
    ip(path, "route", "add", "198.51.100.0/24", "via", "192.0.2.2", "proto", "86");
    ip(path, "neigh", "add", "192.0.2.9", "lladdr", "0a:00:00:00:00:09", "dev", "v0", "nud", "permanent");
    const ev = RtEvents.open(path);
    try {
      expect(ev.read()).toEqual({ messages: [], lost: false }); // made before it listened
      ip(path, "route", "del", "198.51.100.0/24");
      ip(path, "neigh", "del", "192.0.2.9", "dev", "v0");
      ip(path, "link", "del", "v0");
      const got: RtMsg[] = [];
      await waitFor("the link's removal", () => (got.push(...ev.read().messages), got.some((m) => m.kind === "link" && m.deleted && m.name === "v0")), 2000, 10);
      expect(got).toContainEqual(expect.objectContaining({ kind: "route", deleted: true, dst: "198.51.100.0/24", protocol: 86, gateway: "192.0.2.2" }));
      expect(got).toContainEqual(expect.objectContaining({ kind: "neigh", family: 4, ip: "192.0.2.9" }));
    } finally {
      ev.close();
    }
  });

  test("an overflowing receive buffer is reported as lost", async () => {
    const path = lab.host("b");
    ip(path, "link", "add", "v0", "type", "veth", "peer", "name", "v1");
    ip(path, "addr", "add", "192.0.2.1/24", "dev", "v0");
    ip(path, "link", "set", "v0", "up");
    const ev = RtEvents.open(path, { receiveBufferBytes: 4096 });
    try {
      const script = Array.from({ length: 500 }, (_, i) => `route add 10.${i >> 8}.${i & 255}.0/24 via 192.0.2.2`).join("\n");
      run(inNetns(path, ["ip", "-batch", "-"]), { stdin: script });
      expect(ev.read().lost).toBe(true);
      // and afterwards it hears again
      ip(path, "route", "del", "10.0.7.0/24");
      await waitFor("the next notification", () => ev.read().messages.some((m) => m.kind === "route" && m.deleted && m.dst === "10.0.7.0/24"), 2000, 10);
    } finally {
      ev.close();
    }
  });
});
