// Loads compiler.wasm and runs the unit compile in it. The file import makes `bun build
// --compile` embed the module in the executable; from a source checkout it resolves to
// build/compiler.wasm.
import wasmPath from "../build/compiler.wasm" with { type: "file" };
import type { Family } from "./address.ts";
import type { CompileOptions, UnitCompiler } from "./reference/compile.ts";
import type { Frontend, Ring, ServiceUnit, Target } from "./tables.ts";
import type { EndpointSlice, Service } from "./state.ts";
import { KINDS, Names, packNodeIPs, packService, packSlice, type PackedService } from "./pack.ts";
import { KEY_BYTES } from "./keys.ts";

export const EXPECTED_ABI = 5;

export interface CompilerExports {
  memory: WebAssembly.Memory;
  abiVersion(): number;
  reserve(bytes: number): number;
  compileUnits(nUnits: number, input: number, scratch: number, maxAddrs: number, output: number): number;
  /** assembly/policy.ts: each returns where its output starts */
  policyAddresses(input: number, words: number): number;
  policyRules(input: number, words: number): number;
}

export async function loadCompiler(path: string = wasmPath): Promise<CompilerExports> {
  const bytes = await Bun.file(path).arrayBuffer();
  const { instance } = await WebAssembly.instantiate(bytes, {
    env: {
      abort(_msg: number, _file: number, line: number, col: number): never {
        throw new Error(`compiler.wasm aborted at ${line}:${col}`);
      },
    },
  });
  const exports = instance.exports as unknown as CompilerExports;
  const abi = exports.abiVersion();
  if (abi !== EXPECTED_ABI) {
    throw new Error(`compiler.wasm at ${path} has ABI ${abi}, this build expects ${EXPECTED_ABI}`);
  }
  return exports;
}

const SCOPES = ["internal", "external"] as const;
/** A copy of `slots` in the narrowest type that holds an index of `backends`. */
function narrowRing(backends: number, slots: Int32Array): Ring {
  const ring = backends <= 0x100 ? new Uint8Array(slots.length) : backends <= 0x10000 ? new Uint16Array(slots.length) : new Int32Array(slots.length);
  ring.set(slots);
  return ring;
}
// scratch bytes per slice address of the largest unit (assembly/index.ts compileUnits):
// a slice pointer, a 32-byte candidate, two sort indexes and the Maglev state
const SCRATCH_PER_ADDR = 4 + 32 + 8 + 8;

/** Input words per call into compiler.wasm: a whole-cluster compile runs in batches of about
 * this size, so that the module's memory (which never shrinks) stays near one batch's input,
 * scratch and output (about 1 MB) instead of growing with the cluster. */
const BATCH_WORDS = 1 << 16;

/**
 * The unit compile in compiler.wasm. A slice is held packed (`slice`), and a Service is
 * packed at its first compile and kept beside the object; a batch is copied into the
 * module's memory and compiled in one call, and the units are read back from typed-array
 * views, their addresses taken from the packed objects' text rather than formatted anew.
 */
export function wasmUnits(c: CompilerExports, options: Pick<CompileOptions, "nodeName" | "nodeIPs" | "ringFactor">): UnitCompiler<Uint32Array> {
  const opts = { ...options };
  const names = new Names();
  const services = new WeakMap<Service, PackedService>();
  const slices = new WeakMap<EndpointSlice, Uint32Array>();
  let nodeWords = packNodeIPs(opts.nodeIPs);
  const pack = (o: Service): PackedService => {
    let p = services.get(o);
    if (!p) services.set(o, (p = packService(o, names)));
    return p;
  };
  const slice = (o: EndpointSlice): Uint32Array => {
    let p = slices.get(o);
    if (!p) slices.set(o, (p = packSlice(o, names, opts.nodeName)));
    return p;
  };

  function units(batch: Array<{ service: Service; slices: Uint32Array[] }>): ServiceUnit[] {
    const out: ServiceUnit[] = [];
    let from = 0;
    let words = 0;
    for (let i = 0; i < batch.length; i++) {
      const u = batch[i]!;
      words += 2 + pack(u.service).words.length;
      for (const s of u.slices) words += 1 + s.length;
      if (words >= BATCH_WORDS || i === batch.length - 1) {
        for (const x of call(batch.slice(from, i + 1))) out.push(x);
        from = i + 1;
        words = 0;
      }
    }
    return out;
  }

  function call(batch: Array<{ service: Service; slices: Uint32Array[] }>): ServiceUnit[] {
    const packs = batch.map(({ service, slices }) => ({ svc: pack(service), slices }));
    let words = 4 + nodeWords.length;
    let maxAddrs = 0;
    for (const u of packs) {
      words += 2 + u.svc.words.length;
      let addrs = 0;
      for (const s of u.slices) {
        words += 1 + s.length;
        addrs += s[3]!; // the slice's address count (pack.ts)
      }
      maxAddrs = Math.max(maxAddrs, addrs, u.slices.length);
    }
    const inputBytes = words * 4;
    const scratchBytes = maxAddrs * SCRATCH_PER_ADDR + 16;
    const input = c.reserve(inputBytes + scratchBytes + 8);
    const scratch = input + inputBytes;
    const output = (scratch + scratchBytes + 7) & ~7;
    const w = new Uint32Array(c.memory.buffer, input, words);
    new Float64Array(c.memory.buffer, input, 1)[0] = opts.ringFactor;
    w[2] = opts.nodeIPs.length;
    w.set(nodeWords, 3);
    let at = 3 + nodeWords.length;
    for (const u of packs) {
      w[at] = u.slices.length;
      w[at + 1] = u.svc.words.length;
      w.set(u.svc.words, at + 2);
      at += 2 + u.svc.words.length;
      for (const s of u.slices) {
        w[at] = s.length;
        w.set(s, at + 1);
        at += 1 + s.length;
      }
    }
    const end = c.compileUnits(batch.length, input, scratch, maxAddrs, output);
    // the module may have grown its memory: views are taken after the call
    return read(c.memory.buffer, output, end, batch, packs);
  }

  function read(buf: ArrayBuffer, from: number, end: number, batch: Array<{ service: Service; slices: Uint32Array[] }>, packs: Array<{ svc: PackedService }>): ServiceUnit[] {
    const u32 = new Uint32Array(buf, 0, end >> 2);
    const bytes = new Uint8Array(buf, 0, end);
    const i32 = new Int32Array(buf, 0, end >> 2);
    const out: ServiceUnit[] = [];
    let p = from >> 2;
    for (let i = 0; i < batch.length; i++) {
      const service = batch[i]!.service;
      const pk = packs[i]!;
      const nF = u32[p]!;
      const nT = u32[p + 1]!;
      p += 3 + u32[p + 2]!;
      const frontends: Frontend[] = [];
      for (let f = 0; f < nF; f++, p += 7) {
        const kind = KINDS[u32[p + 1]!]!;
        frontends.push({
          family: u32[p + 4] as Family,
          ip: kind === "nodeport" ? opts.nodeIPs[u32[p]!]! : pk.svc.ips[u32[p]!]!,
          protocol: service.ports[u32[p + 3]!]!.protocol,
          port: u32[p + 2]!,
          kind,
          target: u32[p + 5]!,
          masquerade: u32[p + 6] === 1,
        });
      }
      const targets: Target[] = [];
      for (let t = 0; t < nT; t++) {
        const sp = service.ports[u32[p]!]!;
        const family = u32[p + 1] as Family;
        const scope = SCOPES[u32[p + 2]!]!;
        const nb = u32[p + 3]!;
        const size = u32[p + 4]!;
        p += 5;
        p += 3 * nb; // each backend's slice, address and port: its key below says the same
        // keys and ring copied out of the module's memory, each its own small typed array
        // (views into one buffer per call would hold an ArrayBuffer object per recompiled
        // service, and a whole call's buffer while any of its targets lives)
        const keys = bytes.slice(p * 4, p * 4 + nb * KEY_BYTES);
        p += (nb * KEY_BYTES + 3) >> 2;
        const ring = narrowRing(nb, i32.subarray(p, p + size));
        p += size;
        targets.push({
          id: 0,
          service: `${service.namespace}/${service.name}:${sp.name || sp.port}/${sp.protocol}`,
          family,
          scope,
          keys,
          ringSize: size,
          ring,
          affinity: service.affinityTimeout > 0,
        });
      }
      out.push({ frontends, targets });
    }
    if (p !== end >> 2) throw new Error(`compiler.wasm wrote ${end - from} bytes of units, ${p * 4 - from} were read`);
    return out;
  }

  return {
    slice,
    units,
    setNodeIPs(ips) {
      opts.nodeIPs = ips;
      nodeWords = packNodeIPs(ips);
    },
  };
}
