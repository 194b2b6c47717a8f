# What a SASL/PLAIN login storm costs other clients: one shard (--cores 1), four threads
# logging in with wrong passwords (a PBKDF2 each) to a user with only a SCRAM-SHA-512
# credential, while a probe sends ApiVersions on another connection for 10 s and reports its
# round trips. Usage: python3 benches/plain-login-stall.py SLUICE_BINARY [storm]
# (without `storm`: the probe alone). Listens on 127.0.0.1:19301-19302.
import os, socket, struct, subprocess, sys, tempfile, threading, time

binary = sys.argv[1]
d = tempfile.mkdtemp()
P1, P2 = 19301, 19302
broker = subprocess.Popen([binary, "--data-dir", d, "--cores", "1",
    "--listeners", f"PLAINTEXT://127.0.0.1:{P1},SASL_PLAINTEXT://127.0.0.1:{P2}",
    "--sasl-enabled-mechanisms", "PLAIN",
    "--add-scram", "SCRAM-SHA-512=[name=alice,password=secret]",
    "--connection-failed-authentication-delay-ms", "0",
    "--metrics-listen", "127.0.0.1:0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def frame(api, ver, corr, body, client=b"exp"):
    h = struct.pack(">hhih", api, ver, corr, len(client)) + client
    if api == 36 and ver >= 2 or api == 18 and ver >= 3:
        h += b"\x00"
    m = h + body
    return struct.pack(">i", len(m)) + m

def recv(s):
    n = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
    return s.recv(n, socket.MSG_WAITALL)

for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", P1)).close(); break
    except OSError:
        time.sleep(0.1)
time.sleep(1.0)
stop = False
logins = [0]
def storm(i):
    while not stop:
        try:
            s = socket.create_connection(("127.0.0.1", P2))
            mech = b"PLAIN"
            s.sendall(frame(17, 1, 1, struct.pack(">h", len(mech)) + mech)); recv(s)
            tok = b"\x00alice\x00wrong" + str(i).encode() + str(time.time()).encode()
            s.sendall(frame(36, 1, 2, struct.pack(">i", len(tok)) + tok)); recv(s)
            s.close(); logins[0] += 1
        except OSError:
            pass
storming = len(sys.argv) > 2
threads = [threading.Thread(target=storm, args=(i,)) for i in range(4 if storming else 0)]
for t in threads: t.start()
probe = socket.create_connection(("127.0.0.1", P1))
rtts = []
end = time.time() + 10
c = 0
while time.time() < end:
    c += 1
    t0 = time.perf_counter()
    probe.sendall(frame(18, 0, c, b"")); recv(probe)
    rtts.append(time.perf_counter() - t0)
    time.sleep(0.002)
stop = True
for t in threads: t.join()
broker.kill(); broker.wait()
import shutil; shutil.rmtree(d, ignore_errors=True)
rtts.sort()
q = lambda p: rtts[int(p * (len(rtts) - 1))] * 1000
print(f"logins {logins[0]} in 10 s; probe ApiVersions n={len(rtts)} p50 {q(0.5):.2f} ms p99 {q(0.99):.2f} ms max {rtts[-1]*1000:.2f} ms")
