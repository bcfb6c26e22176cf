// Every flag that takes an address or CIDR, against the shared table of hostile values
// (compiler/address.case.ts), through the CLI's own parsing (test/cli.test.ts runs the same
// values through the binary): a refused value is a usage error naming the flag, before any
// command runs.
import { expect, test } from "bun:test";
import { HOSTILE, VALID_ADDRESSES, VALID_CIDRS } from "../../compiler/address.case.ts";
import { quote } from "../../compiler/address.ts";
import { buildProgram, cliMain, EXIT_USAGE } from "./index.ts";

const FLAGS: Array<[string, (v: string) => string[]]> = [
  // (were a value taken, the agent would find no API server to watch and stop)
  ["--cluster-cidr", (v) => ["agent", "--kubeconfig", "/nonexistent", "--cluster-cidr", v]],
  ["--service-cidr", (v) => ["agent", "--kubeconfig", "/nonexistent", "--service-cidr", "10.96.0.0/16", "--service-cidr", v]],
  ["--nodeport-addresses", (v) => ["agent", "--kubeconfig", "/nonexistent", "--nodeport-addresses", v]],
  ["--node-ip", (v) => ["tables", "--state", "/nonexistent/state.yaml", "--node-ip", v]],
];
// a command line holds strings only
const STRINGS = HOSTILE.map((h) => h.value).filter((v): v is string => typeof v === "string");

const cases = FLAGS.flatMap(([flag, argv]) => STRINGS.map((v) => [`${flag} ${quote(v)}`, flag, argv(v)] as const));

test.each(cases)("%s is a usage error naming the flag", async (_n, flag, argv) => {
  let err = "";
  const code = await cliMain(argv, () => {}, (s) => void (err += s));
  expect(code).toBe(EXIT_USAGE);
  expect(err).toContain(`${flag}: `);
  expect(err).toMatch(/is not (a valid|an IPv|a network)/);
});

test("at least 30 hostile values for every flag", () => expect(STRINGS.length).toBeGreaterThanOrEqual(30));

test("valid values are taken as they are", () => {
  const opts = (argv: string[]) => {
    const p = buildProgram(() => {}, () => {});
    const cmd = p.commands.find((c) => c.name() === argv[0])!;
    // parse the options only: no action runs
    cmd.parseOptions(argv.slice(1));
    return cmd.opts();
  };
  expect(opts(["agent", ...VALID_CIDRS.flatMap((c) => ["--nodeport-addresses", c])]).nodeportAddresses).toEqual(VALID_CIDRS);
  expect(opts(["agent", "--service-cidr", "10.96.0.0/16", "--service-cidr", "fd00:96::/112"]).serviceCidr).toEqual(["10.96.0.0/16", "fd00:96::/112"]);
  expect(opts(["tables", "--node-ip", ...VALID_ADDRESSES]).nodeIp).toEqual(VALID_ADDRESSES);
});

// numbers are decimal digits: "" or " " would otherwise turn the periodic check off (0),
// and hex, octal, binary and exponent forms be read as other numbers than the ones written
const NUMBER_FLAGS: Array<[string, (v: string) => string[]]> = [
  ["--verify-interval", (v) => ["agent", "--kubeconfig", "/nonexistent", "--verify-interval", v]],
  ["--coalesce-ms", (v) => ["agent", "--kubeconfig", "/nonexistent", "--coalesce-ms", v]],
  ["--ring-factor", (v) => ["tables", "--state", "/nonexistent/state.yaml", "--ring-factor", v]],
];
const BAD_NUMBERS = ["", " ", "0x10", "1e1", "0b11", "0o7", "010", "+5", "-1", "1.5", " 5", "5 ", "５", "Infinity", "NaN", "99999999999999999999"];
test.each(NUMBER_FLAGS.flatMap(([flag, argv]) => BAD_NUMBERS.map((v) => [`${flag} ${JSON.stringify(v)}`, flag, argv(v)] as const)))("%s is a usage error", async (_n, flag, argv) => {
  let err = "";
  const code = await cliMain(argv, () => {}, (s) => void (err += s));
  expect(code).toBe(EXIT_USAGE);
  expect(err).toContain(flag);
  expect(err).toContain("is not a whole number");
});
