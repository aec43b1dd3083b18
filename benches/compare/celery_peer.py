"""Celery on the cluster rows' workload, one measurement per run.

Usage: .venv/bin/python celery_peer.py tiny [size]; prints
`cluster.celery.tiny_tasks_per_s <value>` like the Rust `compare cluster tiny` row.
Needs the venv run.sh makes (celery-requirements.txt: celery with its redis transport).

Each run starts its own redis-server on a unix socket in a fresh directory (broker and
result backend both there), a Celery worker with `--concurrency 2 --pool prefork` (this
machine's two cores, as the procpool agent's two workers), times `n` tasks submitted as
one group and collected with the group's `get`, then stops the worker and the server by
their pids. Celery's settings are its defaults (prefetch multiplier 4, early acks,
JSON); the worker is started without gossip, mingle and heartbeats, which only matter
between several workers and slow its start-up.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from celery import Celery, group

# The worker imports this module too (celery -A celery_peer): the broker's socket comes
# from the environment the measurement sets for it.
SOCKET = os.environ.get("PP_CELERY_SOCKET", "/nonexistent/redis.sock")
app = Celery(
    "celery_peer",
    broker=f"redis+socket://{SOCKET}",
    backend=f"redis+socket://{SOCKET}",
)
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task
def square(x):
    return x * x


def report(metric, value):
    print(f"cluster.celery.{metric} {value}")


def ping(path):
    """Whether the redis-server on the unix socket `path` answers PING."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            s.connect(path)
            s.sendall(b"PING\r\n")
            return s.recv(7) == b"+PONG\r\n"
    except OSError:
        return False


def stop(process, grace):
    """SIGTERM to the process's group (it leads one), `grace` seconds, then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def tiny(n):
    directory = tempfile.mkdtemp(prefix="ppc-celery-")
    sock = os.path.join(directory, "redis.sock")
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
         "--dir", directory, "--save", "", "--appendonly", "no",
         "--logfile", os.path.join(directory, "redis.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
    )
    worker = None
    try:
        deadline = time.monotonic() + 10
        while not ping(sock):
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("redis-server did not start")
            time.sleep(0.005)
        os.environ["PP_CELERY_SOCKET"] = sock
        app.conf.broker_url = f"redis+socket://{sock}"
        app.conf.result_backend = f"redis+socket://{sock}"
        here = os.path.dirname(os.path.abspath(__file__))
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_peer", "worker",
             "--concurrency", "2", "--pool", "prefork", "--loglevel", "WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=here, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        # Warm: the worker is up and both its processes have answered.
        group(square.s(i) for i in range(4)).apply_async().get(timeout=60)
        start = time.perf_counter()
        results = group(square.s(i) for i in range(n)).apply_async()
        values = results.get(timeout=600)
        elapsed = time.perf_counter() - start
        assert sum(values) == sum(i * i for i in range(n))
        report("tiny_tasks_per_s", n / elapsed)
    finally:
        if worker is not None:
            stop(worker, 10)
        stop(server, 2)
        shutil.rmtree(directory, ignore_errors=True)


def main():
    # run.sh's timeout sends SIGTERM: leave through `finally`, which stops the worker
    # and the server (each leads a session of its own, so nothing else would).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    workload = sys.argv[1] if len(sys.argv) > 1 else ""
    size = int(sys.argv[2]) if len(sys.argv) > 2 else None
    if workload == "tiny":
        tiny(size or 2_000)
    else:
        sys.exit(f"unknown workload {workload}")


if __name__ == "__main__":
    main()
