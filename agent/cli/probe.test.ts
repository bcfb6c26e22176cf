// `skein probe serve` on loopback: the answer names the server and the peer; with an upstream,
// the upstream's answer follows; an upstream that leads back to the server itself ends at once
// instead of growing a chain of calls.
import { expect, test } from "bun:test";
import { connect, serve } from "./probe.ts";

const freePort = () => {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = l.port;
  l.stop(true);
  return p;
};

test("a tier calling the next: the answer carries the upstream's, over TCP and UDP", async () => {
  const [back, front] = [freePort(), freePort()];
  void serve({ name: "back", tcp: [back], udp: [back], host: "127.0.0.1", log: () => {} });
  void serve({ name: "front", tcp: [front], udp: [front], host: "127.0.0.1", upstream: { host: "127.0.0.1", port: back }, log: () => {} });
  await Bun.sleep(0);
  for (const proto of ["tcp", "udp"] as const) {
    const a = await connect(proto, "127.0.0.1", front, 2000);
    expect(a).toMatch(/^front 127\.0\.0\.1 -> back 127\.0\.0\.1$/);
  }
});

test("an upstream that is the server itself: answered within a moment, the chain cut at the bound", async () => {
  const port = freePort();
  void serve({ name: "loop", tcp: [port], host: "127.0.0.1", upstream: { host: "127.0.0.1", port }, maxUpstreamCalls: 4, log: () => {} });
  await Bun.sleep(0);
  const t0 = performance.now();
  const a = await connect("tcp", "127.0.0.1", port, 3000);
  expect(performance.now() - t0).toBeLessThan(1000);
  expect(a.split(" -> ")).toHaveLength(6);
  expect(a).toEndWith("not asked (4 calls in flight)");
});
