#!/usr/bin/env python3
"""The branch testbed's WAN delay (this kernel has no netem qdisc), also
testkit::branchlab's.

Usage: wan-delay.py DEVICE MS [LIMIT]. Attaches to the TUN device DEVICE
(made in the router's namespace, where policy routing sends every
forwarded packet), holds each packet MS milliseconds, then writes it back;
the router forwards it on by its main table. At most LIMIT packets
(default 20,000) wait; more are dropped, so a flood cannot grow it
without bound.

One delay for every packet makes arrival order the release order, so the
schedule is a FIFO, and one thread does everything without locks: read
what is waiting (a bounded batch, so a flood cannot starve the writes),
write what is due, sleep until the next one is due or a packet arrives.
(A heap and a second thread behind a condition variable cost a lock and a
thread switch per packet: the device's queue overflowed from 5,000
packets/s on.)
"""
import collections, fcntl, math, os, select, struct, sys, time
name, delay = sys.argv[1], float(sys.argv[2]) / 1000.0
limit = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
# TUNSETIFF, IFF_TUN | IFF_NO_PI: bare IP packets.
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", name.encode(), 0x0001 | 0x1000))
queue = collections.deque()
poller = select.poll()
poller.register(fd, select.POLLIN)
while True:
    wait = None if not queue else max(0, math.ceil((queue[0][0] - time.monotonic()) * 1000))
    poller.poll(wait)
    now = time.monotonic()
    for _ in range(1024):
        try:
            packet = os.read(fd, 65536)
        except BlockingIOError:
            break
        if len(queue) < limit:
            queue.append((now + delay, packet))
    while queue and queue[0][0] <= now:
        try:
            os.write(fd, queue.popleft()[1])
        except OSError:
            pass  # one packet the kernel refused; the others go on
