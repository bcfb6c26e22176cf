// The one skein binary. With CNI_COMMAND set it is the CNI plugin kubelet's runtime execs;
// otherwise it is the CLI. Both paths import lazily, so a CNI exec never pays for the
// Kubernetes client, NATS, the HTTP server or the compiler.
if (process.env.CNI_COMMAND) {
  const { cniMain } = await import("./cni/main.ts");
  await cniMain();
} else {
  const { cliMain } = await import("./cli/index.ts");
  process.exitCode = await cliMain(process.argv.slice(2));
}
export {};
