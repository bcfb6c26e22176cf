import { expect, test } from "bun:test";
import { parseEnv } from "./env.ts";

const full = { CNI_COMMAND: "ADD", CNI_CONTAINERID: "abc", CNI_NETNS: "/var/run/netns/x", CNI_IFNAME: "eth0", CNI_PATH: "/opt/cni/bin:/usr/lib/cni" };

test("parses a complete ADD environment", () => {
  expect(parseEnv(full)).toEqual({ command: "ADD", containerId: "abc", netns: "/var/run/netns/x", ifname: "eth0", args: "", path: ["/opt/cni/bin", "/usr/lib/cni"] });
});

test.each([
  [{ ...full, CNI_COMMAND: "FOO" }, /CNI_COMMAND "FOO" is not one of/],
  [{ ...full, CNI_NETNS: undefined }, /CNI_NETNS is required for ADD/],
  [{ ...full, CNI_COMMAND: "CHECK", CNI_NETNS: "" }, /CNI_NETNS is required for CHECK/],
  [{ ...full, CNI_CONTAINERID: "a b" }, /CNI_CONTAINERID "a b"/],
  [{ ...full, CNI_CONTAINERID: "a".repeat(257) }, /^CNI_CONTAINERID is 257 characters long, more than 256$/],
  [{ ...full, CNI_IFNAME: "averyveryverylongname" }, /1 to 15 characters/],
  [{ ...full, CNI_IFNAME: "a:b" }, /not a valid interface name/],
  ...["eth%d", "ééééééééé", "#x", "e#", "-x", "ＥＴＨ０", 'a"b', "a\\b", "a b"].map((n) => [{ ...full, CNI_IFNAME: n }, /is not a valid interface name/] as const),
  [{ ...full, CNI_NETNS: "/tmp/ns\nroute del default" }, /CNI_NETNS "\/tmp\/ns\\nroute del default" holds whitespace or control characters/],
  [{ ...full, CNI_COMMAND: "CHECK", CNI_NETNS: "/tmp/a b" }, /CNI_NETNS "\/tmp\/a b" holds whitespace/],
])("rejects %o with code 4", (env, msg) => {
  try {
    parseEnv(env);
    throw new Error("accepted");
  } catch (e) {
    expect((e as { code?: number }).code).toBe(4);
    expect((e as Error).message).toMatch(msg);
  }
});

test("DEL needs no netns; STATUS and GC need no container", () => {
  expect(parseEnv({ ...full, CNI_COMMAND: "DEL", CNI_NETNS: "" }).command).toBe("DEL");
  // DEL never uses the path: a bad one must not stop the teardown
  expect(parseEnv({ ...full, CNI_COMMAND: "DEL", CNI_NETNS: "/tmp/a\nb" }).command).toBe("DEL");
  expect(parseEnv({ CNI_COMMAND: "STATUS" }).command).toBe("STATUS");
  expect(parseEnv({ CNI_COMMAND: "GC" }).command).toBe("GC");
});
