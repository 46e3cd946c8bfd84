#!/usr/bin/env python3
"""The branch testbed's WAN delay (this kernel has no netem qdisc).

Usage: wan-delay.py DEVICE MS. Attaches to the TUN device DEVICE (made by
branch.sh in the router's namespace, where policy routing sends every
forwarded packet), holds each packet MS milliseconds, then writes it back;
the router forwards it on by its main table. At most 10,000 packets wait;
more are dropped, so a flood cannot grow it without bound. The same
delayer as testkit::branchlab's.
"""
import fcntl
import heapq
import os
import struct
import sys
import threading
import time

name, delay = sys.argv[1], float(sys.argv[2]) / 1000.0
fd = os.open("/dev/net/tun", os.O_RDWR)
# TUNSETIFF, IFF_TUN | IFF_NO_PI: bare IP packets.
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", name.encode(), 0x0001 | 0x1000))
queue, seq, cv = [], 0, threading.Condition()


def release():
    while True:
        with cv:
            while not queue or queue[0][0] > time.monotonic():
                cv.wait(None if not queue else queue[0][0] - time.monotonic())
            _, _, packet = heapq.heappop(queue)
        os.write(fd, packet)


threading.Thread(target=release, daemon=True).start()
while True:
    packet = os.read(fd, 65536)
    with cv:
        if len(queue) < 10000:
            heapq.heappush(queue, (time.monotonic() + delay, seq, packet))
            seq += 1
            cv.notify()
