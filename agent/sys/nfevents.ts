// Listens for the nftables changes of a network namespace, so the agent learns within a
// read that something else changed its tables. The kernel multicasts every committed
// transaction to the NFNLGRP_NFTABLES group: one message per object it changed, then one
// generation message (NEWGEN) naming the generation it made and the thread that committed
// it. Reading never blocks; a transaction is handed out once its generation has arrived.
//
// Nothing is dropped silently: when the socket's receive buffer overflows the kernel drops
// notifications and says so (ENOBUFS), and `read` reports `lost`; the caller must then look
// at the ruleset itself. The kernel reports the overflow before the messages still queued
// from before it, so where the gap lies among them is unknown: they are all dropped (what
// is queued when the overflow is reported, up to the first empty read), since a generation
// message may be among the lost ones and the changes before it would otherwise be credited
// to the next transaction's committer.
import { TransactionAssembler, type NftTransaction } from "./nftmsg.ts";
import {
  closeSocket,
  EAGAIN,
  ENOBUFS,
  MSG_DONTWAIT,
  NETLINK_ADD_MEMBERSHIP,
  NETLINK_DROP_MEMBERSHIP,
  NETLINK_NETFILTER,
  NetlinkError,
  openListener,
  receive,
  setInt,
  SOL_NETLINK,
} from "./nlsock.ts";

export type { NftChange, NftTransaction } from "./nftmsg.ts";

export interface NftEventsOptions {
  /** the socket's receive buffer (root may exceed net.core.rmem_max) */
  receiveBufferBytes?: number;
}

const NFNLGRP_NFTABLES = 7;
/** Room for a burst of ordinary changes. Each set element is a notification of its own, some
 * 125 bytes of buffer as the kernel packs them (docs/measurements.md: tens of thousands of
 * elements in one transaction fit); a larger transaction of the agent's own goes between
 * pause() and resume(). */
const RECEIVE_BUFFER = 4 << 20;
/** datagrams one read() takes at most; the rest waits for the next */
const READ_MAX = 4096;
/** what pause() drains at most after leaving the group (the queue is bounded by the buffer) */
const PAUSE_DRAIN_MAX = 1 << 20;

export class NftEvents {
  private fd: number;
  private readonly buf = new Uint8Array(1 << 16);
  private readonly tx = new TransactionAssembler();
  private paused = false;
  /** after an overflow: what is queued is dropped until the queue has been seen empty */
  private skipping = false;

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** Subscribes to the nftables changes of this process's network namespace, or the one at
   * `netnsPath`. */
  static open(netnsPath?: string, o: NftEventsOptions = {}): NftEvents {
    return new NftEvents(openListener(NETLINK_NETFILTER, netnsPath, [NFNLGRP_NFTABLES], o.receiveBufferBytes ?? RECEIVE_BUFFER));
  }

  /**
   * What arrived since the last read, without blocking: the transactions whose generation
   * message has arrived (one still arriving waits for the next read), and whether the kernel
   * dropped notifications or sent ones that could not be read (then something was missed).
   */
  read(): { transactions: NftTransaction[]; lost: boolean } {
    if (this.fd >= 0) this.pump(READ_MAX);
    return this.tx.take();
  }

  /**
   * Leaves the group: nothing committed from now on is reported, until resume(). What was
   * queued before is kept for the next read; a transaction the pause cut in two (committed
   * by another thread at that moment) counts as lost.
   */
  pause(): void {
    if (this.fd < 0 || this.paused) return;
    const e = setInt(this.fd, SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, NFNLGRP_NFTABLES);
    if (e) throw new NetlinkError("stop listening to nftables changes", e);
    this.paused = true;
    // nothing joins the queue any more: everything in it is read now, so that a transaction
    // still open afterwards is known to have been cut, not merely unread
    this.pump(PAUSE_DRAIN_MAX);
    if (this.tx.open) this.tx.gap();
  }

  /** Joins the group again. What was committed while paused is not reported. */
  resume(): void {
    if (this.fd < 0 || !this.paused) return;
    const e = setInt(this.fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES);
    if (e) throw new NetlinkError("listen to nftables changes again", e);
    this.paused = false;
  }

  /** Stops listening; closing again does nothing. */
  close(): void {
    if (this.fd < 0) return;
    closeSocket(this.fd);
    this.fd = -1;
  }

  private pump(max: number): void {
    for (let i = 0; i < max; i++) {
      const n = receive(this.fd, this.buf, MSG_DONTWAIT);
      if (n === -EAGAIN) {
        this.skipping = false;
        return;
      }
      if (n === -ENOBUFS) {
        this.tx.gap();
        this.skipping = true;
        continue;
      }
      if (n < 0) {
        this.tx.gap();
        return;
      }
      if (this.skipping) continue;
      if (n > this.buf.length) this.tx.gap(); // truncated: the messages past the buffer are gone
      else this.tx.datagram(this.buf, n);
    }
  }
}
