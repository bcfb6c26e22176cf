// The test API server's write-ahead journal: every write is appended as one JSON line and
// flushed to disk (fdatasync) before it is answered, so an acknowledged write survives a
// kill -9 or a power cut; the snapshot (state.json) is saved now and then and the journal is
// emptied after each save. At start the lines newer than the snapshot are replayed over it.
// A line cut short by a crash while it was written (the last one, without its newline) was
// never acknowledged and is dropped; anything else that does not read is refused.
import { closeSync, fdatasyncSync, fstatSync, ftruncateSync, openSync, readFileSync, writeSync } from "node:fs";
import type { KubeObject } from "./resources.ts";

/** One write: the object after it, or for a deletion the namespace and name of what went. */
export interface JournalEntry {
  rev: number;
  group: string;
  plural: string;
  object?: KubeObject;
  namespace?: string;
  name?: string;
}

/** Writes all of `data` at the end of `fd` (a write to a full disk may take only part). */
export function writeAll(fd: number, data: Uint8Array): void {
  for (let off = 0; off < data.byteLength; ) {
    const n = writeSync(fd, data, off);
    if (n <= 0) throw new Error(`short write (${off} of ${data.byteLength} bytes)`);
    off += n;
  }
}

/** The entries of the journal `file` (none if it is missing); `log` is told of a dropped tail. */
export function readJournal(file: string, log: (s: string) => void): JournalEntry[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  const lines = text.split("\n");
  const tail = lines.pop()!;
  if (tail !== "") log(`${file}: dropped its last line, cut short (${tail.length} bytes, a write that was never answered)\n`);
  const bad = (i: number, why: string) => new Error(`${file}: line ${i + 1}: ${why} (kept as it is; the writes in it are not in state.json)`);
  return lines.map((l, i) => {
    let e: JournalEntry;
    try {
      e = JSON.parse(l) as JournalEntry;
    } catch (err) {
      throw bad(i, (err as Error).message);
    }
    if (!e || typeof e !== "object" || !Number.isSafeInteger(e.rev) || typeof e.group !== "string" || typeof e.plural !== "string") throw bad(i, "not a journal entry (rev, group, plural)");
    const obj = e.object !== undefined && typeof e.object === "object" && e.object !== null && !Array.isArray(e.object);
    if (!obj && typeof e.name !== "string") throw bad(i, "neither an object nor the name of a deleted one");
    return e;
  });
}

/** The journal file, open for appending. */
export class Journal {
  private readonly fd: number;
  /** its length: what a failed append is cut back to */
  bytes: number;

  constructor(readonly file: string) {
    this.fd = openSync(file, "a", 0o600);
    this.bytes = fstatSync(this.fd).size;
  }

  /** Appends `e` durably, or throws having left the journal as it was. */
  append(e: JournalEntry): void {
    const line = Buffer.from(JSON.stringify(e) + "\n");
    try {
      writeAll(this.fd, line);
      fdatasyncSync(this.fd);
    } catch (err) {
      // a part of the line left behind would be followed by the next one
      try {
        ftruncateSync(this.fd, this.bytes);
      } catch {}
      throw err;
    }
    this.bytes += line.byteLength;
  }

  /** Empties it (once what it held is in a saved snapshot). */
  reset(): void {
    ftruncateSync(this.fd, 0);
    fdatasyncSync(this.fd);
    this.bytes = 0;
  }

  close(): void {
    closeSync(this.fd);
  }
}
