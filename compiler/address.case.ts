// The hostile values every reader of addresses and CIDRs must refuse, in one table run
// against each of them (compiler/address.test.ts, compiler/state.test.ts,
// agent/loop/state.test.ts, agent/cni/config.test.ts, agent/ipam/node-file.test.ts,
// test/cli.test.ts). Each value is refused both where an address is expected and where a
// CIDR naming a network is: a reader of either kind runs the whole table.

export interface Hostile {
  value: unknown;
  /** why it is refused as an address (compiler/address.ts's wording) */
  asAddress: RegExp;
}

const long = "1.".repeat(5000) + "1";

export const HOSTILE: Hostile[] = [
  { value: "10.1", asAddress: /not a valid IPv4 address \(must be four decimal parts\)/ },
  { value: "1.2.3", asAddress: /four decimal parts/ },
  { value: "1.2.3.4.5", asAddress: /four decimal parts/ },
  { value: "10..0.1", asAddress: /"" is not a decimal number/ },
  { value: "0x0a.0.0.1", asAddress: /"0x0a" is not a decimal number/ },
  { value: "0x0a000001", asAddress: /not a valid IP address/ },
  { value: "167772161", asAddress: /not a valid IP address/ },
  { value: "010.0.0.1", asAddress: /not a valid IPv4 address \(leading zero\)/ },
  { value: "10.0.0.01", asAddress: /leading zero/ },
  { value: "10.0.00.1", asAddress: /leading zero/ },
  { value: "256.0.0.1", asAddress: /each part must be 0-255/ },
  { value: "10.0.0.-1", asAddress: /"-1" is not a decimal number/ },
  { value: "1e1.0.0.1", asAddress: /"1e1" is not a decimal number/ },
  { value: " 10.0.0.1", asAddress: /whitespace or control characters/ },
  { value: "10.0.0.1 ", asAddress: /whitespace or control characters/ },
  { value: "1.2.3.4\n", asAddress: /whitespace or control characters/ },
  { value: "10.0.0.1\t", asAddress: /whitespace or control characters/ },
  { value: "10.0.0.1\u0000", asAddress: /whitespace or control characters/ },
  { value: "10.0.0.1\u200b", asAddress: /characters other than ASCII/ },
  { value: "１.２.３.４", asAddress: /characters other than ASCII/ },
  { value: "٣.٣.٣.٣", asAddress: /characters other than ASCII/ },
  { value: "", asAddress: /\(empty\)/ },
  { value: long, asAddress: /\(10001 characters\) is not a valid IP address \(too long/ },
  { value: "10.0.0.1/", asAddress: /a CIDR where an address is expected/ },
  { value: "10.0.0.1/24", asAddress: /a CIDR where an address is expected/ },
  { value: "10.0.0.0/33", asAddress: /a CIDR where an address is expected/ },
  { value: "10.0.0.0/08", asAddress: /a CIDR where an address is expected/ },
  { value: "10.0.0.0/-1", asAddress: /a CIDR where an address is expected/ },
  { value: "10.0.0.0/+8", asAddress: /a CIDR where an address is expected/ },
  { value: "10.0.0.0/8/8", asAddress: /a CIDR where an address is expected/ },
  { value: "10.0.0.0/8 ", asAddress: /whitespace or control characters/ },
  { value: "2001:db8::/129", asAddress: /a CIDR where an address is expected/ },
  { value: "2001:db8::/064", asAddress: /a CIDR where an address is expected/ },
  { value: "::ffff:10.0.0.1", asAddress: /IPv4-mapped/ },
  { value: "::ffff:a00:1", asAddress: /IPv4-mapped: write the IPv4 address 10\.0\.0\.1/ },
  { value: "::1.2.3.4", asAddress: /IPv4-mapped or -compatible/ },
  { value: "::ffff:0:0/96", asAddress: /a CIDR where an address is expected/ },
  { value: "fe80::1%eth0", asAddress: /zone index not allowed/ },
  { value: "10.0.0.1%eth0", asAddress: /not a valid IPv4 address/ },
  { value: "2001:DB8::1", asAddress: /not in canonical form, which is 2001:db8::1/ },
  { value: "2001:db8:0:0::1", asAddress: /not in canonical form, which is 2001:db8::1/ },
  { value: "2001:0db8::1", asAddress: /not in canonical form, which is 2001:db8::1/ },
  { value: "fd00:0:0:0:0:0:0:1", asAddress: /not in canonical form, which is fd00::1/ },
  { value: "fd00::1::2", asAddress: /not a valid IPv6 address/ },
  { value: "1:2:3:4:5:6:7:8:9", asAddress: /not a valid IPv6 address/ },
  { value: "gggg::1", asAddress: /not a valid IPv6 address/ },
  { value: "localhost", asAddress: /not a valid IP address/ },
  { value: 42, asAddress: /not a string but a number/ },
  { value: 167772161, asAddress: /not a string but a number/ },
  { value: true, asAddress: /not a string but a boolean/ },
  { value: null, asAddress: /not a string but null/ },
  { value: {}, asAddress: /not a string but an object/ },
  { value: { ip: "10.0.0.1" }, asAddress: /not a string but an object/ },
  { value: [], asAddress: /not a string but a list/ },
  { value: ["10.0.0.1"], asAddress: /not a string but a list/ },
];

/** Pod CIDRs that read as CIDRs but cannot work (agent/ipam/cidr.ts), and why. */
export const UNUSABLE_POD_CIDRS: Array<[string, RegExp]> = [
  ["0.0.0.0/0", /covers every address/],
  ["::/0", /covers every address/],
  ["0.0.0.0/8", /unspecified/],
  ["0.0.0.0/24", /unspecified/],
  ["::/64", /unspecified/],
  ["127.0.0.0/8", /loopback/],
  ["127.1.0.0/24", /loopback/],
  ["::1/128", /loopback/],
  ["169.254.0.0/16", /link-local/],
  ["169.254.1.0/24", /link-local/],
  ["169.0.0.0/8", /link-local/],
  ["fe80::/10", /link-local/],
  ["fe80::/64", /link-local/],
  ["224.0.0.0/4", /multicast/],
  ["239.1.0.0/16", /multicast/],
  ["ff00::/8", /multicast/],
  ["ff02::/16", /multicast/],
  ["::fffe:0:0/95", /IPv4-mapped/],
  ["255.255.255.0/24", /broadcast/],
  ["10.0.0.0/31", /too small/],
  ["10.0.0.0/32", /too small/],
  ["fd00::/127", /too small/],
  ["fd00::/128", /too small/],
];

/** Values every reader accepts, and for each kind of field. */
export const VALID_ADDRESSES = ["10.0.0.1", "0.0.0.0", "255.255.255.255", "fd00::1", "2001:db8::1", "::1"];
export const VALID_CIDRS = ["10.0.0.0/8", "2001:db8::/64", "0.0.0.0/0", "::/0", "192.168.1.0/24"];
export const VALID_POD_CIDRS = ["10.244.1.0/24", "10.0.0.0/30", "fd00:10:244:1::/64", "2001:db8::/126"];
