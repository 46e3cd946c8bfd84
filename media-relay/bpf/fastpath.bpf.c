// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
//
// Tandem's RTP kernel fast path: a tc (clsact/TCX) ingress program on the
// relay's interface. User space (media-relay/src/fastpath.rs) installs one
// `routes` entry per latched direction of a session: key = the packet as it
// arrives (relay socket ip:port <- latched peer ip:port), value = where it
// leaves (the other side's relay socket -> that side's peer) and the
// SSRC/sequence/timestamp mapping of the stream continuity
// (media-relay/src/continuity.rs, the same deltas). A hit is rewritten,
// checksums fixed, counted in `counters` (per-CPU: no atomics on the hot
// path) and handed on: to the local stack when the new destination is on
// this host, else redirected to the egress interface user space found the
// destination's route on. Anything else (a miss, RTCP, a non-RTP datagram,
// an RTP header extension, an SSRC the mapping does not know, IP options,
// fragments, IPv6) goes on unchanged to the user-space relay, which owns
// latching, RTCP rewriting and the first packets.
//
// Built by media-relay/build.rs with `clang -target bpf`.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// Keep in sync with media-relay/src/fastpath/sys.rs.
struct flow_key {
	__u32 local_ip;   // network order: the relay socket the packet is sent to
	__u32 peer_ip;    // network order: the latched peer it comes from
	__u16 local_port; // network order
	__u16 peer_port;  // network order
};

#define ROUTE_REWRITE 1 // apply the continuity mapping to in_ssrc packets

struct route {
	__u32 out_src_ip;   // network order: the other side's relay socket
	__u32 out_dst_ip;   // network order: the other side's peer
	__u16 out_src_port; // network order
	__u16 out_dst_port; // network order
	__u32 flags;        // ROUTE_*
	__u32 in_ssrc;      // host order
	__u32 out_ssrc;     // host order
	__u32 ts_delta;     // host order, added wrapping
	__u16 seq_delta;    // host order, added wrapping
	__u16 pad;
	__u32 out_ifindex;  // 0: the destination is on this host (up the stack)
};

struct stream_counters {
	__u64 packets;
	__u64 bytes;    // UDP payload, as user space counts
	__u64 last_ns;  // bpf_ktime_get_ns() of the newest packet sent
	__u32 last_ssrc; // as sent (after the mapping)
	__u32 last_ts;
	__u16 last_seq;
	__u16 pad;
	__u32 pad2;
};

// Sized by the loader (max_entries is rewritten before load). Not
// preallocated: a preallocated hash reuses a deleted element's memory at
// once, so a program still holding the pointer from its lookup could read
// (route) or count into (counters) the next stream's entry; without
// preallocation an element is freed after an RCU grace period.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct route);
} routes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct stream_counters);
} counters SEC(".maps");

#define IP_OFF ETH_HLEN
#define UDP_OFF (IP_OFF + sizeof(struct iphdr))
#define RTP_OFF (UDP_OFF + sizeof(struct udphdr))
#define RTP_FIXED 12
#define IP_CSUM_OFF (IP_OFF + offsetof(struct iphdr, check))
#define UDP_CSUM_OFF (UDP_OFF + offsetof(struct udphdr, check))

#define PASS TC_ACT_UNSPEC // next program / the stack: never hides a packet from another relay

static __always_inline int rewrite32(struct __sk_buff *skb, __u32 off, __u32 from, __u32 to,
				     int pseudo)
{
	if (from == to)
		return 0;
	if (bpf_l4_csum_replace(skb, UDP_CSUM_OFF, from, to,
				BPF_F_MARK_MANGLED_0 | (pseudo ? BPF_F_PSEUDO_HDR : 0) | sizeof(to)))
		return -1;
	return bpf_skb_store_bytes(skb, off, &to, sizeof(to), 0);
}

static __always_inline int rewrite16(struct __sk_buff *skb, __u32 off, __u16 from, __u16 to)
{
	if (from == to)
		return 0;
	if (bpf_l4_csum_replace(skb, UDP_CSUM_OFF, from, to, BPF_F_MARK_MANGLED_0 | sizeof(to)))
		return -1;
	return bpf_skb_store_bytes(skb, off, &to, sizeof(to), 0);
}

SEC("classifier")
int tandem_rtp_fastpath(struct __sk_buff *skb)
{
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return PASS;
	// Only packets addressed to this host (not another host's frames seen
	// in promiscuous mode, broadcast or multicast), and no GRO super-packet:
	// its one header stands for several datagrams, which the stack splits.
	if (skb->pkt_type != PACKET_HOST || skb->gso_segs > 1)
		return PASS;
	if (skb->data + RTP_OFF + RTP_FIXED > skb->data_end &&
	    bpf_skb_pull_data(skb, RTP_OFF + RTP_FIXED))
		return PASS;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (data + RTP_OFF + RTP_FIXED > data_end)
		return PASS;

	struct ethhdr *eth = data;
	struct iphdr *ip = data + IP_OFF;
	struct udphdr *udp = data + UDP_OFF;
	__u8 *rtp = data + RTP_OFF;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return PASS;
	if (ip->frag_off & bpf_htons(0x3fff)) // MF or an offset: a fragment
		return PASS;

	struct flow_key key = {
		.local_ip = ip->daddr,
		.peer_ip = ip->saddr,
		.local_port = udp->dest,
		.peer_port = udp->source,
	};
	struct route *r = bpf_map_lookup_elem(&routes, &key);
	if (!r)
		return PASS;
	struct route rt = *r; // the entry may change under us: one consistent copy

	// RTP only (RFC 3550 version 2; RFC 5761 §4: a second byte in 192..=223
	// is multiplexed RTCP, which user space rewrites and counts).
	__u8 b0 = rtp[0], b1 = rtp[1];
	if ((b0 >> 6) != 2 || (b1 >= 192 && b1 <= 223))
		return PASS;
	__u32 udp_len = bpf_ntohs(udp->len);
	__u32 tot_len = bpf_ntohs(ip->tot_len);
	// The IP length must fit in what arrived (skb->len counts the Ethernet
	// header here): a longer claim would be forwarded with bytes that are
	// not the datagram's. The stack drops it.
	if (tot_len + IP_OFF > skb->len)
		return PASS;
	// A UDP length that is not the IP payload's goes to the stack, which
	// drops it: never forwarded, nor counted.
	if (udp_len != tot_len - sizeof(struct iphdr) ||
	    udp_len < sizeof(struct udphdr) + RTP_FIXED + 4 * (b0 & 0x0f) ||
	    (b0 & 0x10)) // an extension's length is checked in user space
		return PASS;
	__u32 payload = udp_len - sizeof(struct udphdr);

	__u32 ssrc_be = *(__u32 *)(rtp + 8);
	__u32 ts_be = *(__u32 *)(rtp + 4);
	__u16 seq_be = *(__u16 *)(rtp + 2);
	__u32 ssrc = bpf_ntohl(ssrc_be);
	__u32 new_ssrc = ssrc, new_ts = bpf_ntohl(ts_be);
	__u16 new_seq = bpf_ntohs(seq_be);
	if (rt.flags & ROUTE_REWRITE) {
		// Another SSRC from the same peer starts a new mapping: user space
		// computes it (continuity.rs) and installs it.
		if (ssrc != rt.in_ssrc)
			return PASS;
		new_ssrc = rt.out_ssrc;
		new_seq = (__u16)(new_seq + rt.seq_delta);
		new_ts = new_ts + rt.ts_delta;
	}
	__u32 saddr = ip->saddr, daddr = ip->daddr;
	__u16 sport = udp->source, dport = udp->dest;

	// Addresses: IP header checksum and the UDP pseudo-header.
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, saddr, rt.out_src_ip, sizeof(__u32)) ||
	    bpf_l3_csum_replace(skb, IP_CSUM_OFF, daddr, rt.out_dst_ip, sizeof(__u32)))
		return TC_ACT_SHOT;
	if (rewrite32(skb, IP_OFF + offsetof(struct iphdr, saddr), saddr, rt.out_src_ip, 1) ||
	    rewrite32(skb, IP_OFF + offsetof(struct iphdr, daddr), daddr, rt.out_dst_ip, 1) ||
	    rewrite16(skb, UDP_OFF + offsetof(struct udphdr, source), sport, rt.out_src_port) ||
	    rewrite16(skb, UDP_OFF + offsetof(struct udphdr, dest), dport, rt.out_dst_port) ||
	    rewrite32(skb, RTP_OFF + 8, ssrc_be, bpf_htonl(new_ssrc), 0) ||
	    rewrite32(skb, RTP_OFF + 4, ts_be, bpf_htonl(new_ts), 0) ||
	    rewrite16(skb, RTP_OFF + 2, seq_be, bpf_htons(new_seq)))
		return TC_ACT_SHOT; // half rewritten: must not reach anyone

	struct stream_counters *c = bpf_map_lookup_elem(&counters, &key);
	if (c) {
		c->packets += 1;
		c->bytes += payload;
		c->last_ns = bpf_ktime_get_ns();
		c->last_ssrc = new_ssrc;
		c->last_ts = new_ts;
		c->last_seq = new_seq;
	}

	// Where to: a destination on this host goes up the stack (on `lo`
	// that is the peer's socket); a remote one leaves by the interface user
	// space found its route on, the next hop and its MAC resolved by the
	// kernel. (Not bpf_fib_lookup: it refuses unless the interface
	// forwards, which a relay host need not.)
	if (rt.out_ifindex)
		return bpf_redirect_neigh(rt.out_ifindex, NULL, 0, 0);
	return PASS;
}

// Dual-licensed: the kernel is told the GPL side (its list of licenses
// knows no Apache).
char LICENSE[] SEC("license") = "GPL";
