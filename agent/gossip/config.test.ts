import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { afterAll } from "bun:test";
import { nkeys } from "nats";
import { NatsConfigError, clientOptions, loadNatsConfig, parseNatsConfig, redacted } from "./config.ts";

const dir = mkdtempSync(`${tmpdir()}/skein-natscfg-`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const p = `${dir}/${name}`;
  writeFileSync(p, text);
  return p;
};

const SECRET = "hunter2-s3cret";

function refused(raw: unknown, ...parts: string[]): string {
  let err: unknown;
  try {
    parseNatsConfig(raw);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(NatsConfigError);
  const msg = (err as Error).message;
  for (const p of parts) expect(msg).toContain(p);
  expect(msg).not.toContain(SECRET);
  return msg;
}

describe("parseNatsConfig", () => {
  test("accepts servers, user/password, token, nkey, TLS", () => {
    expect(parseNatsConfig({ servers: ["nats://127.0.0.1:4222", "tls://nats-1.example.com:4222", "nats://[fd00::1]:4222"] }).servers).toHaveLength(3);
    expect(parseNatsConfig({ servers: ["nats://a:1"], user: "u", password: SECRET }).password).toBe(SECRET);
    expect(parseNatsConfig({ servers: ["nats://a:1"], token: SECRET }).token).toBe(SECRET);
    expect(parseNatsConfig({ servers: ["nats://a:1"], nkeySeedFile: "/s", tls: { ca: "/ca.pem", cert: "/c.pem", key: "/k.pem" } }).tls?.ca).toBe("/ca.pem");
  });
  test("refuses bad server URLs, naming the field", () => {
    refused({ servers: [] }, "servers", "at least one");
    refused({}, "servers", "missing");
    refused({ servers: ["http://a:4222"] }, "servers[0]", "nats://host:port");
    refused({ servers: ["nats://a"] }, "servers[0]");
    refused({ servers: ["nats://a:4222/path"] }, "servers[0]");
    refused({ servers: ["nats://a:99999"] }, "servers[0]", "port");
    refused({ servers: ["nats://010.0.0.1:4222"] }, "servers[0]", "leading zero");
    refused({ servers: ["nats://[fd00:0::1]:4222"] }, "servers[0]", "canonical");
    refused({ servers: ["nats://a_b:4222"] }, "servers[0]", "not a host name");
    refused({ servers: Array.from({ length: 40 }, () => "nats://a:1") }, "servers", "at most 32");
  });
  test("refuses credentials inside a URL without repeating them", () => {
    refused({ servers: [`nats://alice:${SECRET}@a:4222`] }, "servers[0]", "credentials inside a server URL");
    refused({ servers: `nats://alice:${SECRET}@a:4222` }, "servers", "list");
    refused({ servers: [`nats://${SECRET}@a:4222`] }, "servers[0]", "credentials");
  });
  test("refuses mixed or partial credentials and odd types, without the secret", () => {
    refused({ servers: ["nats://a:1"], user: "u" }, "user", "without password");
    refused({ servers: ["nats://a:1"], password: SECRET }, "password", "without user");
    refused({ servers: ["nats://a:1"], user: "u", password: SECRET, token: SECRET }, "one way to authenticate");
    refused({ servers: ["nats://a:1"], token: 12345 }, "token", "must be a string");
    refused({ servers: ["nats://a:1"], token: ["x", SECRET] }, "token");
    refused({ servers: ["nats://a:1"], tls: { cert: "/c.pem" } }, "tls.cert", "without tls.key");
    refused({ servers: ["nats://a:1"], tls: { ca: "relative.pem" } }, "tls.ca", "absolute");
    refused({ servers: ["nats://a:1"], passwd: SECRET }, "passwd");
    refused({ servers: ["nats://a:1"], tls: { verify: false } }, "tls.verify");
  });
});

describe("loadNatsConfig", () => {
  test("YAML and JSON files; flags win field by field", () => {
    const y = file("a.yaml", `servers:\n  - nats://127.0.0.1:4222\nuser: alice\npassword: ${SECRET}\ntls:\n  ca: /etc/ca.pem\n`);
    expect(loadNatsConfig({ file: y })).toEqual({ servers: ["nats://127.0.0.1:4222"], user: "alice", password: SECRET, tls: { ca: "/etc/ca.pem" } });
    const j = file("a.json", JSON.stringify({ servers: ["nats://127.0.0.1:4222"], token: SECRET }));
    expect(loadNatsConfig({ file: j, flags: { servers: "nats://10.0.0.1:4222, nats://10.0.0.2:4222", tlsCa: "/x.pem" } })).toEqual({ servers: ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"], token: SECRET, tls: { ca: "/x.pem" } });
    expect(loadNatsConfig({ flags: { servers: ["nats://a:1"] } })).toEqual({ servers: ["nats://a:1"] });
  });
  test("a broken, huge or odd file is refused without quoting its content", () => {
    const bad = file("bad.yaml", `servers: [nats://a:1\npassword: ${SECRET}\n  : [`);
    expect(() => loadNatsConfig({ file: bad })).toThrow(NatsConfigError);
    try {
      loadNatsConfig({ file: bad });
    } catch (e) {
      expect((e as Error).message).toContain("not YAML or JSON");
      expect((e as Error).message).not.toContain(SECRET);
    }
    const big = file("big.yaml", `servers: [nats://a:1]\n# ${"x".repeat(70_000)}\n`);
    expect(() => loadNatsConfig({ file: big })).toThrow(/larger than 64 KiB/);
    expect(() => loadNatsConfig({ file: file("list.yaml", "- a\n- b\n") })).toThrow(/must be a mapping/);
    expect(() => loadNatsConfig({ file: `${dir}/missing.yaml` })).toThrow(NatsConfigError);
    expect(() => loadNatsConfig({ file: dir })).toThrow(/not a regular file/);
    // an alias bomb
    const bomb = file("bomb.yaml", `a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\nservers: [nats://a:1]\n`);
    expect(() => loadNatsConfig({ file: bomb })).toThrow(/not YAML or JSON.*alias/);
  });
});

describe("nkey seed file", () => {
  test("checked when the configuration is loaded: a file without a seed, or missing, is an error naming the file and never its content", () => {
    const seed = new TextDecoder().decode(nkeys.createUser().getSeed());
    expect(loadNatsConfig({ flags: { servers: "nats://a:1", nkeySeedFile: file("good.nk", `${seed}\n`) } }).nkeySeedFile).toEndWith("good.nk");
    // an account seed is a seed, but not a user's
    const account = new TextDecoder().decode(nkeys.createAccount().getSeed());
    for (const [name, content] of [["empty.nk", ""], ["secret.nk", SECRET], ["account.nk", account], ["public.nk", nkeys.createUser().getPublicKey()]] as const) {
      const f = file(name, content);
      let msg = "";
      try {
        loadNatsConfig({ flags: { servers: "nats://a:1", nkeySeedFile: f } });
      } catch (e) {
        msg = (e as Error).message;
      }
      expect(msg).toBe(`NATS nkey seed file ${f}: not a user nkey seed (a line starting with SU)`);
      if (content) expect(msg).not.toContain(content.slice(0, 6));
    }
    expect(() => loadNatsConfig({ flags: { servers: "nats://a:1", nkeySeedFile: `${file("x", "")}-missing` } })).toThrow(/NATS nkey seed file \/.*-missing: ENOENT/);
  });
});

describe("redacted and client options", () => {
  test("redacted() never holds a secret", () => {
    const seed = new TextDecoder().decode(nkeys.createUser().getSeed());
    const seedFile = file("user.nk", `${seed}\n`);
    for (const c of [
      { servers: ["nats://127.0.0.1:4222"], user: "alice", password: SECRET },
      { servers: ["tls://127.0.0.1:4222"], token: SECRET, tls: { ca: "/ca.pem" } },
      { servers: ["nats://127.0.0.1:4222"], nkeySeedFile: seedFile },
    ]) {
      const r = redacted(parseNatsConfig(c));
      expect(r).toContain("servers=");
      expect(r).not.toContain(SECRET);
      expect(r).not.toContain(seed);
      expect(r).not.toContain(seed.slice(0, 10));
    }
    expect(redacted(parseNatsConfig({ servers: ["nats://a:1"], user: "alice", password: SECRET }))).toBe('servers=nats://a:1 auth=user/password user="alice"');
  });
  test("client options: host:port servers, credentials, seed and PEM files read", () => {
    const ca = file("ca.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    const o = clientOptions(parseNatsConfig({ servers: ["tls://127.0.0.1:4222", "nats://[fd00::1]:4222"], user: "u", password: SECRET, tls: { ca } }));
    expect(o.servers).toEqual(["127.0.0.1:4222", "[fd00::1]:4222"]);
    expect(o.user).toBe("u");
    expect(o.pass).toBe(SECRET);
    expect(o.tls).toEqual({ ca: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" });
    const seed = new TextDecoder().decode(nkeys.createUser().getSeed());
    expect(typeof clientOptions(parseNatsConfig({ servers: ["nats://a:1"], nkeySeedFile: file("u.nk", seed) })).authenticator).toBe("function");
    const notSeed = file("bad.nk", SECRET);
    let msg = "";
    try {
      clientOptions(parseNatsConfig({ servers: ["nats://a:1"], nkeySeedFile: notSeed }));
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toContain("not a user nkey seed");
    expect(msg).not.toContain(SECRET);
  });
});
