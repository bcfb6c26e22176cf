// Reading Prometheus text exposition in tests with the Prometheus project's own parser
// (client_python's `text_string_to_metric_families`, Debian python3-prometheus-client):
// text it cannot read fails the test, and what it reads is what a Prometheus server would.

export interface Sample {
  /** the sample's own name (a histogram's `_bucket`, `_sum`, `_count`; a counter's `_total`) */
  name: string;
  labels: Record<string, string>;
  value: number;
  /** its family's name and type as the parser reads them */
  family: string;
  type: string;
}

const SCRIPT = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        out.append({"name": s.name, "labels": s.labels, "value": s.value if s.value == s.value else "NaN", "family": f.name, "type": f.type})
print(json.dumps(out))
`;

/** Every sample of `text`; throws with the parser's message when it is not the format. */
export function parseMetrics(text: string): Sample[] {
    // Debian's interpreter, which the package is installed for (another python3 may come first on PATH)
  const p = Bun.spawnSync(["/usr/bin/python3", "-c", SCRIPT], { stdin: Buffer.from(text), stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`not Prometheus text: ${p.stderr.toString().trim().split("\n").pop()}`);
  return (JSON.parse(p.stdout.toString()) as Array<Omit<Sample, "value"> & { value: number | "NaN" }>).map((s) => ({ ...s, value: s.value === "NaN" ? NaN : s.value }));
}

/** The value of the sample of that name whose labels include `labels` (undefined: none). */
export function metric(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}
