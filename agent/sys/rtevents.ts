// Listens for the link, address, route and neighbour changes of a network namespace (the
// rtnetlink multicast groups), so that the overlay hears within a poll that someone deleted
// or changed one of its entries. Reading never blocks. The kernel says when it dropped
// notifications (the receive buffer overflowed): `lost` is then set and the caller must
// compare everything, as for nfevents.ts.
//
// Not everything is notified: the kernel removes IPv4 routes through a link that goes down or
// away without a route notification, so the link's own notification is what tells of them.
import { decodeRt, type RtMsg } from "./rtnl.ts";
import {
  closeSocket,
  EAGAIN,
  ENOBUFS,
  MSG_DONTWAIT,
  NETLINK_ROUTE,
  openListener,
  receive,
} from "./nlsock.ts";

const RTNLGRP_LINK = 1;
const RTNLGRP_NEIGH = 3;
const RTNLGRP_IPV4_IFADDR = 5;
const RTNLGRP_IPV4_ROUTE = 7;
const RTNLGRP_IPV6_IFADDR = 9;
const RTNLGRP_IPV6_ROUTE = 11;
const GROUPS = [RTNLGRP_LINK, RTNLGRP_NEIGH, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV6_ROUTE];

/** Room for the notifications of a large apply (some 200 bytes each, three per peer). */
const RECEIVE_BUFFER = 4 << 20;
/** datagrams one read() takes at most; the rest waits for the next */
const READ_MAX = 4096;
/** messages one read() hands out at most; past it the read says `lost` (compare everything) */
const MESSAGES_MAX = 20_000;

export class RtEvents {
  private fd: number;
  private readonly buf = new Uint8Array(1 << 16);

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** Subscribes to the rtnetlink changes of this process's namespace, or the one at `netnsPath`. */
  static open(netnsPath?: string, o: { receiveBufferBytes?: number } = {}): RtEvents {
    return new RtEvents(openListener(NETLINK_ROUTE, netnsPath, GROUPS, o.receiveBufferBytes ?? RECEIVE_BUFFER));
  }

  /** What arrived since the last read, without blocking; `lost` when the kernel dropped some
   * (or a datagram did not fit), or more arrived than one read hands out. */
  read(): { messages: RtMsg[]; lost: boolean } {
    const messages: RtMsg[] = [];
    let lost = false;
    if (this.fd < 0) return { messages, lost };
    for (let i = 0; i < READ_MAX; i++) {
      const n = receive(this.fd, this.buf, MSG_DONTWAIT);
      if (n === -EAGAIN) return { messages, lost };
      if (n < 0) {
        lost = true;
        if (n === -ENOBUFS) continue;
        return { messages, lost };
      }
      if (n > this.buf.length) {
        lost = true;
        continue;
      }
      const dv = new DataView(this.buf.buffer, 0, n);
      for (let off = 0; off + 16 <= n; ) {
        const len = dv.getUint32(off, true);
        if (len < 16 || len > n - off) {
          lost = true;
          break;
        }
        const m = decodeRt(this.buf, off, len);
        if (m) {
          if (messages.length < MESSAGES_MAX) messages.push(m);
          else lost = true;
        }
        off += (len + 3) & ~3;
      }
    }
    return { messages, lost: true };
  }

  close(): void {
    if (this.fd < 0) return;
    closeSocket(this.fd);
    this.fd = -1;
  }
}
