// Reads with a size limit. What the CNI plugin reads (stdin, the node file, the IPAM state)
// comes from outside: an endless or huge input must end in a clear error, not in a plugin
// that runs until kubelet's timeout kills it or the node runs out of memory.
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";

export class TooLargeError extends Error {
  constructor(readonly what: string, readonly limit: number) {
    super(`${what} is larger than ${formatBytes(limit)}: refused`);
    this.name = "TooLargeError";
  }
}

const formatBytes = (n: number) => (n % 1048576 === 0 ? `${n / 1048576} MiB` : n % 1024 === 0 ? `${n / 1024} KiB` : `${n} bytes`);

/** A path that names something other than a regular file (a FIFO, a directory, a device). */
export class NotAFileError extends Error {
  constructor(readonly what: string) {
    super(`${what} is not a regular file: refused`);
    this.name = "NotAFileError";
  }
}

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

/**
 * A regular file's content, failing without reading it when it is larger than `limit`.
 * Opened non-blocking: a FIFO put in the file's place would otherwise hold the reader (and
 * every lock it holds) until someone writes to it; it is refused like any non-file.
 */
export function readFileBounded(path: string, limit: number, what: string): Buffer {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new NotAFileError(what);
    // The size says it at once; the bounded read still guards a file that grows meanwhile.
    if (st.size > limit) throw new TooLargeError(what, limit);
    return readFdBounded(fd, limit, what);
  } finally {
    closeSync(fd);
  }
}

/** A stream's bytes, failing with `tooLarge()` (the rest cancelled, not read) once more than
 * `limit` bytes arrive; an absent stream is empty. */
export async function readStreamBounded(stream: ReadableStream<Uint8Array> | null, limit: number, tooLarge: () => Error): Promise<Buffer> {
  if (!stream) return Buffer.alloc(0);
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge();
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}
