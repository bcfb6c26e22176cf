// The DaemonSet's install path, run as the DaemonSet runs it: the init container's own command
// (read from deploy/base/daemonset.yaml) in a root that looks like the container (the image's
// /usr/local/bin/skein, the ConfigMap's conflist at its mountPath, the host directories at
// theirs), in a mount namespace of the test's own, so that the "host" directories are the
// test's. Then a pod ADD and DEL through the conflist it wrote and the binary it copied, with
// the node file where the conflist says (/var/lib/skein, a tmpfs of that namespace's), in a
// node namespace of the lab.
import { beforeAll, expect, test } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseAllDocuments } from "yaml";
import { runAsync } from "../agent/sys/exec.ts";
import { builtSkein, useLab, useTempDir } from "./harness/index.ts";

const lab = useLab("inst");
const tmp = useTempDir("inst");
const DEPLOY = resolve(import.meta.dir, "../deploy/base");
const FIXTURE = resolve(import.meta.dir, "fixtures/cni-exec.ts");

const docs = (file: string) => parseAllDocuments(readFileSync(`${DEPLOY}/${file}`, "utf8")).map((d) => d.toJS());
const daemonset = docs("daemonset.yaml").find((d) => d?.kind === "DaemonSet");
const configmap = docs("configmap.yaml").find((d) => d?.kind === "ConfigMap");
const init = daemonset.spec.template.spec.initContainers.find((c: any) => c.name === "install-cni");
const volumes = new Map<string, any>(daemonset.spec.template.spec.volumes.map((v: any) => [v.name, v]));

/** Runs `script` (sh) as root in a mount namespace of its own, `args` as $1…; its output. */
async function inMountNamespace(script: string, args: string[]) {
  return runAsync(["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", script, "sh", ...args], { allowFail: true, timeoutMs: 60_000 });
}

beforeAll(() => {
  lab.host("node");
  lab.host("pod");
});


test("the init container installs the binary and the conflist, atomically, where the DaemonSet mounts them", async () => {
  expect(init.command.slice(0, 2)).toEqual(["/bin/sh", "-ec"]);
  // the container's root: the host's programs read-only, the image's binary, each volume at its mountPath
  const root = `${tmp}/root`;
  const host = (p: string) => `${tmp}/host${p}`;
  const mounts: string[] = [];
  for (const m of init.volumeMounts) {
    const v = volumes.get(m.name);
    let src: string;
    if (v.hostPath) {
      src = host(v.hostPath.path);
      mkdirSync(src, { recursive: true });
    } else if (v.configMap) {
      // the ConfigMap's keys as the kubelet projects them (items: key → path)
      src = `${tmp}/configmap-${m.name}`;
      mkdirSync(src, { recursive: true });
      for (const it of v.configMap.items ?? Object.keys(configmap.data).map((key: string) => ({ key, path: key }))) writeFileSync(`${src}/${it.path}`, configmap.data[it.key]);
    } else throw new Error(`volume ${m.name}: neither hostPath nor configMap`);
    mounts.push(src, m.mountPath);
  }
  // a plugin from an earlier version, which a running pod ADD may be executing right now
  writeFileSync(host("/opt/cni/bin/skein"), "old");
  const setup = `
    R="$1"; SKEIN="$2"; shift 2
    mkdir -p "$R/usr" "$R/tmp"
    for d in bin lib lib64 sbin; do [ -L "/$d" ] && ln -sfn "$(readlink "/$d")" "$R/$d" || true; done
    mount --bind /usr "$R/usr"
    mount -o remount,bind,ro "$R/usr"
    mount -t tmpfs tmpfs "$R/usr/local/bin"
    cp "$SKEIN" "$R/usr/local/bin/skein"
    while [ $# -gt 0 ]; do mkdir -p "$R$2"; mount --bind "$1" "$R$2"; shift 2; done
    exec chroot "$R" ${init.command.map((c: string) => `'${c.replace(/'/g, `'"'"'`)}'`).join(" ")}
  `;
  const r = await inMountNamespace(setup, [root, builtSkein(), ...mounts]);
  expect({ exit: r.exitCode, stderr: r.stderr }).toEqual({ exit: 0, stderr: "" });
  // the host's directories hold the same binary, executable, and the ConfigMap's conflist
  const bin = host("/opt/cni/bin/skein");
  expect(Bun.hash(readFileSync(bin))).toBe(Bun.hash(readFileSync(builtSkein())));
  expect(statSync(bin).mode & 0o777).toBe(0o755);
  const conflist = host("/etc/cni/net.d/10-skein.conflist");
  expect(readFileSync(conflist, "utf8")).toBe(configmap.data["10-skein.conflist"]);
  expect(statSync(conflist).mode & 0o777).toBe(0o644);
  // nothing half-written left beside them
  expect(await Bun.$`ls -A ${host("/opt/cni/bin")} ${host("/etc/cni/net.d")}`.text()).not.toContain(".tmp");
}, 60_000);

test("a pod ADD and DEL through the conflist and the binary it installed, as the runtime runs them", async () => {
  const host = (p: string) => `${tmp}/host${p}`;
  const conflist = host("/etc/cni/net.d/10-skein.conflist");
  const list = JSON.parse(readFileSync(conflist, "utf8"));
  const skein = list.plugins.find((p: any) => p.type === "skein");
  // the node file the agent writes, where the conflist says, in this test's /var/lib
  const varlib = `${tmp}/varlib`;
  mkdirSync(`${varlib}/skein`, { recursive: true });
  writeFileSync(`${varlib}/skein/node.json`, JSON.stringify({ nodeName: "node", podCIDRs: ["10.244.7.0/24"], clusterCIDRs: ["10.244.0.0/16"] }));
  expect(skein.nodeFile.startsWith("/var/lib/")).toBe(true);
  expect(skein.dataDir.startsWith("/var/lib/")).toBe(true);
  chmodSync(host("/opt/cni/bin/skein"), 0o755);
  const cni = (command: string) =>
    inMountNamespace(`mount --bind "$1" /var/lib; shift; exec "$@"`, [varlib, process.execPath, FIXTURE, command, conflist, `${host("/opt/cni/bin")}:/usr/lib/cni`, lab.path("node"), lab.path("pod"), "install-e2e"]);
  const add = await cni("ADD");
  expect({ exit: add.exitCode, out: add.stdout.slice(0, 300) }).toMatchObject({ exit: 0 });
  const result = JSON.parse(add.stdout);
  const ip = result.ips[0].address.split("/")[0];
  expect(ip).toMatch(/^10\.244\.7\.\d+$/);
  // the pod has its address and its default route; the node routes to it
  expect((await lab.exec("pod", ["ip", "-4", "-o", "addr", "show", "dev", "eth0"])).stdout).toContain(`${ip}/32`);
  expect((await lab.exec("pod", ["ip", "route", "show", "default"])).stdout).toContain("via 169.254.1.1 dev eth0");
  expect((await lab.exec("node", ["ip", "route", "get", ip])).stdout).toMatch(/dev sk[0-9a-f]{13}/);
  // IPAM state went to the conflist's dataDir, inside this test's /var/lib
  expect(await Bun.$`ls ${varlib}/skein/ipam`.text()).not.toBe("");
  const del = await cni("DEL");
  expect({ exit: del.exitCode, out: del.stdout.trim() }).toEqual({ exit: 0, out: "deleted" });
  expect((await lab.exec("node", ["ip", "-o", "link"])).stdout).not.toMatch(/sk[0-9a-f]{13}/);
}, 60_000);
