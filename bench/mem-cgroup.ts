// The memory cgroup bench/ring-memory.ts measures in: a child, named for the process, of the
// memory cgroup the bench runs in (cgroup v1's memory hierarchy, or the v2 unified one). The
// bench's parent process knows its helper's pid, so it can remove the directory of a helper
// that was killed before it could.
import { readFileSync } from "node:fs";

/** The memory cgroup this process runs in, and how to read a cgroup's kernel-memory counter (v1 kmem, or v2 memory.stat's kernel). */
export function memoryCgroup(): { base: string; kernelBytes: (dir: string) => number } {
  const lines = readFileSync("/proc/self/cgroup", "utf8").trim().split("\n");
  const v1 = lines.find((l) => l.split(":")[1]?.split(",").includes("memory"));
  const base = v1 ? `/sys/fs/cgroup/memory${v1.split(":")[2]}` : `/sys/fs/cgroup${lines.find((l) => l.startsWith("0::"))!.slice(3)}`;
  return {
    base: base.replace(/\/$/, ""),
    kernelBytes: v1
      ? (d) => Number(readFileSync(`${d}/memory.kmem.usage_in_bytes`, "utf8"))
      : (d) => Number(/^kernel (\d+)$/m.exec(readFileSync(`${d}/memory.stat`, "utf8"))?.[1] ?? NaN),
  };
}

/** The cgroup directory bench/ring-memory.ts makes for itself when it runs as `pid` (under the same cgroup as this process). */
export const helperCgroupDir = (pid: number) => `${memoryCgroup().base}/skein-bench-${pid}`;
