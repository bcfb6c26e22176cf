// `skein apiserver` as a process of its own on loopback, as the demo runs it, and kubectl
// (Debian kubernetes-client) against it through the kubeconfig the server writes: what the
// kubectl e2e suites share.
import { runAsync } from "../../agent/sys/exec.ts";
import { SKEIN, freePort, waitFor } from "./index.ts";

export const KUBECTL = Bun.which("kubectl");

export class KubectlServer {
  port = 0;
  /** what the server printed since it last started */
  out = "";
  private proc: ReturnType<typeof Bun.spawn> | undefined;

  constructor(
    readonly dir: string,
    private readonly token: string,
    private readonly flags: string[] = [],
  ) {}

  /** Starts the server (on the same port after the first start) and waits until it serves. */
  async start(): Promise<void> {
    if (!KUBECTL) throw new Error("kubectl is not installed (Debian kubernetes-client)");
    this.port ||= freePort();
    const p = Bun.spawn([SKEIN, "apiserver", "--dir", this.dir, "--listen", `127.0.0.1:${this.port}`, "--token", this.token, ...this.flags], { stdout: "pipe", stderr: "pipe" });
    this.proc = p;
    this.out = "";
    void (async () => {
      for await (const c of p.stdout) this.out += new TextDecoder().decode(c);
    })();
    await waitFor("skein apiserver serving", () => this.out.includes("serving"), 15_000);
  }

  async stop(signal: "SIGTERM" | "SIGKILL" = "SIGTERM"): Promise<void> {
    this.proc?.kill(signal);
    await this.proc?.exited;
  }

  /** kubectl with the server's kubeconfig: exit code and output */
  async kc(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    const r = await runAsync([KUBECTL!, "--kubeconfig", `${this.dir}/kubeconfig`, "--cache-dir", `${this.dir}/cache`, ...args], { allowFail: true });
    return { code: r.exitCode, out: r.stdout, err: r.stderr };
  }

  /** kubectl that must succeed: its output */
  async ok(...args: string[]): Promise<string> {
    const r = await this.kc(...args);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")}: exit ${r.code}: ${r.err}`);
    return r.out;
  }
}
