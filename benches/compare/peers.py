"""Python's multiprocessing on the comparison's workloads, one measurement per run.

Usage: python3 peers.py <workload> [size]; prints `<workload>.python.<metric> <value>`
lines like the Rust `compare` binary, so run.sh can put both in one table.
"""

import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def inc(x):
    return x + 1


def report(workload, metric, value):
    print(f"{workload}.python.{metric} {value}")


def main():
    workload = sys.argv[1]
    size = int(sys.argv[2]) if len(sys.argv) > 2 else None
    if workload == "tiny":
        # Pool.map with its default chunksize: the figure to beat by 3x.
        n = size or 1_000_000
        with mp.Pool(2) as pool:
            pool.map(inc, range(4))
            start = time.perf_counter()
            total = sum(pool.map(inc, range(n)))
            elapsed = time.perf_counter() - start
        assert total == n * (n + 1) // 2
        report(workload, "items_per_s", n / elapsed)
    elif workload == "tiny1":
        n = size or 50_000
        with mp.Pool(2) as pool:
            pool.map(inc, range(4))
            start = time.perf_counter()
            pool.map(inc, range(n), chunksize=1)
            elapsed = time.perf_counter() - start
        report(workload, "items_per_s", n / elapsed)
    elif workload == "submit":
        n = size or 20_000
        with ProcessPoolExecutor(2) as pool:
            pool.submit(inc, 0).result()
            start = time.perf_counter()
            futures = [pool.submit(inc, i) for i in range(n)]
            for f in futures:
                f.result()
            elapsed = time.perf_counter() - start
        report(workload, "tasks_per_s", n / elapsed)
    elif workload == "start":
        start = time.perf_counter()
        with mp.Pool(2) as pool:
            a = pool.apply_async(inc, (1,))
            b = pool.apply_async(inc, (2,))
            a.get()
            b.get()
            elapsed = time.perf_counter() - start
        report(workload, "ms", elapsed * 1e3)
    elif workload == "fresh":
        n = size or 500
        with mp.Pool(2, maxtasksperchild=1) as pool:
            start = time.perf_counter()
            pool.map(inc, range(n), chunksize=1)
            elapsed = time.perf_counter() - start
        report(workload, "tasks_per_s", n / elapsed)
    else:
        sys.exit(f"unknown workload {workload}")


if __name__ == "__main__":
    main()
