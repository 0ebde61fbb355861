#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The far end of the test VM's pci-serial-4x card, run on the host (L0).

``serial-relay.py DIR PORTS`` listens on the Unix sockets DIR/pserial-N.sock
(N = 0 .. PORTS-1) that QEMU's chardevs connect to, one per port of the
card. Every byte received on port N is appended to DIR/pserial-N.rx and sent
back on port N XOR-ed with the port's key, 0x50 + N. A device that looped
its bytes back internally, or a byte that crossed to another port, therefore
reads back wrong: only a byte that really left on port N and came back from
here carries port N's key.

The relay listens before QEMU starts and QEMU is the client (its chardevs
have no server=on): QEMU connects while it starts, before the guest runs, and
refuses to start when a socket is missing, so no byte can be sent before the
relay hears it. A port whose connection closes accepts a new one. The relay
writes DIR/serial-relay.ready once every socket listens, and stops on
SIGTERM or SIGINT. Nothing is dropped: what a port cannot send yet waits in
that port's queue while the other ports go on (QEMU reads a socket only when
the guest's receive FIFO has room).
"""

import os
import selectors
import signal
import socket
import sys


def key(port):
    """The XOR key of port PORT."""
    return 0x50 + port


class Port:
    """One port of the card: its listening socket, its connection, its queue."""

    def __init__(self, sel, directory, index):
        self.sel = sel
        self.index = index
        self.table = bytes(b ^ key(index) for b in range(256))
        path = os.path.join(directory, f"pserial-{index}.sock")
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.listener.setblocking(False)
        # The record of what arrived, new for every run of the relay.
        self.rx = open(os.path.join(directory, f"pserial-{index}.rx"), "wb", buffering=0)
        self.conn = None
        self.queue = bytearray()
        sel.register(self.listener, selectors.EVENT_READ, self.accept)

    def accept(self, _events):
        conn, _ = self.listener.accept()
        if self.conn is not None:
            # One peer at a time: a second one is turned away.
            conn.close()
            return
        conn.setblocking(False)
        self.conn = conn
        self.queue.clear()
        self.sel.register(conn, selectors.EVENT_READ, self.io)

    def drop(self):
        self.sel.unregister(self.conn)
        self.conn.close()
        self.conn = None
        self.queue.clear()

    def io(self, events):
        if events & selectors.EVENT_READ:
            try:
                data = self.conn.recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                self.drop()
                return
            if data:
                self.rx.write(data)
                self.queue += data.translate(self.table)
        if self.queue:
            try:
                sent = self.conn.send(self.queue)
                del self.queue[:sent]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self.drop()
                return
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.queue else 0)
        self.sel.modify(self.conn, want, self.io)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: serial-relay.py DIR PORTS")
    directory, count = sys.argv[1], int(sys.argv[2])
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    sel = selectors.DefaultSelector()
    ports = [Port(sel, directory, n) for n in range(count)]
    with open(os.path.join(directory, "serial-relay.ready"), "w", encoding="ascii") as f:
        f.write(f"{os.getpid()}\n")
    while not stop:
        for k, events in sel.select(timeout=0.5):
            k.data(events)
    for p in ports:
        p.rx.close()
        os.unlink(p.listener.getsockname())
    os.unlink(os.path.join(directory, "serial-relay.ready"))


if __name__ == "__main__":
    main()
