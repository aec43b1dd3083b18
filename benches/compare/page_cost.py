"""What pages cost on this machine: the bound of the `payload` figures (PERFORMANCE.md,
item 5). Medians of 7 runs, in ms, for 64 MiB:

- memcpy into memory already touched;
- a fresh anonymous mapping filled by one copy (first touch of every page);
- a fresh memfd mapping filled by one copy, plain, with MAP_POPULATE, with
  posix_fallocate first, and with both;
- an existing memfd mapped again and one byte of every page read, plain and with
  MAP_POPULATE (what a worker pays to see a SharedSlice it was sent).

    python3 benches/compare/page_cost.py
"""

import mmap
import os
import statistics
import time

N = 64 << 20
SRC = bytearray(os.urandom(1 << 20)) * 64


def median_ms(f, runs=7):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def fresh_anonymous():
    m = mmap.mmap(-1, N)
    m[:] = SRC
    m.close()


def memfd(populate=False, fallocate=False):
    fd = os.memfd_create("page-cost", os.MFD_CLOEXEC)
    os.ftruncate(fd, N)
    if fallocate:
        os.posix_fallocate(fd, 0, N)
    flags = mmap.MAP_SHARED | (mmap.MAP_POPULATE if populate else 0)
    m = mmap.mmap(fd, N, flags=flags)
    m[:] = SRC
    return fd, m


def fresh_memfd(populate, fallocate):
    fd, m = memfd(populate, fallocate)
    m.close()
    os.close(fd)


def main():
    warm = bytearray(N)
    print(f"memcpy into warm memory      {median_ms(lambda: warm.__setitem__(slice(None), SRC)):7.2f} ms")
    print(f"fresh anonymous, one copy    {median_ms(fresh_anonymous):7.2f} ms")
    for populate, fallocate, label in [
        (False, False, "plain"),
        (True, False, "MAP_POPULATE"),
        (False, True, "posix_fallocate"),
        (True, True, "both"),
    ]:
        ms = median_ms(lambda: fresh_memfd(populate, fallocate))
        print(f"fresh memfd, one copy, {label:<16} {ms:7.2f} ms")
    fd, m = memfd()

    def remap(populate):
        flags = mmap.MAP_SHARED | (mmap.MAP_POPULATE if populate else 0)
        again = mmap.mmap(fd, N, flags=flags)
        view = memoryview(again)
        sum(view[::4096])
        view.release()
        again.close()

    print(f"existing memfd mapped, touched  {median_ms(lambda: remap(False)):7.2f} ms")
    print(f"the same with MAP_POPULATE      {median_ms(lambda: remap(True)):7.2f} ms")
    m.close()
    os.close(fd)


if __name__ == "__main__":
    main()
