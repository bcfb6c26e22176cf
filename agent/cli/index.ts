// The CLI dispatcher. Subcommands that a later part of skein fills in say so and exit 69
// (EX_UNAVAILABLE) instead of pretending; usage errors exit 2.
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { existsSync } from "node:fs";
import type { Reported } from "./cleanup-plan.ts";
import { DEMO_PREFIX, TEST_PREFIX } from "../sys/netns.ts";
import { versionInfo } from "../version.ts";
import { addressFamily, unicastProblem } from "../../compiler/address.ts";
import { parseCidr } from "../ipam/cidr.ts";
import { DEFAULT_MARKS, hex32, MIN_CT_MARK_BITS, MIN_MARK_BITS, parseMask } from "../datapath/marks.ts";

export const EXIT_USAGE = 2;
export const EXIT_UNAVAILABLE = 69;

class Unavailable extends Error {}
class UsageError extends Error {}

/** A whole number from lo to hi, in decimal digits only: Number() would take "" and " " as 0,
 * and hex, octal, binary and exponent forms as other numbers than the ones written. */
const whole = (lo: number, hi: number, what = `a whole number from ${lo} to ${hi}`) => (s: string) => {
  const n = /^(0|[1-9][0-9]{0,14})$/.test(s) ? Number(s) : NaN;
  if (!(n >= lo && n <= hi)) throw new InvalidArgumentError(`${JSON.stringify(s.slice(0, 40))} is not ${what}`);
  return n;
};

const parsePort = whole(1, 65535, "a port (1-65535)");

function notYet(what: string): never {
  throw new Unavailable(`skein ${what}: not available yet in this build of skein ${versionInfo().skein}; it arrives with a later release (see README, "What works today")`);
}

interface AgentFlags {
  kubeconfig?: string;
  nodeName?: string;
  clusterCidr: string[];
  serviceCidr: string[];
  nodeportAddresses: string[];
  ringFactor: number;
  coalesceMs: number;
  nodeFile: string;
  flushUdp: boolean;
  masquerade: boolean;
  verifyInterval: number;
  policyLogInterval: number;
  logLevel: string;
  markMask: number;
  ctMarkMask: number;
  overlay: boolean;
  overlayMode: "auto" | "vxlan" | "direct";
  underlayIp?: string;
  publicIp?: string;
  site?: string;
  natsUrl?: string[];
  natsConfig?: string;
  natsUser?: string;
  natsPasswordFile?: string;
  natsTokenFile?: string;
  natsNkeyFile?: string;
  natsCa?: string;
  natsCert?: string;
  natsKey?: string;
  gossipBucket: string;
  gossipReplicas: number;
  heartbeatMs: number;
  peerTtlMs: number;
  httpListen: string;
  httpSocket?: string;
  httpTokenFile?: string;
  healthPort: number;
  healthInterval: number;
}

/** One address a node is reached at, read strictly (compiler/address.ts): one host's. */
function one(flag: string, s: string, cmd = "agent"): string {
  try {
    addressFamily(s);
  } catch (e) {
    throw new UsageError(`skein ${cmd}: ${flag}: ${(e as Error).message}`);
  }
  const why = unicastProblem(s);
  if (why) throw new UsageError(`skein ${cmd}: ${flag}: ${JSON.stringify(s)} is ${why}: not an address a node is reached at`);
  return s;
}

/** The pod network's settings from the flags; the NATS part only when a server or file is given. */
async function networkOptions(o: AgentFlags) {
  if (!o.overlay) return undefined;
  if (o.peerTtlMs <= o.heartbeatMs) throw new UsageError(`skein agent: --peer-ttl-ms (${o.peerTtlMs}) must be longer than --heartbeat-ms (${o.heartbeatMs}): every record would expire between two heartbeats`);
  if (o.site !== undefined && !/^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$/.test(o.site)) throw new UsageError(`skein agent: --site: ${JSON.stringify(o.site.slice(0, 70))} is not a label value (at most 63 letters, digits, '-', '_', '.', starting and ending with a letter or digit)`);
  const given = o.natsUrl?.length || o.natsConfig !== undefined;
  let nats;
  if (given) {
    const { loadNatsConfig, NatsConfigError } = await import("../gossip/config.ts");
    const { readFileBounded } = await import("../sys/bounded-read.ts");
    const secret = (flag: string, file: string | undefined) => {
      if (file === undefined) return undefined;
      try {
        return readFileBounded(file, 4096, `${flag} ${file}`).toString("utf8").trim();
      } catch (e) {
        throw new UsageError(`skein agent: ${flag}: ${(e as Error).message}`);
      }
    };
    try {
      nats = loadNatsConfig({
        file: o.natsConfig,
        flags: {
          servers: o.natsUrl?.length ? o.natsUrl : undefined,
          user: o.natsUser,
          password: secret("--nats-password-file", o.natsPasswordFile),
          token: secret("--nats-token-file", o.natsTokenFile),
          nkeySeedFile: o.natsNkeyFile,
          tlsCa: o.natsCa,
          tlsCert: o.natsCert,
          tlsKey: o.natsKey,
        },
      });
    } catch (e) {
      if (e instanceof NatsConfigError) throw new UsageError(`skein agent: ${e.message}`);
      throw e;
    }
  } else if (o.natsUser || o.natsPasswordFile || o.natsTokenFile || o.natsNkeyFile || o.natsCa || o.natsCert || o.natsKey) {
    throw new UsageError("skein agent: NATS credentials are given but no server: add --nats-url or --nats-config");
  }
  return {
    mode: o.overlayMode,
    underlayIP: o.underlayIp,
    publicIP: o.publicIp,
    site: o.site,
    ttlMs: o.peerTtlMs,
    heartbeatMs: o.heartbeatMs,
    bucket: o.gossipBucket,
    replicas: o.gossipReplicas,
    nats,
  };
}

/** Colours only on a terminal, and never with NO_COLOR set (no-color.org). */
const colour = () => !!process.stdout.isTTY && !process.env.NO_COLOR;

/** A GET to the running agent; its refusal or absence ends the command (exit 69 when none answers). */
async function live(path: string, o: { agent?: string; tokenFile?: string }, accept?: string) {
  const { askAgent, AgentUnreachable, refusal } = await import("./client.ts");
  let r;
  try {
    r = await askAgent(path, o, accept);
  } catch (e) {
    if (e instanceof AgentUnreachable) throw new Unavailable(`skein: ${e.message}`);
    throw e;
  }
  if (r.status >= 400) throw new Error(`the agent refused ${path.split("?")[0]}: ${refusal(r)}`);
  // what is printed or rendered from a JSON answer must be an object, whatever the agent (or an --agent that is none) sent
  if ((accept ?? "application/json") === "application/json" && (typeof r.json !== "object" || r.json === null || Array.isArray(r.json))) throw new Error(`the agent answered ${path.split("?")[0]} with no JSON object: ${JSON.stringify(r.text.slice(0, 120))}`);
  return r;
}

export function buildProgram(out: (s: string) => void, err: (s: string) => void): Command {
  const program = new Command("skein")
    .description("Kubernetes networking in one binary: CNI plugin, service proxy, network policy and overlay")
    .configureOutput({ writeOut: out, writeErr: err })
    .exitOverride()
    .showHelpAfterError("(run 'skein help' for the list of commands)")
    .showSuggestionAfterError(true)
    .allowExcessArguments(false)
    .helpCommand("help [command]", "show help for a command");

  program
    .command("version")
    .description("print the version of skein and the CNI versions it speaks")
    .option("--json", "print JSON")
    .option("--verbose", "also load the embedded rule compiler and report its ABI")
    .action(async (o: { json?: boolean; verbose?: boolean }) => {
      const v: Record<string, unknown> = versionInfo();
      if (o.verbose) {
        const { loadCompiler } = await import("../../compiler/wasm.ts");
        v.compilerAbi = (await loadCompiler()).abiVersion();
      }
      out(
        o.json
          ? JSON.stringify(v) + "\n"
          : `skein ${v.skein} (CNI ${(v.cniVersions as string[]).join(", ")}; ${v.runtime}; ${v.platform})${o.verbose ? `\ncompiler.wasm ABI ${v.compilerAbi}` : ""}\n`,
      );
    });

  // every address and CIDR given on the command line is read strictly (compiler/address.ts)
  // before anything is contacted; the refusal quotes the value cut short (commander's own
  // message would repeat it whole)
  const strictly = (cmd: string, what: string, read: (s: string) => unknown) => (s: string, prev: string[] = []) => {
    try {
      read(s);
    } catch (e) {
      throw new UsageError(`skein ${cmd}: ${what}: ${(e as Error).message}`);
    }
    return [...prev, s];
  };
  const cidrs = (what: string, command = "agent") => strictly(command, what, parseCidr);
  // skein's bits of the packet and conntrack marks (datapath/marks.ts), for the agent and for
  // the tables it would load
  const mask = (flag: string, minBits: number) => (s: string) => {
    try {
      return parseMask(s, minBits);
    } catch (e) {
      throw new InvalidArgumentError(`${flag}: ${(e as Error).message}`);
    }
  };
  const markOptions = (c: Command) =>
    c
      .addOption(new Option("--mark-mask <mask>", `bits of the packet mark skein uses (contiguous, at least ${MIN_MARK_BITS}): they carry the target id; every other bit is left as found`).default(DEFAULT_MARKS.mark, hex32(DEFAULT_MARKS.mark)).argParser(mask("--mark-mask", MIN_MARK_BITS)))
      .addOption(new Option("--ct-mark-mask <mask>", `bits of the conntrack mark skein uses (contiguous, at least ${MIN_CT_MARK_BITS}): the highest is the masquerade flag, the others carry policy identities; every other bit is left as found`).default(DEFAULT_MARKS.ctMark, hex32(DEFAULT_MARKS.ctMark)).argParser(mask("--ct-mark-mask", MIN_CT_MARK_BITS)));
  markOptions(program
    .command("agent"))
    .description("run the node agent: watch the Kubernetes API and keep this node's service datapath in step (replaces kube-proxy)")
    .option("--kubeconfig <path>", "kubeconfig file (default: $KUBECONFIG, the in-cluster service account, or ~/.kube/config)")
    .option("--node-name <name>", "this node's name (default: $NODE_NAME, else the host name)")
    .option("--cluster-cidr <cidr>", "the pod network, repeatable (IPv4 and IPv6): traffic leaving it is masqueraded by the CNI plugin", cidrs("--cluster-cidr"), [])
    .option("--service-cidr <cidr>", "the Service ClusterIP range, repeatable", cidrs("--service-cidr"), [])
    .option("--nodeport-addresses <cidr>", "only node addresses within these CIDRs serve NodePorts, repeatable (default: every InternalIP and ExternalIP of the Node)", cidrs("--nodeport-addresses"), [])
    .addOption(new Option("--ring-factor <n>", "Maglev ring size = smallest prime >= n x backends").default(10).argParser(whole(1, 1000)))
    .addOption(new Option("--coalesce-ms <ms>", "events within this window after the first go into one update").default(10).argParser(whole(0, 10_000)))
    .option("--node-file <path>", "where this node's pod CIDRs are written for the CNI plugin", "/var/lib/skein/node.json")
    .option("--no-flush-udp", "do not delete conntrack entries of UDP flows whose backend left")
    .option("--no-masquerade", "do not keep the CNI plugin's masquerade table (inet skein_cni) in place (for a conflist with masquerade: false)")
    .addOption(new Option("--verify-interval <s>", "how often the kernel's tables are compared with the agent's when nothing was heard (seconds; 0: never)").default(60).argParser(whole(0, 86_400)))
    .addOption(new Option("--policy-log-interval <s>", "how often packets dropped by NetworkPolicy are logged, one line per policy (seconds; 0: never)").default(10).argParser(whole(0, 86_400)))
    .addOption(new Option("--log-level <level>", "log level").choices(["debug", "info", "warn", "error"]).default("info"))
    // the pod network between the nodes
    .option("--no-overlay", "do not build the pod network between the nodes (routes, VXLAN): this node's pods reach only its own")
    .addOption(new Option("--overlay-mode <mode>", "how peers are reached: auto (direct routes on a shared subnet, else VXLAN), vxlan, direct").choices(["auto", "vxlan", "direct"]).default("auto"))
    .option("--underlay-ip <addr>", "this node's address on the network between the nodes (default: the Node's first InternalIP)", (s: string) => one("--underlay-ip", s))
    .option("--public-ip <addr>", "the address peers outside this node's site reach it at, e.g. its NAT's (default: the Node's annotation skein.io/public-ip)", (s: string) => one("--public-ip", s))
    .option("--site <name>", "nodes of one site reach each other at their private addresses (default: the Node's label skein.io/site)")
    .option("--nats-url <url>", "NATS server(s) for gossip, repeatable or comma-separated (nats://host:port, tls://host:port); without one the Node objects alone build the pod network", (s: string, prev: string[] = []) => [...prev, ...s.split(",").map((x) => x.trim()).filter(Boolean)])
    .option("--nats-config <file>", "YAML or JSON file with servers, user, password, token, nkeySeedFile, tls {ca, cert, key} (flags win field by field)")
    .option("--nats-user <name>", "NATS user (with --nats-password-file)")
    .option("--nats-password-file <file>", "file holding the NATS password")
    .option("--nats-token-file <file>", "file holding the NATS token")
    .option("--nats-nkey-file <file>", "file holding the NATS user's nkey seed")
    .option("--nats-ca <file>", "PEM CA that signed the NATS servers' certificates")
    .option("--nats-cert <file>", "PEM client certificate for NATS (with --nats-key)")
    .option("--nats-key <file>", "PEM key of --nats-cert")
    .option("--gossip-bucket <name>", "the JetStream key-value bucket of node records", "skein-nodes")
    .addOption(new Option("--gossip-replicas <n>", "copies of the bucket in a NATS cluster (when the agent creates it)").default(1).argParser(whole(1, 5)))
    .addOption(new Option("--heartbeat-ms <ms>", "how often this node's record is put again").default(10_000).argParser(whole(100, 3_600_000)))
    .addOption(new Option("--peer-ttl-ms <ms>", "a peer whose record is not put again within this is removed (also the bucket's max age)").default(35_000).argParser(whole(300, 86_400_000)))
    // what operators ask the agent (agent/http)
    .option("--http-listen <addr:port>", "the HTTP API over TCP ('none': off); an address other than loopback needs --http-token-file", "127.0.0.1:9465")
    .option("--http-socket <path>", "the HTTP API's unix socket ('none': off; default /run/skein/agent-<netns>.sock, which 'skein status' finds)")
    .option("--http-token-file <file>", "file holding the bearer token a non-loopback --http-listen requires")
    .addOption(new Option("--health-port <port>", "port on every address answering GET /healthz and /readyz only, which peers probe across the pod network and kubelet probes (0: off)").default(4250).argParser(whole(0, 65535)))
    .addOption(new Option("--health-interval <s>", "how often every peer's health port is probed (seconds)").default(10).argParser(whole(1, 3600)))
    .action(async (o: AgentFlags) => {
      const { hostname } = await import("node:os");
      const nodeName = o.nodeName ?? process.env.NODE_NAME ?? hostname();
      const { parseListen } = await import("../http/serve.ts");
      let listen;
      try {
        listen = parseListen(o.httpListen);
      } catch (e) {
        throw new UsageError(`skein agent: --http-listen: ${(e as Error).message}`);
      }
      let token: string | undefined;
      if (o.httpTokenFile !== undefined) {
        const { readFileBounded } = await import("../sys/bounded-read.ts");
        try {
          token = readFileBounded(o.httpTokenFile, 4096, `--http-token-file ${o.httpTokenFile}`).toString("utf8").trim();
        } catch (e) {
          throw new UsageError(`skein agent: --http-token-file: ${(e as Error).message}`);
        }
        if (!/^[A-Za-z0-9._~+/=-]{16,}$/.test(token)) throw new UsageError(`skein agent: --http-token-file ${o.httpTokenFile}: the token must be at least 16 characters of A-Z a-z 0-9 . _ ~ + / = -`);
      }
      if (listen && !token) {
        const { isLoopback } = await import("../http/serve.ts");
        if (!isLoopback(listen.host)) throw new UsageError(`skein agent: --http-listen ${o.httpListen} is not a loopback address: give --http-token-file (anyone who reaches it could read the cluster's state)`);
      }
      const { runAgent } = await import("../loop/main.ts");
      process.exitCode = await runAgent({
        kubeconfig: o.kubeconfig,
        nodeName,
        clusterCIDRs: o.clusterCidr,
        serviceCIDRs: o.serviceCidr,
        nodePortAddresses: o.nodeportAddresses,
        ringFactor: o.ringFactor,
        coalesceMs: o.coalesceMs,
        nodeFile: o.nodeFile,
        flushUdp: o.flushUdp,
        masquerade: o.masquerade,
        verifyMs: o.verifyInterval * 1000,
        policyReportMs: o.policyLogInterval * 1000,
        logLevel: o.logLevel,
        marks: { mark: o.markMask, ctMark: o.ctMarkMask },
        network: await networkOptions(o),
        http: { listen, socket: o.httpSocket === "none" ? null : o.httpSocket, token, healthPort: o.healthPort, probeEveryMs: o.healthInterval * 1000 },
      });
      // everything the agent runs has stopped by now; a socket a library failed to close
      // (nats.js leaks one per timed-out connect) must not keep the stopped agent alive
      process.exit(process.exitCode);
    });

  program
    .command("apiserver")
    .description("a Kubernetes API server for skein's tests and demo (not for clusters: they have kube-apiserver)")
    .requiredOption("--dir <path>", "directory for its certificates, kubeconfig and saved objects")
    .option("--listen <addr:port>", "address and port to serve HTTPS on", "127.0.0.1:6443")
    .requiredOption("--token <token...>", "bearer tokens it accepts")
    .option("--unix <path>", "also serve plain HTTP on this Unix socket")
    .addOption(new Option("--bookmark-ms <ms>", "how often watches that allow bookmarks get one").default(60_000).argParser(whole(10, 3_600_000)))
    .addOption(new Option("--cert-validity <seconds>", "validity of the serving certificates it issues (default: a year)").argParser(whole(10, 10 * 365 * 86_400)))
    .addOption(new Option("--cert-renew-before <seconds>", "re-issue the serving certificate this long before it ends (default: a third of its validity)").argParser(whole(1, 10 * 365 * 86_400)))
    .option("--service-cidr <cidrs>", "ClusterIP range: one CIDR, or two of different families for dual-stack (e.g. 10.96.0.0/12,fd00:10:96::/112)", "10.96.0.0/12")
    .option("--service-node-port-range <low-high>", "NodePort range", "30000-32767")
    .addOption(new Option("--watch-history-bytes <bytes>", "the most bytes of past objects kept for watches to resume from (older resourceVersions get 410 Expired)").default(64 * 1024 * 1024).argParser(whole(1024, 2 ** 40)))
    .addOption(new Option("--event-ttl <seconds>", "how long an Event is kept after its last write, as kube-apiserver's --event-ttl (0: for ever)").default(3600).argParser(whole(0, 10 * 365 * 86_400)))
    .action(async (o: { dir: string; listen: string; token: string[]; unix?: string; bookmarkMs: number; certValidity?: number; certRenewBefore?: number; serviceCidr: string; serviceNodePortRange: string; watchHistoryBytes: number; eventTtl: number }) => {
      const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(o.listen);
      if (!m) throw new UsageError(`skein apiserver: --listen ${JSON.stringify(o.listen)} is not address:port`);
      let port: number;
      try {
        port = parsePort(m[2]!);
      } catch (e) {
        throw new UsageError(`skein apiserver: --listen: ${(e as Error).message}`);
      }
      const { runApiServer } = await import("../../testing/apiserver/main.ts");
      const { parsePortRange, parseServiceCidrs } = await import("../../testing/apiserver/services.ts");
      let services;
      try {
        services = { serviceCIDRs: parseServiceCidrs(o.serviceCidr), nodePorts: parsePortRange(o.serviceNodePortRange) };
      } catch (e) {
        throw new UsageError(`skein apiserver: ${(e as Error).message}`);
      }
      process.exitCode = await runApiServer({ dir: o.dir, host: m[1]!, port, tokens: o.token, unix: o.unix, bookmarkMs: o.bookmarkMs, certValiditySeconds: o.certValidity, certRenewBeforeSeconds: o.certRenewBefore, watchHistoryBytes: o.watchHistoryBytes, eventTtlSeconds: o.eventTtl, services, log: out });
    });

  markOptions(program
    .command("tables"))
    .description("compile cluster state and print the datapath tables")
    .option("--state <file>", "YAML or JSON list of Kubernetes objects (offline; without it: the running agent's tables)")
    .option("--json", "print JSON")
    .option("--nft", "print the table as one nftables transaction (with --since: the delta's steps, when nft text can express them)")
    .option("--since <file>", "with --nft or --apply: the delta from the tables of this earlier state file")
    .option("--apply", "load the tables into this network namespace's nftables as the agent does (root)")
    .option("--node-name <name>", "node whose local endpoints the Local traffic policies select", "")
    .option("--node-ip <addr...>", "node addresses NodePorts listen on (default: the InternalIP and ExternalIP addresses of the --node-name Node in the state file, as the agent takes them)", strictly("tables", "--node-ip", (s) => addressFamily(s)), [])
    .option("--service-cidr <cidr>", "the Service ClusterIP range, repeatable: unserved addresses there are refused (the agent's flag)", cidrs("--service-cidr", "tables"), [])
    .addOption(new Option("--ring-factor <n>", "Maglev ring size = smallest prime >= n x backends").default(10).argParser(whole(1, 1000)))
    .option("--service <ns/name>", "the running agent's tables: only this Service's frontends, targets and rings")
    .option("--pod <ns/name>", "the running agent's tables: this Pod's identity, the policies policing it and the Service targets it backs")
    .option("--agent <socket|url>", "the agent to ask (default: the one of this network namespace, over its unix socket)")
    .option("--token-file <file>", "bearer token for an --agent URL that is not loopback")
    .action(async (o: { state?: string; since?: string; json?: boolean; nft?: boolean; apply?: boolean; nodeName: string; nodeIp: string[]; serviceCidr: string[]; ringFactor: number; markMask: number; ctMarkMask: number; service?: string; pod?: string; agent?: string; tokenFile?: string }) => {
      if (!o.state) {
        if (o.nft || o.apply || o.since) throw new UsageError("skein tables: --nft, --apply and --since work on a --state file; the running agent's tables come as text or --json");
        if (o.service && o.pod) throw new UsageError("skein tables: give --service or --pod, not both");
        const q = new URLSearchParams({ format: o.json ? "json" : "text" });
        if (o.service) q.set("service", o.service);
        if (o.pod) q.set("pod", o.pod);
        const r = await live(`/v1/tables?${q}`, o, o.json ? "application/json" : "text/plain");
        const { printable } = await import("./client.ts");
        out(o.json ? JSON.stringify(r.json) + "\n" : printable(r.text));
        return;
      }
      if (o.service || o.pod) throw new UsageError("skein tables: --service and --pod ask the running agent; they do not go with --state");
      const { tablesCommand } = await import("./tables.ts");
      process.exitCode = await tablesCommand({ ...o, state: o.state, marks: { mark: o.markMask, ctMark: o.ctMarkMask } }, out, err);
    });

  program
    .command("status")
    .description("show what the local agent is doing: node, mode, peers with their heartbeats and health probes, table generation, last error")
    .option("--json", "print JSON")
    .option("--agent <socket|url>", "the agent to ask (default: the one of this network namespace, over its unix socket)")
    .option("--token-file <file>", "bearer token for an --agent URL that is not loopback")
    .action(async (o: { json?: boolean; agent?: string; tokenFile?: string }) => {
      const r = await live("/v1/status", o);
      if (o.json) out(JSON.stringify(r.json) + "\n");
      else {
        const { renderStatus } = await import("./status.ts");
        const { printableJson } = await import("./client.ts");
        out(renderStatus(printableJson(r.json) as Parameters<typeof renderStatus>[0], colour()));
      }
      if (!(r.json as { ready?: boolean }).ready) process.exitCode = 1;
    });

  markOptions(program
    .command("trace"))
    .description("explain what the datapath does with a packet: Service frontend, backend, NetworkPolicy, route")
    .argument("<src>", "source address, optionally with its port: 10.244.1.5, 10.244.1.5:40000, [fd00::5]:40000")
    .argument("<dst>", "destination address:port[/tcp|udp|sctp] (tcp when not given): 10.96.0.10:53/udp, [fd00::a]:80")
    .option("--state <file>", "YAML or JSON list of Kubernetes objects (offline, as `skein tables --state`; without it: the running agent)")
    .option("--json", "print JSON")
    .option("--node-name <name>", "with --state: the node whose datapath is traced", "")
    .option("--node-ip <addr...>", "with --state: node addresses NodePorts listen on (default: the Node's)", strictly("trace", "--node-ip", (s) => addressFamily(s)), [])
    .option("--service-cidr <cidr>", "with --state: the Service ClusterIP range, repeatable (the agent's flag)", cidrs("--service-cidr", "trace"), [])
    .option("--cluster-cidr <cidr>", "with --state: the pod network, repeatable (default: every Node's pod CIDRs)", cidrs("--cluster-cidr", "trace"), [])
    .addOption(new Option("--ring-factor <n>", "with --state: Maglev ring size = smallest prime >= n x backends").default(10).argParser(whole(1, 1000)))
    .addOption(new Option("--overlay-mode <mode>", "with --state: how peers are reached (the agent's flag)").choices(["auto", "vxlan", "direct"]).default("auto"))
    .option("--underlay-ip <addr>", "with --state: this node's underlay address (default: the Node's first InternalIP)", (s: string) => one("--underlay-ip", s, "trace"))
    .option("--underlay-subnet <cidr>", "with --state: the underlay address's subnet (default: read from the interface holding it in this network namespace)", (s: string) => (cidrs("--underlay-subnet", "trace")(s), s))
    .option("--agent <socket|url>", "the agent to ask (default: the one of this network namespace, over its unix socket)")
    .option("--token-file <file>", "bearer token for an --agent URL that is not loopback")
    .action(async (src: string, dst: string, o: { state?: string; json?: boolean; nodeName: string; nodeIp: string[]; serviceCidr: string[]; clusterCidr: string[]; ringFactor: number; overlayMode: "auto" | "vxlan" | "direct"; underlayIp?: string; underlaySubnet?: string; markMask: number; ctMarkMask: number; agent?: string; tokenFile?: string }) => {
      const { parseQuery, QueryError } = await import("../trace/query.ts");
      let q;
      try {
        q = parseQuery(src, dst);
      } catch (e) {
        if (e instanceof QueryError) throw new UsageError(`skein trace: ${e.message}`);
        throw e;
      }
      const offline = [o.nodeName && "--node-name", o.nodeIp.length && "--node-ip", o.serviceCidr.length && "--service-cidr", o.clusterCidr.length && "--cluster-cidr", o.underlayIp && "--underlay-ip", o.underlaySubnet && "--underlay-subnet"].filter(Boolean);
      if (!o.state && offline.length) throw new UsageError(`skein trace: ${offline.join(", ")}: only with --state (the running agent traces with its own)`);
      if (o.state && (o.agent || o.tokenFile)) throw new UsageError("skein trace: --agent and --token-file ask a running agent: not with --state");
      const { traceOffline, printTrace } = await import("./trace.ts");
      const color = !o.json && colour();
      if (o.state) return printTrace(await traceOffline({ ...o, state: o.state, color, marks: { mark: o.markMask, ctMark: o.ctMarkMask } }, q, err), { json: o.json, color }, out);
      // the running agent explains it with the tables in force; printed here, where the terminal is
      const r = await live(`/v1/trace?${new URLSearchParams({ src, dst })}`, o);
      if (!r.json) throw new Error(`the agent answered /v1/trace with no JSON: ${r.text.slice(0, 200)}`);
      const { printableJson } = await import("./client.ts");
      printTrace((o.json ? r.json : printableJson(r.json)) as Parameters<typeof printTrace>[0], { json: o.json, color }, out);
    });

  program
    .command("demo")
    .description("build a live virtual cluster in network namespaces (nodes, one behind a NAT, API server, NATS, an agent per node), deploy a two-tier app with a NetworkPolicy and prove who reaches whom (needs root)")
    .option("--keep", "leave the cluster running for kubectl (prints the kubeconfig and commands to try); 'skein demo --stop' ends it")
    .option("--stop", "end a demo cluster left running by --keep (or an interrupted one)")
    .addOption(new Option("--nodes <n>", "how many nodes (the third sits behind a NAT)").default(3).argParser(whole(1, 6)))
    .addOption(new Option("--pods <n>", "pods per tier of the app").default(2).argParser(whole(1, 10)))
    .addOption(new Option("--control-plane <dir>", "run the control-plane process of the demo cluster in DIR (the demo starts it)").hideHelp())
    .action(async (o: { keep?: boolean; stop?: boolean; nodes: number; pods: number; controlPlane?: string }) => {
      if (o.controlPlane !== undefined) {
        const { runControlPlane } = await import("../../testing/demo/control-plane.ts");
        const { skeinBinary } = await import("../../testing/skein-bin.ts");
        await runControlPlane(o.controlPlane, skeinBinary(), out);
        return;
      }
      if (o.stop) {
        if (o.keep) throw new UsageError("skein demo: --stop and --keep exclude each other");
        if (process.getuid?.() !== 0) throw new UsageError("skein demo --stop: needs root (it removes network namespaces)");
        const { stopDemo } = await import("../../testing/demo/cluster.ts");
        const gone = await stopDemo();
        out(gone.length ? `demo cluster taken down: ${gone.join(", ")}\n` : "no demo cluster was running\n");
        return;
      }
      const { runDemo } = await import("../../testing/demo.ts");
      const ok = await runDemo({ keep: !!o.keep, nodes: o.nodes, pods: o.pods, log: out, tty: !!process.stdout.isTTY });
      if (!ok) process.exitCode = 1;
    });

  const probe = program.command("probe").description("built-in netcat for connectivity checks inside a namespace");
  probe
    .command("serve")
    .description("answer TCP connections and UDP datagrams with a name and the peer address seen")
    .requiredOption("--name <name>", "name to answer with")
    .option("--tcp <port>", "TCP port, repeatable", (s: string, prev: number[] = []) => [...prev, parsePort(s)])
    .option("--udp <port>", "UDP port, repeatable", (s: string, prev: number[] = []) => [...prev, parsePort(s)])
    .option("--host <addr>", "address to bind", "::")
    .option("--hold", "keep TCP connections open and echo what arrives")
    .option("--upstream <addr:port>", "ask this server on every connection or datagram and append its answer (a tier calling the next)")
    .action(async (o: { name: string; tcp?: number[]; udp?: number[]; host: string; hold?: boolean; upstream?: string }) => {
      if (o.tcp === undefined && o.udp === undefined) throw new UsageError("skein probe serve: give --tcp and/or --udp");
      let upstream: { host: string; port: number } | undefined;
      if (o.upstream !== undefined) {
        const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d+)$/.exec(o.upstream);
        const host = m?.[1] ?? m?.[2];
        try {
          if (!m || !host) throw new Error("not address:port ([address]:port for IPv6)");
          addressFamily(host);
          upstream = { host, port: parsePort(m[3]!) };
        } catch (e) {
          throw new UsageError(`skein probe serve: --upstream ${JSON.stringify(o.upstream)}: ${(e as Error).message}`);
        }
      }
      const { serve } = await import("./probe.ts");
      await serve({ ...o, upstream, log: out });
    });
  probe
    .command("connect")
    .description("connect once and print the answer; exit 1 if none comes")
    .argument("<proto>", "tcp or udp")
    .argument("<host>", "address")
    .argument("<port>", "port", parsePort)
    .option("--timeout <ms>", "give up after this many milliseconds", whole(1, 3_600_000), 2000)
    .option("--source-port <port>", "send from this port (UDP: the same flow to conntrack every time; TCP and UDP: a known 5-tuple, e.g. for skein trace)", parsePort)
    .action(async (proto: string, host: string, port: number, o: { timeout: number; sourcePort?: number }) => {
      if (proto !== "tcp" && proto !== "udp") throw new UsageError(`skein probe connect: protocol must be tcp or udp, not ${JSON.stringify(proto)}`);
      const { connect } = await import("./probe.ts");
      out((await connect(proto, host, port, o.timeout, o.sourcePort)) + "\n");
    });

  probe
    .command("session")
    .description("a long-lived TCP connection: print what comes, send stdin; ends with stdin")
    .argument("<host>", "address")
    .argument("<port>", "port", parsePort)
    .action(async (host: string, port: number) => {
      const { session } = await import("./probe.ts");
      process.exitCode = await session(host, port, out);
    });

  program
    .command("cleanup")
    .description("remove everything skein made in this network namespace and its state files (refused while an agent runs here), and the network namespaces the demo and the tests left behind")
    .addOption(new Option("--prefix <prefix...>", "network namespace name prefixes to remove").default([DEMO_PREFIX, TEST_PREFIX]))
    .option("--namespaces-only", "remove only the demo's and the tests' network namespaces, nothing in this one (what 'skein cleanup' did before it removed the datapath)")
    .option("--no-namespaces", "leave every network namespace (for a cleanup run inside a node's namespace of a lab)")
    .option("--datapath", "remove this network namespace's datapath and state files (the default; kept for scripts)")
    .option("--node-file <path>", "the agent's node file (its --node-file)", "/var/lib/skein/node.json")
    .option("--data-dir <dir...>", "the CNI plugin's IPAM directories (dataDir of its network configuration)", ["/var/lib/skein/ipam"])
    .option("--run-dir <dir>", "where the agent and the CNI plugin keep their lock and socket files", "/run/skein")
    .option("--force", "go on while an agent runs in this network namespace (its lock and socket stay; it may put back what is removed)")
    .option("--dry-run", "only list what would be removed and what is left alone")
    .option("--json", "print a JSON list of {kind, name, action} (with, reason when there is one)")
    .action(async (o: { prefix: string[]; namespacesOnly?: boolean; namespaces: boolean; datapath?: boolean; nodeFile: string; dataDir: string[]; runDir: string; force?: boolean; dryRun?: boolean; json?: boolean }) => {
      if (o.namespacesOnly && o.datapath) throw new UsageError("skein cleanup: --namespaces-only and --datapath exclude each other");
      if (o.namespacesOnly && !o.namespaces) throw new UsageError("skein cleanup: --namespaces-only and --no-namespaces leave nothing to do");
      for (const [flag, p] of [["--node-file", o.nodeFile], ["--run-dir", o.runDir], ...o.dataDir.map((d) => ["--data-dir", d])] as const) {
        if (!p.startsWith("/")) throw new UsageError(`skein cleanup: ${flag} ${JSON.stringify(p)} must be an absolute path`);
      }
      // a demo cluster runs processes (its control plane outside any namespace): ended as a
      // whole before its namespaces go, so that nothing of it keeps running
      const before: Reported[] = [];
      if (o.namespaces && o.prefix.includes(DEMO_PREFIX)) {
        const { DEMO_DIR, demoRunning, stopDemo } = await import("../../testing/demo/cluster.ts");
        const running = demoRunning();
        if (running || existsSync(DEMO_DIR)) {
          const name = running ? `control plane pid ${running.pid}, ${DEMO_DIR}` : DEMO_DIR;
          if (o.dryRun) before.push({ kind: "demo", name, action: "would-remove" });
          else {
            try {
              before.push({ kind: "demo", name, action: "removed", with: (await stopDemo()).join(", ") });
            } catch (e) {
              before.push({ kind: "demo", name, action: "failed", reason: (e as Error).message });
            }
          }
        }
      }
      const { cleanup } = await import("./cleanup.ts");
      process.exitCode = cleanup({
        before,
        prefixes: o.prefix,
        namespaces: o.namespaces,
        datapath: !o.namespacesOnly,
        dryRun: !!o.dryRun,
        force: !!o.force,
        json: !!o.json,
        nodeFile: o.nodeFile,
        dataDirs: o.dataDir,
        runDir: o.runDir,
        out,
        err,
      });
    });

  return program;
}

export async function cliMain(argv: string[], out = (s: string) => void process.stdout.write(s), err = (s: string) => void process.stderr.write(s)): Promise<number> {
  const program = buildProgram(out, err);
  if (argv.length === 0) {
    program.outputHelp();
    return EXIT_USAGE;
  }
  try {
    await program.parseAsync(argv, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === "commander.helpDisplayed" || e.code === "commander.help" || e.code === "commander.version") return 0;
      return EXIT_USAGE;
    }
    if (e instanceof UsageError) {
      err(`${e.message}\n`);
      return EXIT_USAGE;
    }
    if (e instanceof Unavailable) {
      err(`${e.message}\n`);
      return EXIT_UNAVAILABLE;
    }
    err(`skein: ${(e as Error).message}\n`);
    return 1;
  }
}
