#!/usr/bin/env python3
"""The seed's hello server, written against a chan scheme mounted with schememount.

    schememount chan /mnt/chan
    python3 examples/hello_server.py /mnt/chan      # serves forever (or give a count)
    cat /mnt/chan/hello                             # prints "Hello World!"

Creating /mnt/chan/hello (O_CREAT) makes a chan listener. Accepting is dup(listener, "listen"),
which FUSE has no system call for: the dup ioctl (_IOWR('S', 1, char[256])) sends the buffer
and answers a single-use token, and opening <mount>/.dup/<token> gives the accepted stream.
"""
import fcntl
import os
import sys

DUP_IOCTL = 0xC1005301  # _IOWR('S', 1, char[256])


def dup(fd, buffer):
    """dup(fd, buffer) on the scheme handle behind fd; returns the token to open."""
    buf = bytearray(buffer.encode().ljust(256, b"\0"))
    fcntl.ioctl(fd, DUP_IOCTL, buf)  # blocks until a client connects, for "listen"
    return buf.split(b"\0", 1)[0].decode()


def main():
    mount = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else None
    listener = os.open(os.path.join(mount, "hello"), os.O_WRONLY | os.O_CREAT)
    served = 0
    while count is None or served < count:
        token = dup(listener, "listen")
        stream = os.open(os.path.join(mount, ".dup", token), os.O_WRONLY)
        os.write(stream, b"Hello World!\n")
        os.close(stream)  # the client reads end of file
        served += 1
    os.close(listener)


if __name__ == "__main__":
    main()
