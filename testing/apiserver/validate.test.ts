// Names, labels and kinds as kube-apiserver validates them (cases from k8s.io/apimachinery's
// validation tests), and the depth and size limits of bodies.
import { describe, expect, test } from "bun:test";
import { checkTypeMeta, depthOf, pathSegmentProblems, validateObject } from "./validate.ts";
import { checkDepth, readBytes } from "./body.ts";
import { BUILTIN, type KubeObject } from "./resources.ts";
import { ApiError } from "./errors.ts";

const type = (kind: string) => BUILTIN.find((t) => t.kind === kind)!;
const errorOf = (f: () => void): ApiError | undefined => {
  try {
    f();
  } catch (e) {
    return e as ApiError;
  }
  return undefined;
};
// metadata only: the kinds' field rules are tested below
const fields = (kind: string, metadata: KubeObject["metadata"]) => errorOf(() => validateObject(type(kind), { metadata: { namespace: "default", ...metadata } }, false))?.details?.causes as Array<{ field: string }> | undefined;

describe("names by kind", () => {
  test.each([
    ["Pod", "a", true],
    ["Pod", "a.b-c", true],
    ["Pod", "1-pod", true],
    ["Pod", "A", false],
    ["Pod", "-a", false],
    ["Pod", "a-", false],
    ["Pod", "a..b", false],
    ["Pod", "a_b", false],
    ["Pod", "x".repeat(253), true],
    ["Pod", "x".repeat(254), false],
    ["Node", "node-1.example.com", true],
    ["EndpointSlice", "web-abc12", true],
    ["NetworkPolicy", "deny.all", true],
    ["Namespace", "kube-system", true],
    ["Namespace", "a.b", false],
    ["Namespace", "x".repeat(64), false],
    ["Service", "web", true],
    ["Service", "1web", false],
    ["Service", "web.a", false],
    ["Service", "x".repeat(63), true],
    ["Service", "x".repeat(64), false],
  ] as const)("%s %s: %p", (kind, name, ok) => {
    const causes = fields(kind, { name });
    if (ok) expect(causes).toBeUndefined();
    else expect(causes?.map((c) => c.field)).toEqual(["metadata.name"]);
  });

  test("generateName is checked as the start of a name; a missing name is Required", () => {
    expect(fields("Service", { name: "web-x1b2c", generateName: "web-" })).toBeUndefined();
    expect(fields("Service", { name: "a", generateName: "1web-" })?.map((c) => c.field)).toEqual(["metadata.generateName"]);
    const e = errorOf(() => validateObject(type("Pod"), { metadata: { namespace: "default" } }))!;
    expect(e.message).toBe('Pod "" is invalid: metadata.name: Required value: name or generateName is required');
  });

  test("path segments: '.', '..', '/' and '%' never name an object", () => {
    expect(pathSegmentProblems("..")).toEqual(["may not be '..'"]);
    expect(pathSegmentProblems(".")).toEqual(["may not be '.'"]);
    expect(pathSegmentProblems("a/b%")).toEqual(["may not contain '/'", "may not contain '%'"]);
    expect(pathSegmentProblems("a.b")).toEqual([]);
  });
});

describe("labels and annotations", () => {
  test.each([
    [{ app: "web" }, 0],
    [{ "app.kubernetes.io/name": "" }, 0],
    [{ "example.com/a_b.c-d": "A_b.9" }, 0],
    [{ "a/b/c": "x" }, 1],
    [{ "/a": "x" }, 1],
    [{ "Example.com/a": "x" }, 1],
    [{ ["x".repeat(64)]: "x" }, 1],
    [{ app: "-web" }, 1],
    [{ app: "x".repeat(64) }, 1],
    [{ app: "a b" }, 1],
  ])("labels %p: %d errors", (labels, n) => {
    expect(fields("Pod", { name: "p", labels })?.length ?? 0).toBe(n);
  });

  test("annotation keys are qualified names, values anything; neither map may be anything else", () => {
    expect(fields("Pod", { name: "p", annotations: { "example.com/x": "any value at all: ✓" } })).toBeUndefined();
    expect(fields("Pod", { name: "p", annotations: { "a b": "x" } })?.map((c) => c.field)).toEqual(["metadata.annotations"]);
    expect(fields("Pod", { name: "p", labels: ["x"] as unknown as Record<string, string> })?.map((c) => c.field)).toEqual(["metadata.labels"]);
    expect(fields("Pod", { name: "p", labels: { a: 5 } as unknown as Record<string, string> })?.map((c) => c.field)).toEqual(["metadata.labels.a"]);
  });
});

describe("kinds", () => {
  test("the body's kind and apiVersion must be the path's; missing ones are fine", () => {
    expect(errorOf(() => checkTypeMeta(type("Service"), { metadata: {} }))).toBeUndefined();
    expect(errorOf(() => checkTypeMeta(type("EndpointSlice"), { apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice", metadata: {} }))).toBeUndefined();
    expect(errorOf(() => checkTypeMeta(type("Service"), { kind: "Pod", metadata: {} }))).toMatchObject({ code: 400 });
    expect(errorOf(() => checkTypeMeta(type("EndpointSlice"), { apiVersion: "discovery.k8s.io/v1beta1", metadata: {} }))?.message).toBe("the API version in the data (discovery.k8s.io/v1beta1) does not match the expected API version (discovery.k8s.io/v1)");
  });
});

describe("bounds", () => {
  test("depth: counted without recursion, strings and escapes skipped", () => {
    let deep: unknown = 1;
    for (let i = 0; i < 200_000; i++) deep = [deep];
    expect(depthOf(deep, 600)).toBe(601);
    expect(depthOf({ a: [{ b: 1 }] })).toBe(3);
    expect(() => checkDepth('{"a": "[[[[[[\\"[[[[["}', 2)).not.toThrow();
    expect(() => checkDepth("[[[]]]", 2)).toThrow(/nested deeper than 2 levels/);
  });

  test("size: a declared length over the limit is refused before reading; a stream is cut at the limit", async () => {
    expect(await readBytes(new Request("http://x/", { method: "POST", body: "abc" }), 3)).toEqual(new TextEncoder().encode("abc"));
    await expect(readBytes(new Request("http://x/", { method: "POST", body: "abcd" }), 3)).rejects.toMatchObject({ code: 413 });
    let pulled = 0;
    const endless = new ReadableStream<Uint8Array>({
      pull: (c) => {
        pulled++;
        c.enqueue(new Uint8Array(1024));
      },
    });
    await expect(readBytes(new Request("http://x/", { method: "POST", body: endless }), 10_000)).rejects.toMatchObject({ code: 413, reason: "RequestEntityTooLarge" });
    expect(pulled).toBeLessThan(20);
  });
});
