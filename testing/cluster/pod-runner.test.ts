import { expect, test } from "bun:test";
import { eventName, podNetnsName, podPorts, runningStatus } from "./pod-runner.ts";

test("names made from a pod's: its namespace and its Events stay valid for a 253-character pod name", () => {
  const long = "b".repeat(253);
  const pod = { metadata: { name: long, uid: "0a1b2c3d-aaaa-bbbb-cccc-000000000000" } };
  expect(podNetnsName(pod)).toBe(`${"b".repeat(40)}-0a1b2c`);
  const e = eventName(long, 1_700_000_000_000);
  expect(e.length).toBeLessThanOrEqual(253);
  expect(e).toMatch(/^b+\.[0-9a-f]+$/);
  // a cut that would end in a dot or a dash is trimmed: a name must end alphanumeric before the suffix
  expect(eventName(`${"a".repeat(238)}.${"c".repeat(20)}`, 1_700_000_000_000)).toMatch(/^a{238}\.[0-9a-f]+$/);
  expect(eventName("web")).toMatch(/^web\.[0-9a-f]+$/);
});

test("every container port, once, in order; status as a kubelet writes it", () => {
  expect(podPorts({ spec: { containers: [{ ports: [{ containerPort: 8080 }, { containerPort: 53, protocol: "UDP" }] }, { ports: [{ containerPort: 8080 }, { containerPort: 0 }] }] } })).toEqual([53, 8080]);
  const s = runningStatus({ metadata: { uid: "u" }, spec: { containers: [{ name: "c", image: "i" }] } }, { ips: ["10.244.1.2", "fd00::2"], hostIP: "192.0.2.1", now: "2026-11-29T00:00:00Z" });
  expect(s).toMatchObject({ phase: "Running", podIP: "10.244.1.2", podIPs: [{ ip: "10.244.1.2" }, { ip: "fd00::2" }], hostIP: "192.0.2.1" });
  expect(s.conditions.find((c: any) => c.type === "Ready").status).toBe("True");
  expect(s.containerStatuses[0]).toMatchObject({ name: "c", ready: true, state: { running: {} } });
});
