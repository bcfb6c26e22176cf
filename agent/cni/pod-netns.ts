// The pod's network namespace, opened once. CNI_NETNS is a path the runtime (or whoever
// can write where it points) controls: a symlink swapped between the checks and the wiring
// would have the wiring land in the node's namespace. So the path is opened once, without
// following it into anything that blocks or acts on open (O_PATH), the checks look at that
// descriptor, and every later step reaches the same namespace through
// /proc/<pid>/fd/<n> of this process, which names the open file, never the path again.
import { closeSync, fstatSync, openSync } from "node:fs";
import { CniError, ErrorCode } from "./spec.ts";
import { ownNetnsId } from "../sys/netns.ts";

/** O_PATH (Linux, every architecture bun runs on): open without reading, never blocks. */
const O_PATH = 0o10000000;
const O_CLOEXEC = 0o2000000;

export interface PodNetns {
  /** CNI_NETNS as given, for messages and the result */
  given: string;
  /** names the opened namespace for this process and its children (nsenter, ip) */
  path: string;
  close(): void;
}

/** A path for a message: CNI_NETNS is outside input, of any length (env.ts refuses control characters in it). */
export const shownPath = (p: string) => (p.length > 200 ? `${p.slice(0, 200)}…` : p);

/**
 * Opens CNI_NETNS and checks that it is a namespace file (nsfs, as /var/run/netns/NAME and
 * /proc/PID/ns/net are) and not the node's own; CniError code 4 otherwise, or `missing`'s
 * code when it does not exist (CHECK answers "unknown container" then).
 */
export function openPodNetns(given: string, missing: number = ErrorCode.InvalidEnv): PodNetns {
  let fd: number;
  try {
    fd = openSync(given, O_PATH | O_CLOEXEC);
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code === "ENOENT") throw new CniError(missing, `CNI_NETNS ${shownPath(given)} does not exist`);
    if (code === "ENAMETOOLONG") throw new CniError(ErrorCode.InvalidEnv, `CNI_NETNS ${shownPath(given)} is too long a path (${given.length} characters)`);
    throw new CniError(ErrorCode.InvalidEnv, `CNI_NETNS ${shownPath(given)} cannot be opened: ${typeof code === "string" ? code : (e as Error).message}`);
  }
  try {
    const st = fstatSync(fd, { bigint: true });
    const own = ownNetnsId();
    // Every namespace file lives on the one nsfs file system: another device is a plain
    // file, a directory, a FIFO or a device, which setns would refuse or open would act on.
    if (st.dev !== own.dev) {
      throw new CniError(ErrorCode.InvalidEnv, `CNI_NETNS ${shownPath(given)} is not a network namespace (such as /var/run/netns/NAME or /proc/PID/ns/net)`);
    }
    if (st.ino === own.ino) {
      throw new CniError(ErrorCode.InvalidEnv, `CNI_NETNS ${shownPath(given)} is the node's own network namespace (the plugin's), not a pod's: refused`);
    }
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  let open = true;
  return {
    given,
    path: `/proc/${process.pid}/fd/${fd}`,
    close: () => {
      if (open) closeSync(fd);
      open = false;
    },
  };
}
