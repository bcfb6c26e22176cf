// Prints "N passed, N failed, N skipped" from bun's JUnit report: the line CI reads.
import { XMLParser } from "fast-xml-parser";

const file = process.argv[2];
if (!file) {
  console.error("usage: junit-summary.ts REPORT.xml");
  process.exit(2);
}
const report = Bun.file(file);
if (!(await report.exists())) {
  console.log("0 passed, 1 failed (no JUnit report was written)");
  process.exit(1);
}
const xml = new XMLParser({ ignoreAttributes: false, isArray: (name) => name === "testsuite" || name === "testcase" }).parse(await report.text());

let passed = 0;
let failed = 0;
let skipped = 0;
const failures: string[] = [];
type Suite = { testsuite?: Suite[]; testcase?: Array<Record<string, unknown>> };
function walk(s: Suite) {
  for (const c of s.testcase ?? []) {
    if (c.failure !== undefined || c.error !== undefined) {
      failed++;
      failures.push(`${c["@_classname"] ?? ""} > ${c["@_name"]}`);
    } else if (c.skipped !== undefined || c["@_skipped"] === "true") skipped++;
    else passed++;
  }
  for (const child of s.testsuite ?? []) walk(child);
}
walk(xml.testsuites ?? { testsuite: [] });
for (const f of failures) console.log(`failed: ${f}`);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exit(failed ? 1 : 0);
