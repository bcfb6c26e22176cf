// Helper of bench/compile.ts, run inside a throwaway namespace: times a full load and then a
// delta through libnftables (in-process, as the agent applies them). Prints JSON.
import { readFileSync } from "node:fs";
import { openNft } from "../agent/datapath/nft.ts";

const [full, delta] = process.argv.slice(2) as [string, string];
const nft = openNft();
const time = (script: string) => {
  const t0 = performance.now();
  nft.run(script);
  return performance.now() - t0;
};
const fullMs = time(readFileSync(full, "utf8"));
const deltaMs = time(readFileSync(delta, "utf8"));
console.log(JSON.stringify({ backend: nft.backend, fullMs, deltaMs }));
