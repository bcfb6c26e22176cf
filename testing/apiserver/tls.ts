// A certificate authority made for the test API server, and a serving certificate for loopback
// (and any other addresses asked for), through Debian's openssl. The agent then trusts that
// CA the way it trusts a real cluster's: from the kubeconfig. The CA's key is kept with the
// certificates, so that a serving certificate near its end is re-issued by the same CA and
// every kubeconfig already handed out keeps trusting the server.
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { run } from "../../agent/sys/exec.ts";

export interface ServingCerts {
  ca: string;
  cert: string;
  key: string;
  /** the CA's key; absent in certificates saved before it was kept (they cannot be renewed) */
  caKey?: string;
}

export interface CertLifetimes {
  /** how long a serving certificate is valid (kubeadm's: a year) */
  validitySeconds?: number;
  /** how long the CA is valid (kubeadm's: ten years) */
  caValiditySeconds?: number;
}

const DAY = 86_400;
export const DEFAULT_VALIDITY_S = 365 * DAY;
export const DEFAULT_CA_VALIDITY_S = 10 * 365 * DAY;
/** notBefore this far in the past, so that a client whose clock is a little behind accepts it */
const BACKDATE_S = 300;
const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/** openssl ca's date form (GeneralizedTime) for `t` ms since the epoch */
const asn1 = (t: number) => new Date(Math.floor(t / 1000) * 1000).toISOString().replace(/[-:T]/g, "").replace(/\.000Z$/, "Z");

function inTemp<T>(f: (dir: string) => T): T {
  const dir = mkdtempSync(`${tmpdir()}/skein-apiserver-tls-`);
  try {
    return f(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Signs a certificate with exact start and end times (openssl 3.0's `x509 -req` counts only days). */
function sign(dir: string, csr: string, ca: { cert: string; key: string } | undefined, ext: string, seconds: number): string {
  const now = Date.now();
  writeFileSync(`${dir}/index.txt`, "");
  writeFileSync(`${dir}/serial`, Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("hex").replace(/^./, "1") + "\n");
  writeFileSync(`${dir}/ext`, ext);
  writeFileSync(`${dir}/ca.cnf`, `[ca]\ndefault_ca = d\n[d]\ndatabase = ${dir}/index.txt\nnew_certs_dir = ${dir}\nserial = ${dir}/serial\ndefault_md = sha256\npolicy = p\nunique_subject = no\n[p]\ncommonName = supplied\n`);
  const signer = ca ? (writeFileSync(`${dir}/signer.crt`, ca.cert), writeFileSync(`${dir}/signer.key`, ca.key), ["-cert", `${dir}/signer.crt`, "-keyfile", `${dir}/signer.key`]) : ["-selfsign", "-keyfile", `${dir}/new.key`];
  run(["openssl", "ca", "-batch", "-notext", "-config", `${dir}/ca.cnf`, ...signer, "-in", csr, "-out", `${dir}/out.crt`, "-startdate", asn1(now - BACKDATE_S * 1000), "-enddate", asn1(now + seconds * 1000), "-extfile", `${dir}/ext`]);
  return readFileSync(`${dir}/out.crt`, "utf8");
}

export function makeCa(seconds = DEFAULT_CA_VALIDITY_S): { ca: string; caKey: string } {
  return inTemp((dir) => {
    run(["openssl", "req", "-new", ...EC, "-keyout", `${dir}/new.key`, "-out", `${dir}/new.csr`, "-subj", "/CN=skein-test-apiserver-ca"]);
    const ca = sign(dir, `${dir}/new.csr`, undefined, "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\nsubjectKeyIdentifier=hash\n", seconds);
    return { ca, caKey: readFileSync(`${dir}/new.key`, "utf8") };
  });
}

export function issueServingCert(ca: { ca: string; caKey: string }, addresses: string[] = [], seconds = DEFAULT_VALIDITY_S): ServingCerts {
  return inTemp((dir) => {
    run(["openssl", "req", "-new", ...EC, "-keyout", `${dir}/srv.key`, "-out", `${dir}/srv.csr`, "-subj", "/CN=kube-apiserver"]);
    const sans = ["IP:127.0.0.1", "IP:::1", "DNS:localhost", "DNS:kubernetes.default.svc", ...addresses.map((a) => (/^[\d.:a-f]+$/i.test(a) ? `IP:${a}` : `DNS:${a}`))];
    const cert = sign(dir, `${dir}/srv.csr`, { cert: ca.ca, key: ca.caKey }, `subjectAltName=${sans.join(",")}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\nauthorityKeyIdentifier=keyid\n`, seconds);
    return { ca: ca.ca, caKey: ca.caKey, cert, key: readFileSync(`${dir}/srv.key`, "utf8") };
  });
}

export function makeServingCerts(addresses: string[] = [], o: CertLifetimes = {}): ServingCerts {
  return issueServingCert(makeCa(o.caValiditySeconds), addresses, o.validitySeconds);
}

/** When a PEM certificate stops being valid, in ms since the epoch. */
export const notAfter = (pem: string) => new X509Certificate(pem).validToDate.getTime();

/**
 * `certs` if the serving certificate is valid for more than `renewBeforeSeconds`; otherwise a
 * new serving certificate from the same CA (a new CA only when there is no CA key or the CA
 * itself ends within the margin: then clients need the new kubeconfig). `renewed` says which.
 */
export function renewCerts(certs: ServingCerts, addresses: string[], renewBeforeSeconds: number, o: CertLifetimes = {}, now = Date.now()): { certs: ServingCerts; renewed: "no" | "cert" | "ca" } {
  const margin = renewBeforeSeconds * 1000;
  if (notAfter(certs.cert) - now > margin) return { certs, renewed: "no" };
  const validity = o.validitySeconds ?? DEFAULT_VALIDITY_S;
  if (certs.caKey && notAfter(certs.ca) - now > margin + validity * 1000) return { certs: issueServingCert({ ca: certs.ca, caKey: certs.caKey }, addresses, validity), renewed: "cert" };
  return { certs: makeServingCerts(addresses, o), renewed: "ca" };
}
