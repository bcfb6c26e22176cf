// The CLI dispatcher. Subcommands that a later part of skein fills in say so and exit 69
// (EX_UNAVAILABLE) instead of pretending; usage errors exit 2.
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { DEMO_PREFIX, TEST_PREFIX } from "../demo/lab.ts";
import { versionInfo } from "../version.ts";

export const EXIT_USAGE = 2;
export const EXIT_UNAVAILABLE = 69;

class Unavailable extends Error {}
class UsageError extends Error {}

function parsePort(s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidArgumentError(`${JSON.stringify(s)} is not a port (1-65535)`);
  return n;
}

function notYet(what: string): never {
  throw new Unavailable(`skein ${what}: not available yet in this build of skein ${versionInfo().skein}; it arrives with a later release (see README, "What works today")`);
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

  program
    .command("agent")
    .description("run the node agent: watch the Kubernetes API, program the datapath, gossip with peers")
    .option("--kubeconfig <path>", "kubeconfig file (default: in-cluster service account)")
    .option("--node-name <name>", "this node's name (default: $NODE_NAME)")
    .action(() => notYet("agent"));

  program
    .command("tables")
    .description("compile cluster state and print the datapath tables")
    .option("--state <file>", "YAML or JSON list of Kubernetes objects (offline; without it: the running agent's tables)")
    .option("--json", "print JSON")
    .option("--nft", "print the table as one nftables transaction (with --since: the three steps of the delta)")
    .option("--since <file>", "with --nft or --apply: the delta from the tables of this earlier state file")
    .option("--apply", "load the tables into this network namespace's nftables as the agent does (root)")
    .option("--node-name <name>", "node whose local endpoints the Local traffic policies select", "")
    .option("--node-ip <addr...>", "node addresses NodePorts listen on", [])
    .addOption(new Option("--ring-factor <n>", "Maglev ring size = smallest prime >= n x backends").default(10).argParser((s) => {
      const n = Number(s);
      if (!Number.isInteger(n) || n < 1 || n > 1000) throw new InvalidArgumentError(`${JSON.stringify(s)} is not a whole number from 1 to 1000`);
      return n;
    }))
    .action(async (o: { state?: string; since?: string; json?: boolean; nft?: boolean; apply?: boolean; nodeName: string; nodeIp: string[]; ringFactor: number }) => {
      if (!o.state) notYet("tables");
      const { tablesCommand } = await import("./tables.ts");
      process.exitCode = await tablesCommand({ ...o, state: o.state }, out, err);
    });

  program
    .command("status")
    .description("show what the local agent is doing: peers, tables, health")
    .action(() => notYet("status"));

  program
    .command("trace")
    .description("follow a packet through the datapath tables")
    .argument("<src>", "source address")
    .argument("<dst>", "destination address[:port]")
    .action(() => notYet("trace"));

  program
    .command("demo")
    .description("build a virtual cluster in network namespaces and prove pod connectivity (needs root)")
    .option("--keep", "leave the namespaces in place for exploring (remove them with 'skein cleanup')")
    .action(async (o: { keep?: boolean }) => {
      const { runDemo } = await import("../demo/index.ts");
      const ok = await runDemo({ keep: !!o.keep, log: out });
      if (!ok) process.exitCode = 1;
    });

  const probe = program.command("probe").description("built-in netcat for connectivity checks inside a namespace");
  probe
    .command("serve")
    .description("answer TCP connections and UDP datagrams with a name and the peer address seen")
    .requiredOption("--name <name>", "name to answer with")
    .option("--tcp <port>", "TCP port", parsePort)
    .option("--udp <port>", "UDP port", parsePort)
    .option("--host <addr>", "address to bind", "::")
    .option("--hold", "keep TCP connections open and echo what arrives")
    .action(async (o: { name: string; tcp?: number; udp?: number; host: string; hold?: boolean }) => {
      if (o.tcp === undefined && o.udp === undefined) throw new UsageError("skein probe serve: give --tcp and/or --udp");
      const { serve } = await import("./probe.ts");
      await serve({ ...o, log: out });
    });
  probe
    .command("connect")
    .description("connect once and print the answer; exit 1 if none comes")
    .argument("<proto>", "tcp or udp")
    .argument("<host>", "address")
    .argument("<port>", "port", parsePort)
    .option("--timeout <ms>", "give up after this many milliseconds", (s) => Number(s), 2000)
    .action(async (proto: string, host: string, port: number, o: { timeout: number }) => {
      if (proto !== "tcp" && proto !== "udp") throw new UsageError(`skein probe connect: protocol must be tcp or udp, not ${JSON.stringify(proto)}`);
      const { connect } = await import("./probe.ts");
      out((await connect(proto, host, port, o.timeout)) + "\n");
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
    .description("remove what the demo and the tests left behind, and optionally skein's datapath on this host")
    .addOption(new Option("--prefix <prefix...>", "network namespace name prefixes to remove").default([DEMO_PREFIX, TEST_PREFIX]))
    .option("--datapath", "also remove skein's nftables tables and pod host links in the current network namespace")
    .option("--dry-run", "only print what would be removed")
    .action(async (o: { prefix: string[]; datapath?: boolean; dryRun?: boolean }) => {
      const { cleanup } = await import("./cleanup.ts");
      cleanup({ prefixes: o.prefix, datapath: !!o.datapath, dryRun: !!o.dryRun, log: out });
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
