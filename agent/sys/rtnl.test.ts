import { describe, expect, test } from "bun:test";
import { Msg } from "./netlink.ts";
import { decodeRt, RTM_DELNEIGH, RTM_NEWLINK, RTM_NEWROUTE, RTNH_F_ONLINK, RTPROT_SKEIN } from "./rtnl.ts";

/** A message as the kernel sends it: the netlink header (length filled in), then `build`'s body. */
const message = (type: number, head: Uint8Array, build: (m: Msg) => void = () => {}) => {
  const m = new Msg(type, 0, head);
  build(m);
  return m.bytes(7).slice();
};

describe("decodeRt", () => {
  test("reads a route: destination, protocol, flags, gateway, output link, table", () => {
    const head = new Uint8Array(12);
    head.set([10, 64, 0, 0, 254, RTPROT_SKEIN, 0, 1]);
    new DataView(head.buffer).setUint32(8, RTNH_F_ONLINK, true);
    const b = message(RTM_NEWROUTE, head, (m) => {
      m.attr(1, Uint8Array.from([0xfd, 0, 0, 0x10, 2, 0x44, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]));
      m.attr(5, Uint8Array.from([0xfd, 0, 0, 0x10, 2, 0x44, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]));
      m.u32(4, 9);
      m.u32(15, 254);
    });
    expect(decodeRt(b)).toEqual({ kind: "route", deleted: false, family: 6, dst: "fd00:10:244:2::/64", table: 254, protocol: RTPROT_SKEIN, scope: 0, type: 1, flags: RTNH_F_ONLINK, gateway: "fd00:10:244:2::", oif: 9 });
  });

  test("reads a VXLAN link's settings and an FDB entry's removal", () => {
    const ifi = new Uint8Array(16);
    new DataView(ifi.buffer).setInt32(4, 5, true);
    const link = message(RTM_NEWLINK, ifi, (m) => {
      m.str(3, "skein.vxlan");
      m.nest(18, (w) => {
        w.str(1, "vxlan");
        w.nest(2, () => {
          w.u32(1, 1);
          w.bytes(4, Uint8Array.from([192, 168, 50, 11]));
          w.u32(3, 2);
          w.bytes(15, Uint8Array.from([0x12, 0xb5]));
          w.bytes(7, Uint8Array.of(0));
          w.bytes(2, Uint8Array.from([0, 0, 0, 0])); // no group: zeros
        });
      });
    });
    expect(decodeRt(link)).toMatchObject({ kind: "link", index: 5, name: "skein.vxlan", type: "vxlan", vxlan: { id: 1, local: "192.168.50.11", link: 2, port: 4789, learning: false } });
    expect((decodeRt(link) as { vxlan: object }).vxlan).not.toHaveProperty("group");

    const nd = new Uint8Array(12);
    nd[0] = 7; // AF_BRIDGE
    new DataView(nd.buffer).setInt32(4, 5, true);
    const fdb = message(RTM_DELNEIGH, nd, (m) => m.attr(2, Uint8Array.from([0x0a, 0x58, 0, 0, 0, 3])).attr(1, Uint8Array.from([192, 168, 60, 13])));
    expect(decodeRt(fdb)).toEqual({ kind: "neigh", deleted: true, family: "bridge", index: 5, state: 0, flags: 0, ip: "192.168.60.13", mac: "0a:58:00:00:00:03" });
  });

  test("hostile bytes: truncated, overlong attributes, garbage — undefined or a message, never a throw or a read past the end", () => {
    const head = new Uint8Array(12);
    head[0] = 2;
    const good = message(RTM_NEWROUTE, head, (m) => m.attr(1, Uint8Array.from([10, 0, 0, 0])));
    for (let cut = 0; cut < good.length; cut++) {
      const b = good.slice(0, cut);
      if (cut >= 4) new DataView(b.buffer).setUint32(0, cut, true);
      expect(() => decodeRt(b)).not.toThrow();
    }
    const overlong = good.slice();
    new DataView(overlong.buffer).setUint16(28, 200, true); // the attribute claims 200 bytes
    expect(decodeRt(overlong)).toBeUndefined();
    // a length in the header beyond the bytes at hand
    expect(decodeRt(good, 0, good.length + 4)).toBeUndefined();
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
    for (let i = 0; i < 5000; i++) {
      const b = Uint8Array.from({ length: 16 + (rnd() % 80) }, rnd);
      new DataView(b.buffer).setUint16(4, [16, 17, 20, 21, 24, 25, 28, 29][i % 8]!, true);
      if (i % 2) b[16] = [0, 2, 7, 10][i % 4]!;
      expect(() => decodeRt(b, 0, b.length)).not.toThrow();
    }
  });
});
