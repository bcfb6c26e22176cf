import { expect, test } from "bun:test";
import { compile } from "../../compiler/reference/compile.ts";
import { clusterStateFrom } from "../../compiler/state.ts";
import { renderFull } from "./render.ts";

const many = (n: number) => {
  const objs: unknown[] = [];
  for (let i = 0; i < n; i++) {
    objs.push({ kind: "Service", metadata: { name: `s${i}`, namespace: "default" }, spec: { clusterIP: `10.96.${i >> 8}.${i & 255}`, ports: [{ port: 80 }] } });
    objs.push({
      kind: "EndpointSlice",
      metadata: { name: `s${i}-1`, namespace: "default", labels: { "kubernetes.io/service-name": `s${i}` } },
      addressType: "IPv4",
      ports: [{ port: 8080 }],
      endpoints: [{ addresses: [`10.244.${i >> 8}.${i & 255}`] }, { addresses: [`10.245.${i >> 8}.${i & 255}`] }],
    });
  }
  return renderFull(compile(clusterStateFrom(objs).state, { nodeName: "", nodeIPs: [], ringFactor: 25 }));
};

test("sets, maps and rules that look them up stay constant as services grow", () => {
  const count = (s: string, re: RegExp) => (s.match(re) ?? []).length;
  const small = many(3);
  const large = many(300);
  for (const re of [/^\s*(map|set) /gm, /@be4/g, /vmap @svc4/g]) expect(count(large, re)).toBe(count(small, re));
  // one chain per target, one ring chain per distinct ring size (both have 2 backends: 53)
  expect(count(large, /^\s*chain t_/gm)).toBe(300);
  expect(count(large, /^\s*chain ring4_/gm)).toBe(1);
});

test("the full resync replaces the table atomically", () => {
  expect(many(1).split("\n").slice(0, 3)).toEqual(["add table inet skein", "delete table inet skein", "table inet skein {"]);
});
