// Reading Prometheus text exposition in tests: the parser is an npm package without types,
// given them here once for every test that checks /metrics.
import parse from "parse-prometheus-text-format";

export interface Sample {
  value?: string;
  labels?: Record<string, string>;
  buckets?: Record<string, string>;
  count?: string;
  sum?: string;
}

export interface Family {
  name: string;
  help: string;
  type: "COUNTER" | "GAUGE" | "HISTOGRAM" | "SUMMARY" | "UNTYPED";
  metrics: Sample[];
}

/** Every metric family in `text`, by name; throws when the text is not the format. */
export function parseMetrics(text: string): Map<string, Family> {
  return new Map((parse(text) as Family[]).map((f) => [f.name, f]));
}
