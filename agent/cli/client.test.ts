import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { askAgent } from "./client.ts";

const dir = mkdtempSync(`${tmpdir()}/skein-client-`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(`${dir}/token`, "client-test-token-0123456789");

/** A fake agent on loopback answering every request with `answer()`; `seen` the Authorization headers it got. */
function fake(answer: () => Response) {
  const seen: Array<string | null> = [];
  const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (r) => (seen.push(r.headers.get("authorization")), answer()) });
  return { url: `http://127.0.0.1:${s.port}`, seen, stop: () => s.stop(true) };
}

test("a redirect is not followed: the token and the question stay with the agent asked", async () => {
  const elsewhere = fake(() => Response.json({ node: "elsewhere", ready: true }));
  const agent = fake(() => Response.redirect(`${elsewhere.url}/v1/status`, 302));
  try {
    await expect(askAgent("/v1/status", { agent: agent.url, tokenFile: `${dir}/token` })).rejects.toThrow(/redirect/);
    expect(elsewhere.seen).toEqual([]);
  } finally {
    agent.stop();
    elsewhere.stop();
  }
});

test("an endless answer is cut at MAX_ANSWER bytes, without holding it all", async () => {
  let sent = 0;
  const chunk = new Uint8Array(1 << 16).fill(32);
  const agent = fake(
    () =>
      new Response(
        new ReadableStream({
          pull(c) {
            sent += chunk.length;
            c.enqueue(chunk);
          },
        }),
        { headers: { "Content-Type": "application/json" } },
      ),
  );
  try {
    await expect(askAgent("/v1/state", { agent: agent.url, timeoutMs: 60_000 })).rejects.toThrow(/more than 67108864 bytes/);
    // the read stopped soon after the limit (the kernel's buffers hold some more)
    expect(sent).toBeLessThan(64 * 1024 * 1024 + (16 << 20));
  } finally {
    agent.stop();
  }
}, 60_000);

test("an answer that is not a JSON object is refused by name, not printed as 'undefined' or crashed on", async () => {
  const { cliMain } = await import("./index.ts");
  for (const body of ['{"node": 1, "peers": "x"', "[1,2,3]", "null", "<html>"]) {
    const agent = fake(() => new Response(body, { headers: { "Content-Type": "application/json" } }));
    try {
      for (const argv of [["status"], ["status", "--json"]]) {
        let out = "";
        let err = "";
        const code = await cliMain([...argv, "--agent", agent.url], (s) => void (out += s), (s) => void (err += s));
        expect({ body, argv, code, out }).toEqual({ body, argv, code: 1, out: "" });
        expect(err).toContain("the agent answered /v1/status with no JSON object");
      }
    } finally {
      agent.stop();
    }
  }
});

test("control characters in what an agent answers are shown escaped in human output, never sent to the terminal", async () => {
  const { cliMain } = await import("./index.ts");
  const esc = "\u001b[2J\u001b]0;pwned\u0007";
  const agent = fake(() =>
    Response.json({ node: `n1${esc}`, version: "0.1.0", mode: "auto", ready: true, reasons: [`r${esc}`], uptimeSeconds: 1, generation: 1, peers: [{ name: `p${esc}`, source: "gossip", paths: [] }] }),
  );
  const text = fake(() => new Response(`FRONTENDS ${esc}\n\tline two\n`, { headers: { "Content-Type": "text/plain" } }));
  try {
    let out = "";
    expect(await cliMain(["status", "--agent", agent.url], (s) => void (out += s), () => {})).toBe(0);
    expect(out).toContain("n1\\x1b[2J");
    expect(out).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f]/);
    out = "";
    expect(await cliMain(["tables", "--agent", text.url], (s) => void (out += s), () => {})).toBe(0);
    expect(out).toBe("FRONTENDS \\x1b[2J\\x1b]0;pwned\\x07\n\tline two\n");
    // --json keeps the answer as it came (JSON escapes it)
    out = "";
    await cliMain(["status", "--json", "--agent", agent.url], (s) => void (out += s), () => {});
    expect(JSON.parse(out).node).toBe(`n1${esc}`);
  } finally {
    agent.stop();
    text.stop();
  }
});
