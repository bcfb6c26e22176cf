import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { openPodNetns } from "./pod-netns.ts";
import { CniError } from "./spec.ts";

const dir = mkdtempSync(`${tmpdir()}/skein-podns-`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const refusal = (path: string, missing?: number) => {
  try {
    openPodNetns(path, missing).close();
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    return { code: (e as CniError).code, msg: (e as CniError).message };
  }
  throw new Error(`${path} was accepted`);
};

test("a path too long for the kernel: code 4 saying so, the path cut short in the message", () => {
  const r = refusal(`/${"a".repeat(5000)}`);
  expect(r.code).toBe(4);
  expect(r.msg).toMatch(/^CNI_NETNS \/a{199}… is too long a path \(5001 characters\)$/);
});

test("a missing path: code 4, or the code CHECK asks for", () => {
  expect(refusal(`${dir}/none`)).toEqual({ code: 4, msg: `CNI_NETNS ${dir}/none does not exist` });
  expect(refusal(`${dir}/none`, 3).code).toBe(3);
});

test("a regular file, a directory, a FIFO: not a network namespace (and the FIFO does not block)", () => {
  writeFileSync(`${dir}/file`, "");
  Bun.spawnSync(["mkfifo", `${dir}/fifo`]);
  for (const p of [`${dir}/file`, dir, `${dir}/fifo`]) expect(refusal(p)).toEqual({ code: 4, msg: `CNI_NETNS ${p} is not a network namespace (such as /var/run/netns/NAME or /proc/PID/ns/net)` });
});

test("this process's own namespace: refused", () => {
  expect(refusal("/proc/self/ns/net").msg).toMatch(/is the node's own network namespace/);
});
