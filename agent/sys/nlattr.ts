// The one writer of netlink messages' attributes (type-length-value, 4-byte aligned), for
// rtnetlink requests (netlink.ts) and nftables batches (agent/datapath/nfnl.ts): a growable
// buffer that nested attributes are begun and ended in, so a message is written once, in
// place, whatever its depth. Reading attributes is nftmsg.ts's `attrs`.

/** The flag of an attribute that holds attributes (nfnetlink checks it; rtnetlink does not). */
export const NLA_F_NESTED = 0x8000;

export const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const enc = new TextEncoder();

export class AttrWriter {
  dv: DataView;
  /** where the next byte goes */
  o = 0;
  constructor(public buf: Uint8Array<ArrayBuffer> = new Uint8Array(1 << 16)) {
    this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  /** Room for `n` more bytes, the buffer doubled as often as needed. */
  ensure(n: number): void {
    if (this.o + n <= this.buf.length) return;
    let size = Math.max(16, this.buf.length * 2);
    while (size < this.o + n) size *= 2;
    const b = new Uint8Array(size);
    b.set(this.buf.subarray(0, this.o));
    this.buf = b;
    this.dv = new DataView(b.buffer);
  }

  /** `n` zero bytes (a fixed header to fill in), padded; returns where they start. */
  zeros(n: number): number {
    this.ensure(n + 3);
    const at = this.o;
    this.buf.fill(0, at, at + n);
    this.o += n;
    this.pad();
    return at;
  }

  /** Bytes as they are (a fixed header), padded. */
  raw(b: Uint8Array): void {
    this.ensure(b.length + 3);
    this.buf.set(b, this.o);
    this.o += b.length;
    this.pad();
  }

  /** Starts an attribute; returns its offset for end(). */
  begin(type: number): number {
    this.ensure(4);
    const at = this.o;
    this.dv.setUint16(at + 2, type, true);
    this.o += 4;
    return at;
  }

  /** Ends the attribute begun at `at`: its length, then padding to 4 bytes. */
  end(at: number): void {
    this.dv.setUint16(at, this.o - at, true);
    this.pad();
  }

  pad(): void {
    const p = (4 - (this.o & 3)) & 3;
    this.ensure(p);
    this.buf.fill(0, this.o, this.o + p);
    this.o += p;
  }

  /** An attribute holding the attributes `body` writes. */
  nest(type: number, body: () => void): void {
    const at = this.begin(type);
    body();
    this.end(at);
  }

  bytes(type: number, b: Uint8Array): void {
    const at = this.begin(type);
    this.ensure(b.length);
    this.buf.set(b, this.o);
    this.o += b.length;
    this.end(at);
  }

  /** A NUL-terminated string. */
  str(type: number, s: string): void {
    this.bytes(type, enc.encode(`${s}\0`));
  }

  /** A 32-bit number in host byte order (rtnetlink's integers). */
  u32(type: number, n: number): void {
    this.int32(type, n, HOST_LE);
  }

  /** A 32-bit number in network byte order (nftables' integers). */
  be32(type: number, n: number): void {
    this.int32(type, n, false);
  }

  private int32(type: number, n: number, littleEndian: boolean): void {
    const at = this.begin(type);
    this.ensure(4);
    this.dv.setUint32(this.o, n >>> 0, littleEndian);
    this.o += 4;
    this.end(at);
  }

  /** What was written. */
  written(): Uint8Array<ArrayBuffer> {
    return this.buf.subarray(0, this.o);
  }
}
