// A certificate authority made for one run of the test API server, and a serving certificate
// for loopback (and any other addresses asked for), through Debian's openssl. The agent then
// trusts that CA the way it trusts a real cluster's: from the kubeconfig.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { run } from "../../agent/sys/exec.ts";

export interface ServingCerts {
  ca: string;
  cert: string;
  key: string;
}

export function makeServingCerts(addresses: string[] = []): ServingCerts {
  const dir = mkdtempSync(`${tmpdir()}/skein-apiserver-tls-`);
  try {
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    run(["openssl", "req", "-x509", ...ec, "-keyout", `${dir}/ca.key`, "-out", `${dir}/ca.crt`, "-days", "2", "-subj", "/CN=skein-test-apiserver-ca"]);
    run(["openssl", "req", ...ec, "-keyout", `${dir}/srv.key`, "-out", `${dir}/srv.csr`, "-subj", "/CN=kube-apiserver"]);
    const sans = ["IP:127.0.0.1", "IP:::1", "DNS:localhost", "DNS:kubernetes.default.svc", ...addresses.map((a) => (/^[\d.:a-f]+$/i.test(a) ? `IP:${a}` : `DNS:${a}`))];
    writeFileSync(`${dir}/ext`, `subjectAltName=${sans.join(",")}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`);
    run(["openssl", "x509", "-req", "-in", `${dir}/srv.csr`, "-CA", `${dir}/ca.crt`, "-CAkey", `${dir}/ca.key`, "-CAcreateserial", "-out", `${dir}/srv.crt`, "-days", "2", "-extfile", `${dir}/ext`]);
    return { ca: readFileSync(`${dir}/ca.crt`, "utf8"), cert: readFileSync(`${dir}/srv.crt`, "utf8"), key: readFileSync(`${dir}/srv.key`, "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
