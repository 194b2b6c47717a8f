#!/usr/bin/env python3
"""Records real clients' request frames as a fuzz seed corpus.

Usage: capture-corpus.py LISTEN_PORT BROKER_HOST:PORT OUT_DIR [SECONDS]
A loopback TCP proxy: start the broker with --advertise 127.0.0.1:LISTEN_PORT so clients keep
using the proxy after bootstrap; every client->broker frame (size prefix included) is written to
OUT_DIR/<sha1>. Stops by itself after SECONDS (default 120).
"""
import hashlib, os, socket, sys, threading, time

def pump(src, dst, out_dir, record):
    buf = b""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
            if record:
                buf += data
                while len(buf) >= 4:
                    size = int.from_bytes(buf[:4], "big", signed=True)
                    if size < 0 or len(buf) < 4 + size:
                        break
                    frame, buf = buf[:4 + size], buf[4 + size:]
                    if size <= 256 * 1024:
                        name = hashlib.sha1(frame).hexdigest()
                        with open(os.path.join(out_dir, name), "wb") as f:
                            f.write(frame)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

def main():
    port, broker, out_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 120.0
    host, bport = broker.rsplit(":", 1)
    os.makedirs(out_dir, exist_ok=True)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(64)
    ls.settimeout(0.5)
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            c, _ = ls.accept()
        except socket.timeout:
            continue
        b = socket.create_connection((host, int(bport)))
        threading.Thread(target=pump, args=(c, b, out_dir, True), daemon=True).start()
        threading.Thread(target=pump, args=(b, c, out_dir, False), daemon=True).start()

if __name__ == "__main__":
    main()
