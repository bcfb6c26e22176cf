// Named network namespaces for the demo, the tests and `skein cleanup`. Everything made here
// carries a caller-chosen prefix, so that teardown can find it again even after a crash.
import { existsSync, readdirSync, statSync } from "node:fs";
import { run } from "./exec.ts";

export const NETNS_DIR = "/var/run/netns";

/** Name prefixes of the namespaces the demo and the test suite create (`skein cleanup`
 * removes them by default; the CLI must not load the fixtures to know them). */
export const DEMO_PREFIX = "skdemo-";
export const TEST_PREFIX = "skt-";

export function netnsPath(name: string): string {
  return `${NETNS_DIR}/${name}`;
}

export function listNetns(): string[] {
  if (!existsSync(NETNS_DIR)) return [];
  return readdirSync(NETNS_DIR).sort();
}

export function addNetns(name: string): string {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new Error(`invalid network namespace name ${JSON.stringify(name)}`);
  run(["ip", "netns", "add", name]);
  run(["ip", "-n", name, "link", "set", "lo", "up"]);
  return netnsPath(name);
}

/** Kills what still runs inside, then removes the namespace; a missing one is not an error. */
export function deleteNetns(name: string): void {
  const pids = run(["ip", "netns", "pids", name], { allowFail: true }).stdout.split(/\s+/).filter(Boolean);
  for (const pid of pids) {
    try {
      process.kill(Number(pid), "SIGKILL");
    } catch {
      // already gone
    }
  }
  const r = run(["ip", "netns", "del", name], { allowFail: true });
  if (r.exitCode !== 0 && existsSync(netnsPath(name))) {
    throw new Error(`cannot delete network namespace ${name}: ${r.stderr.trim()}`);
  }
}

export function deleteNetnsWithPrefix(prefix: string): string[] {
  if (!prefix) throw new Error("refusing to delete network namespaces with an empty prefix");
  const victims = listNetns().filter((n) => n.startsWith(prefix));
  for (const n of victims) deleteNetns(n);
  return victims;
}

/** This thread's network namespace (the node's, for the agent and the CNI plugin): its nsfs device and inode. */
export function ownNetnsId(): { dev: bigint; ino: bigint } {
  try {
    return statSync("/proc/thread-self/ns/net", { bigint: true });
  } catch {
    return statSync("/proc/self/ns/net", { bigint: true }); // kernels before 3.17
  }
}
