// Smaller gaps between skein apiserver and what a user of kube-apiserver and kubectl expects.
import { expect, test } from "bun:test";
import { SKEIN } from "../harness/index.ts";
import { TOKEN, removeDir, skhaDir } from "./lib.ts";

test("--listen with a port out of range exits with a message naming it (observed: exit 2, silent)", async () => {
  const d = skhaDir("misc-port");
  try {
    const p = Bun.spawn([SKEIN, "apiserver", "--dir", d, "--listen", "127.0.0.1:99999", "--token", TOKEN], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    expect(code).not.toBe(0);
    expect(out + err).toContain("99999");
  } finally {
    removeDir(d);
  }
}, 30_000);
