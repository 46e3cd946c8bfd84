// SPDX-License-Identifier: (MIT OR Apache-2.0)
//
// Steers each SIP datagram to the shard that owns its call (`sip.shards`):
// an SK_REUSEPORT program on the group of UDP sockets the shards bind on
// the SIP port. It finds the Call-ID header (`Call-ID:` or the compact
// `i:`, any case), hashes its value with a keyed FNV-1a (the key is drawn
// at start and never leaves the process, so a stranger cannot pick Call-IDs
// that pile onto one shard) and selects that shard's socket. What it
// cannot parse goes to shard 0, which answers or drops it as one shard
// would. proxy/src/shard/steer.rs holds the same hash in Rust (the shard
// makes leg-B Call-IDs that hash back to itself); a test runs both.
//
// Built by proxy/build.rs: clang -O2 -g -target bpf -c steer.c.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

// Bytes of a datagram searched for the Call-ID (the scratch buffer).
#define SCAN 2048
// Longest Call-ID value hashed; the rest of a longer one is ignored (the
// Rust side hashes the same prefix).
#define MAX_VALUE 256
#define MAX_SHARDS 64
#define UDP_HEADER 8

// [0] the hash key, [1] the number of shards (plain u64s: the loader
// writes them without a struct layout to agree on).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} steer_config SEC(".maps");

// Shard i's UDP socket at index i.
struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, MAX_SHARDS);
	__type(key, __u32);
	// The socket's descriptor when set (aya writes a 32-bit fd).
	__type(value, __u32);
} udp_sockets SEC(".maps");

// Shard 0's TCP listener at index 0: every SIP TCP connection is served
// by shard 0 (a connection carries many calls; it cannot be split).
struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} tcp_sockets SEC(".maps");

// The datagram, copied: stack space is 512 bytes.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8[SCAN]);
} scratch SEC(".maps");

// [0] datagrams steered by their Call-ID, [1] sent to shard 0 unparsed.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} steer_counts SEC(".maps");

#define AT(i) (buf[(i) & (SCAN - 1)])

static __always_inline int is_blank(__u8 c)
{
	return c == ' ' || c == '\t';
}

static __always_inline void count(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&steer_counts, &which);
	if (n)
		*n += 1;
}

static __always_inline int select_shard(struct sk_reuseport_md *ctx, __u32 shard)
{
	if (bpf_sk_select_reuseport(ctx, &udp_sockets, &shard, 0) == 0)
		return SK_PASS;
	// Shard 0 as the fallback; failing that, the kernel's own choice.
	shard = 0;
	bpf_sk_select_reuseport(ctx, &udp_sockets, &shard, 0);
	return SK_PASS;
}

// Where the value of the header whose name starts at `i` begins, when the
// header is Call-ID (`Call-ID` or `i`, any case, blanks before the colon);
// 0 otherwise.
static __always_inline __u32 call_id_value(const __u8 *buf, __u32 i, __u32 n)
{
	const char name[] = "call-id";
	__u32 j;
	if (i + 2 >= n)
		return 0;
	if ((AT(i) | 0x20) == 'i') {
		j = i + 1;
	} else {
#pragma unroll
		for (int k = 0; k < 7; k++) {
			__u8 c = AT(i + k);
			// Only letters are folded: '-' | 0x20 is '-' already.
			if (c >= 'A' && c <= 'Z')
				c |= 0x20;
			if (i + k >= n || c != (__u8)name[k])
				return 0;
		}
		j = i + 7;
	}
#pragma unroll
	for (int k = 0; k < 8; k++) {
		if (j < n && is_blank(AT(j)))
			j++;
	}
	if (j >= n || AT(j) != ':')
		return 0;
	j++;
#pragma unroll
	for (int k = 0; k < 8; k++) {
		if (j < n && is_blank(AT(j)))
			j++;
	}
	return j;
}

struct scan {
	__u8 *buf;
	__u32 n;
	// Where the Call-ID's value begins; 0: not found (yet).
	__u32 value;
};

// One byte of the scan: a line start that begins the Call-ID header ends it.
static long find_call_id(__u32 i, void *data)
{
	struct scan *s = data;
	__u8 *buf = s->buf;
	if (i + 1 >= s->n)
		return 1;
	if (AT(i) != '\n')
		return 0;
	s->value = call_id_value(buf, i + 1, s->n);
	return s->value ? 1 : 0;
}

SEC("sk_reuseport")
int steer_udp(struct sk_reuseport_md *ctx)
{
	__u32 zero = 0, one = 1;
	__u64 *key = bpf_map_lookup_elem(&steer_config, &zero);
	__u64 *shards = bpf_map_lookup_elem(&steer_config, &one);
	__u8 *buf = bpf_map_lookup_elem(&scratch, &zero);
	if (!key || !shards || !buf || *shards == 0)
		return SK_PASS;
	__u32 n = ctx->len;
	if (n <= UDP_HEADER + 16)
		goto unparsed;
	n -= UDP_HEADER;
	if (n > SCAN)
		n = SCAN;
	if (bpf_skb_load_bytes(ctx, UDP_HEADER, buf, n & (SCAN - 1) ? n & (SCAN - 1) : SCAN) < 0)
		goto unparsed;
	// bpf_loop: the verifier checks the callback once instead of walking
	// every byte of the buffer (too many branches for it otherwise).
	struct scan scan = { .buf = buf, .n = n, .value = 0 };
	bpf_loop(SCAN - 1, find_call_id, &scan, 0);
	__u32 value = scan.value;
	if (!value || value >= n)
		goto unparsed;
	__u64 h = *key ^ 0xcbf29ce484222325ULL;
	__u32 len = 0;
	for (__u32 k = 0; k < MAX_VALUE; k++) {
		__u32 at = value + k;
		if (at >= n)
			break;
		__u8 c = AT(at);
		if (c == '\r' || c == '\n' || is_blank(c))
			break;
		h ^= c;
		h *= 0x100000001b3ULL;
		len++;
	}
	if (len == 0)
		goto unparsed;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	count(0);
	return select_shard(ctx, (__u32)(h % *shards));
unparsed:
	count(1);
	return select_shard(ctx, 0);
}

SEC("sk_reuseport")
int steer_tcp(struct sk_reuseport_md *ctx)
{
	__u32 zero = 0;
	bpf_sk_select_reuseport(ctx, &tcp_sockets, &zero, 0);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
