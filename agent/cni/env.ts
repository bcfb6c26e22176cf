// CNI_* environment variables, checked per command as the spec requires.
import { COMMANDS, CniError, ErrorCode, type CniCommand } from "./spec.ts";

export interface CniEnv {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifname: string;
  args: string;
  path: string[];
}

const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
export const CONTAINER_ID_MAX = 256;

function invalid(msg: string): CniError {
  return new CniError(ErrorCode.InvalidEnv, msg);
}

/**
 * A name the kernel keeps as given and `ip` reads as one word: ASCII (the kernel's limit is
 * 15 bytes), no "%" (the kernel would pick a number for it), no "#" (`ip -batch` reads a
 * comment), quotes or backslashes (it unquotes them), no leading "-" (an option).
 */
export function checkIfname(name: string): void {
  if (name.length === 0 || name.length > 15) throw invalid(`CNI_IFNAME ${JSON.stringify(name)} must be 1 to 15 characters`);
  if (name === "." || name === ".." || !/^[A-Za-z0-9_.@+=~][A-Za-z0-9_.@+=~-]*$/.test(name)) {
    throw invalid(`CNI_IFNAME ${JSON.stringify(name)} is not a valid interface name (ASCII letters, digits and _ . - @ + = ~, not starting with -)`);
  }
}

export function parseEnv(env: Record<string, string | undefined>): CniEnv {
  const command = env.CNI_COMMAND ?? "";
  if (!(COMMANDS as readonly string[]).includes(command)) {
    throw invalid(`CNI_COMMAND ${JSON.stringify(command)} is not one of ${COMMANDS.join(", ")}`);
  }
  const c = command as CniCommand;
  const need = (name: string, when: CniCommand[]) => {
    const val = env[name] ?? "";
    if (when.includes(c) && val === "") throw invalid(`${name} is required for ${c}`);
    return val;
  };
  const containerId = need("CNI_CONTAINERID", ["ADD", "DEL", "CHECK"]);
  const netns = need("CNI_NETNS", ["ADD", "CHECK"]);
  const ifname = need("CNI_IFNAME", ["ADD", "DEL", "CHECK"]);
  // Stored with every allocation and named in messages: a runtime's ids are 64 characters.
  // Only ADD refuses a longer one: DEL must still tear down what an older plugin let in.
  if (c === "ADD" && containerId.length > CONTAINER_ID_MAX) throw invalid(`CNI_CONTAINERID is ${containerId.length} characters long, more than ${CONTAINER_ID_MAX}`);
  if (containerId && !CONTAINER_ID.test(containerId)) {
    throw invalid(`CNI_CONTAINERID ${JSON.stringify(containerId)} must start with a letter or digit and hold only letters, digits, '_', '.', '-'`);
  }
  if (ifname) checkIfname(ifname);
  // The path reaches `ip -batch` text and messages: a newline in it would start a command
  // of its own there (run in the node's namespace). DEL never uses it, so it is not refused.
  if (c !== "DEL" && /[\s\x00-\x1f\x7f]/.test(netns)) throw invalid(`CNI_NETNS ${JSON.stringify(netns.slice(0, 200))} holds whitespace or control characters`);
  return { command: c, containerId, netns, ifname, args: env.CNI_ARGS ?? "", path: (env.CNI_PATH ?? "").split(":").filter(Boolean) };
}
