import { expect, test } from "bun:test";
import { conntrackArgs, staleUdpFlows } from "./conntrack.ts";
import type { ServiceUnit } from "../../compiler/tables.ts";
import { backendKeyBytes, KEY_BYTES } from "../../compiler/keys.ts";

const keysOf = (ips: string[]) => {
  const k = new Uint8Array(ips.length * KEY_BYTES);
  ips.forEach((ip, i) => k.set(backendKeyBytes(ip, 5353), i * KEY_BYTES));
  return k;
};

const unit = (backends: string[], protocol: "UDP" | "TCP" = "UDP", ip = "10.96.0.10"): ServiceUnit => ({
  frontends: [{ family: 4, ip, protocol, port: 53, kind: "cluster", target: 7, masquerade: false }],
  targets: [{ id: 7, service: "default/dns:53/UDP", family: 4, scope: "internal", keys: keysOf(backends), ringSize: 0, ring: new Int32Array(0), affinity: false }],
});
const change = (before: ServiceUnit, after: ServiceUnit) => [{ service: "default/dns", before, after }];

test("a UDP backend that left its frontend is a stale flow; one that stayed is not", () => {
  expect(staleUdpFlows(change(unit(["10.244.0.2", "10.244.0.3"]), unit(["10.244.0.3"])))).toEqual([{ family: 4, dst: "10.96.0.10", dport: 53, backend: { ip: "10.244.0.2", port: 5353 } }]);
  expect(staleUdpFlows(change(unit(["10.244.0.2"]), unit(["10.244.0.2", "10.244.0.4"])))).toEqual([]);
});

test("a UDP frontend that went away takes all its flows; TCP is left to end by itself", () => {
  expect(staleUdpFlows(change(unit(["10.244.0.2"]), { frontends: [], targets: [] }))).toEqual([{ family: 4, dst: "10.96.0.10", dport: 53 }]);
  expect(staleUdpFlows(change(unit(["10.244.0.2"], "TCP"), unit([], "TCP")))).toEqual([]);
});

test("conntrack arguments name the frontend and, when one left, the backend", () => {
  expect(conntrackArgs({ family: 4, dst: "10.96.0.10", dport: 53, backend: { ip: "10.244.0.2", port: 5353 } })).toEqual(["-D", "-f", "ipv4", "-p", "udp", "--orig-dst", "10.96.0.10", "--dport", "53", "--reply-src", "10.244.0.2", "--reply-port-src", "5353"]);
  expect(conntrackArgs({ family: 6, dst: "fd00::10", dport: 53 })).toEqual(["-D", "-f", "ipv6", "-p", "udp", "--orig-dst", "fd00::10", "--dport", "53"]);
});
