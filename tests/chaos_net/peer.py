#!/usr/bin/env python3
"""peer.py: the far end of tests/chaos_net's probes, run inside a network namespace.

  peer.py serve IP PORT LOG   TCP: accept, send "ok\\n", close; UDP: append each datagram
                              (one line) to LOG. Runs until killed.
  peer.py send IP PORT N TAG  sends N UDP datagrams "TAG <i>" to IP:PORT, 1 ms apart.
"""
import socket
import sys
import threading
import time


def serve(ip, port, log):
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind((ip, port))
    t.listen(64)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((ip, port))

    def udp():
        with open(log, "a", buffering=1) as f:
            while True:
                data, _ = u.recvfrom(2048)
                f.write(data.decode(errors="replace") + "\n")

    threading.Thread(target=udp, daemon=True).start()
    while True:
        c, _ = t.accept()
        try:
            c.sendall(b"ok\n")
        finally:
            c.close()


def send(ip, port, n, tag):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(n):
        try:
            u.sendto(f"{tag} {i}".encode(), (ip, port))
        except PermissionError:  # an output DROP rule in this namespace: not sent
            pass
        time.sleep(0.001)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
