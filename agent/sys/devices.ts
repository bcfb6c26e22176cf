// Names and numbers by which skein's kernel objects outside nftables are known as its own:
// the overlay's device, its UDP port, and the protocol its routes carry. The CNI plugin's
// masquerade table names the device too, so they live here rather than in the overlay.

/** the VXLAN device of the overlay */
export const VXLAN_DEV = "skein.vxlan";
/** IANA's VXLAN port (the kernel's default, 8472, is Linux's own pre-standard one) */
export const VXLAN_PORT = 4789;
/** rtm_protocol of every route the overlay makes: what carries it is skein's, nothing else is */
export const RTPROT_SKEIN = 0x56;
