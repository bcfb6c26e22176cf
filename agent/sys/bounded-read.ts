// Reads with a size limit. What the CNI plugin reads (stdin, the node file, the IPAM state)
// comes from outside: an endless or huge input must end in a clear error, not in a plugin
// that runs until kubelet's timeout kills it or the node runs out of memory.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";

export class TooLargeError extends Error {
  constructor(readonly what: string, readonly limit: number) {
    super(`${what} is larger than ${formatBytes(limit)}: refused`);
    this.name = "TooLargeError";
  }
}

const formatBytes = (n: number) => (n % 1048576 === 0 ? `${n / 1048576} MiB` : n % 1024 === 0 ? `${n / 1024} KiB` : `${n} bytes`);

/** Everything readable from `fd` up to EOF, failing once more than `limit` bytes arrive. */
export function readFdBounded(fd: number, limit: number, what: string): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  // One byte past the limit tells "exactly the limit" from "more than the limit".
  for (;;) {
    const buf = Buffer.allocUnsafe(Math.min(65536, limit + 1 - total));
    const n = readSync(fd, buf, 0, buf.length, null);
    if (n === 0) break;
    chunks.push(buf.subarray(0, n));
    total += n;
    if (total > limit) throw new TooLargeError(what, limit);
  }
  return Buffer.concat(chunks, total);
}

/** A file's content, failing without reading it when it is larger than `limit`. */
export function readFileBounded(path: string, limit: number, what: string): Buffer {
  const fd = openSync(path, "r");
  try {
    // A regular file's size says it at once; the bounded read still guards files that grow
    // meanwhile or report no size (a FIFO, /proc).
    if (fstatSync(fd).size > limit) throw new TooLargeError(what, limit);
    return readFdBounded(fd, limit, what);
  } finally {
    closeSync(fd);
  }
}
