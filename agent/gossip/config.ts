// How the agent reaches NATS: servers, credentials, TLS. Read from a file (YAML or JSON, e.g. a
// mounted Secret) and/or flags, flags winning; validated strictly so that a mistake is told at
// start with the field it is in. Secrets (password, token, the nkey seed) never appear in an
// error message or a log line: errors name the field, not its value, and `redacted()` is what
// the agent logs. Credentials inside a server URL are refused, so that no URL needs redacting.
import * as v from "valibot";
import { parse as parseYaml } from "yaml";
import { nkeyAuthenticator, nkeys, type ConnectionOptions } from "nats";
import { addressFamily, quote } from "../../compiler/address.ts";
import { readFileBounded } from "../sys/bounded-read.ts";

export interface NatsConfig {
  /** "nats://host:port" or "tls://host:port", at least one */
  servers: string[];
  user?: string;
  password?: string;
  token?: string;
  /** a file holding the user's nkey seed ("SU…") */
  nkeySeedFile?: string;
  /** PEM files: the CA that signed the servers' certificates, and a client certificate and key */
  tls?: { ca?: string; cert?: string; key?: string };
}

export class NatsConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NatsConfigError";
  }
}

export const MAX_CONFIG_BYTES = 64 * 1024;
const MAX_PEM_BYTES = 256 * 1024;
const MAX_SEED_BYTES = 1024;
const MAX_SERVERS = 32;

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$/;

/** Why `s` is no server URL, or undefined. Never repeats a credential found in it. */
function serverProblem(s: string): string | undefined {
  const m = /^(nats|tls):\/\/(.*)$/.exec(s);
  if (!m) return "must be nats://host:port or tls://host:port";
  const rest = m[2]!;
  if (rest.includes("@")) return "credentials inside a server URL are refused: give user and password, token or nkey in their own fields";
  const hp = /^(\[([^\]]+)\]|([^:/?#\[\]]+)):([0-9]{1,5})$/.exec(rest);
  if (!hp) return "must be nats://host:port or tls://host:port (host, ':' and a port; no path, query or fragment)";
  const host = hp[2] ?? hp[3]!;
  const port = hp[4]!;
  if ((port.length > 1 && port[0] === "0") || Number(port) < 1 || Number(port) > 65535) return `port ${port} is not 1-65535`;
  if (hp[2] !== undefined) {
    try {
      addressFamily(host, 6);
    } catch (e) {
      return (e as Error).message;
    }
  } else if (/^[0-9.]+$/.test(host)) {
    try {
      addressFamily(host, 4);
    } catch (e) {
      return (e as Error).message;
    }
  } else if (!HOSTNAME.test(host)) return `${quote(host)} is not a host name`;
  return undefined;
}

// every message is given here: valibot's own ones quote the value, which may be a secret
const path = v.pipe(v.string("must be a string"), v.minLength(1, "must not be empty"), v.maxLength(4096, "longer than 4096 characters"), v.startsWith("/", "must be an absolute path"));
const secret = v.pipe(v.string("must be a string"), v.minLength(1, "must not be empty"), v.maxLength(1024, "longer than 1024 characters"));

const Schema = v.strictObject({
  servers: v.pipe(
    v.array(v.pipe(v.string("must be a string"), v.maxLength(300, "longer than 300 characters"), v.check((s) => serverProblem(s) === undefined, (i) => serverProblem(i.input as string)!)), "must be a list of server URLs"),
    v.minLength(1, "at least one server"),
    v.maxLength(MAX_SERVERS, `at most ${MAX_SERVERS} servers`),
  ),
  user: v.optional(v.pipe(v.string("must be a string"), v.minLength(1, "must not be empty"), v.maxLength(256, "longer than 256 characters"), v.regex(/^[\x21-\x7e]+$/, "printable ASCII without spaces"))),
  password: v.optional(secret),
  token: v.optional(secret),
  nkeySeedFile: v.optional(path),
  tls: v.optional(v.strictObject({ ca: v.optional(path), cert: v.optional(path), key: v.optional(path) }, "must be a mapping of ca, cert and key")),
}, "must be a mapping of servers, user, password, token, nkeySeedFile and tls");

/** What the flags may give; each given flag replaces the file's field. */
export type NatsFlags = Partial<Omit<NatsConfig, "tls" | "servers">> & { servers?: string | string[]; tlsCa?: string; tlsCert?: string; tlsKey?: string };

/** Checks a configuration object (from a file or built from flags). */
export function parseNatsConfig(raw: unknown, what = "NATS configuration"): NatsConfig {
  const r = v.safeParse(Schema, raw);
  if (!r.success) {
    const i = r.issues[0]!;
    const field = i.path?.map((p) => (typeof p.key === "number" ? `[${p.key}]` : `.${String(p.key)}`)).join("").replace(/^\./, "") || "(top)";
    // the message, never the value: the value may be a secret
    throw new NatsConfigError(`${what}: ${field}: ${i.kind === "schema" && i.input === undefined ? "missing" : i.message}`);
  }
  const c = r.output as NatsConfig;
  const kinds = [c.user !== undefined || c.password !== undefined ? "user/password" : "", c.token !== undefined ? "token" : "", c.nkeySeedFile !== undefined ? "nkeySeedFile" : ""].filter(Boolean);
  if (kinds.length > 1) throw new NatsConfigError(`${what}: give one way to authenticate, not ${kinds.join(" and ")}`);
  if ((c.user === undefined) !== (c.password === undefined)) throw new NatsConfigError(`${what}: ${c.user === undefined ? "password" : "user"}: given without ${c.user === undefined ? "user" : "password"}`);
  if (c.tls && (c.tls.cert === undefined) !== (c.tls.key === undefined)) throw new NatsConfigError(`${what}: tls.${c.tls.cert === undefined ? "key" : "cert"}: given without tls.${c.tls.cert === undefined ? "cert" : "key"}`);
  return c;
}

/** The configuration from a file (YAML or JSON) and flags; flags win field by field. */
export function loadNatsConfig(o: { file?: string; flags?: NatsFlags }): NatsConfig {
  let base: Record<string, unknown> = {};
  if (o.file !== undefined) {
    const what = `NATS configuration file ${o.file}`;
    let text: string;
    try {
      text = readFileBounded(o.file, MAX_CONFIG_BYTES, what).toString("utf8");
    } catch (e) {
      throw new NatsConfigError(e instanceof Error && e.name !== "Error" ? e.message : `${what}: ${(e as NodeJS.ErrnoException).code ?? "unreadable"}`);
    }
    let raw: unknown;
    try {
      // no pretty errors: they quote the lines around the fault, which may hold a secret
      raw = parseYaml(text, { prettyErrors: false, maxAliasCount: 16, uniqueKeys: true });
    } catch (e) {
      throw new NatsConfigError(`${what}: not YAML or JSON (${(e as Error).message})`);
    }
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new NatsConfigError(`${what}: must be a mapping`);
    base = raw as Record<string, unknown>;
  }
  const f = o.flags ?? {};
  const merged: Record<string, unknown> = { ...base };
  if (f.servers !== undefined) merged.servers = typeof f.servers === "string" ? f.servers.split(",").map((s) => s.trim()).filter(Boolean) : f.servers;
  for (const k of ["user", "password", "token", "nkeySeedFile"] as const) if (f[k] !== undefined) merged[k] = f[k];
  if (f.tlsCa !== undefined || f.tlsCert !== undefined || f.tlsKey !== undefined) {
    const t: Record<string, unknown> = { ...((base.tls as object | undefined) ?? {}) };
    if (f.tlsCa !== undefined) t.ca = f.tlsCa;
    if (f.tlsCert !== undefined) t.cert = f.tlsCert;
    if (f.tlsKey !== undefined) t.key = f.tlsKey;
    merged.tls = t;
  }
  const c = parseNatsConfig(merged, o.file !== undefined ? `NATS configuration (file ${o.file} and flags)` : "NATS configuration (flags)");
  // told at start, not at every connection attempt ever after
  if (c.nkeySeedFile !== undefined) readSeed(c.nkeySeedFile);
  return c;
}

/** The user nkey seed in `file`, checked; the error names the file and never shows its content. */
function readSeed(file: string): Uint8Array {
  const what = `NATS nkey seed file ${file}`;
  let seed: string;
  try {
    seed = readFileBounded(file, MAX_SEED_BYTES, what).toString("utf8").trim();
  } catch (e) {
    throw new NatsConfigError(e instanceof Error && e.name !== "Error" ? e.message : `${what}: ${(e as NodeJS.ErrnoException).code ?? "unreadable"}`);
  }
  const bytes = new TextEncoder().encode(seed);
  let ok = false;
  try {
    ok = seed.startsWith("SU") && nkeys.fromSeed(bytes).getPublicKey().startsWith("U");
  } catch {
    ok = false;
  }
  if (!ok) throw new NatsConfigError(`${what}: not a user nkey seed (a line starting with SU)`);
  return bytes;
}

/** The configuration as a log line shows it: servers and the kinds of credentials, no secret. */
export function redacted(c: NatsConfig): string {
  const parts = [`servers=${c.servers.join(",")}`];
  if (c.user !== undefined) parts.push(`auth=user/password user=${quote(c.user)}`);
  else if (c.token !== undefined) parts.push("auth=token");
  else if (c.nkeySeedFile !== undefined) parts.push(`auth=nkey seedFile=${c.nkeySeedFile}`);
  else parts.push("auth=none");
  if (usesTls(c)) parts.push(`tls=on${c.tls?.ca ? ` ca=${c.tls.ca}` : ""}${c.tls?.cert ? ` cert=${c.tls.cert}` : ""}`);
  return parts.join(" ");
}

export function usesTls(c: NatsConfig): boolean {
  return c.tls !== undefined || c.servers.some((s) => s.startsWith("tls://"));
}

/**
 * The nats.connect options for authentication and TLS, with the seed and PEM files read now
 * (bounded): called before each connection attempt, so a rotated certificate is picked up.
 */
export function clientOptions(c: NatsConfig): ConnectionOptions {
  // the client wants host:port; the scheme only says whether TLS is required
  const o: ConnectionOptions = { servers: c.servers.map((s) => s.replace(/^(nats|tls):\/\//, "")) };
  if (c.user !== undefined) {
    o.user = c.user;
    o.pass = c.password;
  }
  if (c.token !== undefined) o.token = c.token;
  if (c.nkeySeedFile !== undefined) o.authenticator = nkeyAuthenticator(readSeed(c.nkeySeedFile));
  if (usesTls(c)) {
    const t: NonNullable<ConnectionOptions["tls"]> = {};
    if (c.tls?.ca) t.ca = readFileBounded(c.tls.ca, MAX_PEM_BYTES, `NATS TLS CA file ${c.tls.ca}`).toString("utf8");
    if (c.tls?.cert) t.cert = readFileBounded(c.tls.cert, MAX_PEM_BYTES, `NATS TLS certificate file ${c.tls.cert}`).toString("utf8");
    if (c.tls?.key) t.key = readFileBounded(c.tls.key, MAX_PEM_BYTES, `NATS TLS key file ${c.tls.key}`).toString("utf8");
    o.tls = t;
  }
  return o;
}
