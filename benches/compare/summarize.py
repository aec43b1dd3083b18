"""Medians, ratios and goal verdicts from the lines run.sh collected.

Input lines: `<workload>.<peer>.<metric> <value>`, one per measurement and round.
Every ratio is taken between medians of the same run.
"""

import statistics
import sys
from collections import defaultdict


def main():
    samples = defaultdict(list)
    with open(sys.argv[1]) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                samples[parts[0]].append(float(parts[1]))
    med = {key: statistics.median(values) for key, values in samples.items()}

    print(f"{'measurement':<42} {'median':>14} {'samples':>7}")
    for key in sorted(med):
        print(f"{key:<42} {med[key]:>14.4g} {len(samples[key]):>7}")
    print()

    def get(key):
        return med.get(key)

    goals = []

    def goal(name, measured, threshold, higher_is_better=True):
        if measured is None:
            goals.append(f"goal {name} missing {threshold:.4g} FAIL")
            return
        ok = measured >= threshold if higher_is_better else measured <= threshold
        goals.append(f"goal {name} {measured:.4g} {threshold:.4g} {'PASS' if ok else 'FAIL'}")

    def ratio(a, b):
        a, b = get(a), get(b)
        return a / b if a is not None and b else None

    # 1. Tiny tasks through map: x Python's Pool.map (default chunksize) and x procspawn.
    goal("tiny_map_vs_python", ratio("tiny.procpool.items_per_s", "tiny.python.items_per_s"), 3)
    goal("tiny_map_vs_procspawn", ratio("tiny.procpool.items_per_s", "tiny.procspawn.tasks_per_s"), 100)
    # 2. Single-task round trip against the raw pipe round trip (lower is better).
    goal("round_trip_vs_pipe", ratio("rtt.procpool.us", "rtt.raw.us"), 2, higher_is_better=False)
    # 3. Individually submitted tasks per second.
    goal("submit_tasks_per_s", get("submit.procpool.tasks_per_s"), 200_000)
    # 3b. The same tasks submitted and awaited from one async task, against the above.
    goal("async_vs_submit", ratio("async.procpool.tasks_per_s", "submit.procpool.tasks_per_s"), 0.9)
    # 4. CPU-bound speedup against rayon's on the same kernel.
    serial = get("cpu.rayon.serial_s")
    if serial and get("cpu.procpool.s") and get("cpu.rayon.s"):
        pool_speedup = serial / get("cpu.procpool.s")
        rayon_speedup = serial / get("cpu.rayon.s")
        print(f"cpu speedup: procpool {pool_speedup:.3f}x, rayon {rayon_speedup:.3f}x (serial {serial:.3f} s)")
        goal("cpu_speedup_vs_rayon", pool_speedup / rayon_speedup, 0.97)
    else:
        goal("cpu_speedup_vs_rayon", None, 0.97)
    # 5. Large payloads: bytes moved per second against memcpy. The goal's figure is a
    # SharedSlice already in shared memory, scaled in place; the other ways are shown.
    for key, label in [
        ("payload.procpool.gb_per_s_copy_in", "payload, copy into shared memory timed"),
        ("payload.procpool.gb_per_s_new_out", "payload, new output array"),
        ("payload_serde.procpool.gb_per_s", "payload, Vec<f64> through serde"),
    ]:
        r = ratio(key, "memcpy.raw.gb_per_s")
        if r is not None:
            print(f"{label}: {r:.3f}x memcpy")
    goal("payload_vs_memcpy", ratio("payload.procpool.gb_per_s", "memcpy.raw.gb_per_s"), 0.25)
    # 6. Pool start against procspawn's (lower is better).
    goal("start_reexec_vs_procspawn", ratio("start.procpool.ms", "start.procspawn.ms"), 0.8, higher_is_better=False)
    goal("start_fork_vs_procspawn", ratio("start.procpool-fork.ms", "start.procspawn.ms"), 0.3, higher_is_better=False)
    # 7. A fresh process per task, fork-server mode.
    goal("fresh_process_tasks_per_s", get("fresh.procpool-fork.tasks_per_s"), 2_500)
    goal("fresh_process_vs_python", ratio("fresh.procpool-fork.tasks_per_s", "fresh.python.tasks_per_s"), 5)
    # 8. Crash recovery: throughput with 1% segfaults against none.
    goal("crash_recovery", ratio("crash.procpool.faulty_tasks_per_s", "crash.procpool.clean_tasks_per_s"), 0.9)
    # 9. Memory: peak RSS over idle while map runs over 10 M inputs (MiB, lower is better).
    goal("map_memory_mib", get("memory.procpool.peak_over_idle_mib"), 64, higher_is_better=False)
    # 10. Cluster mode (issue 11), one agent of two workers on this machine. Tiny tasks
    # through the server against Celery's on the same kind of server.
    goal("cluster_tiny_vs_celery",
         ratio("cluster.procpool.tiny_tasks_per_s", "cluster.celery.tiny_tasks_per_s"), 30)
    # Not a goal: how soon an idle agent serves a new run's first tasks (the cluster
    # rates are timed after them).
    first = get("cluster.procpool.new_run_first_outcome_ms")
    if first is not None:
        print(f"cluster, a new run's first outcome: {first:.4g} ms")
    # 1 ms tasks through the agent against the local pool of as many workers; the sleep
    # variant (no CPU taken from the workers) is shown too.
    r = ratio("cluster.procpool.ms_sleep_tasks_per_s", "cluster.local.ms_sleep_tasks_per_s")
    if r is not None:
        print(f"cluster, 1 ms sleep tasks: {r:.3f}x the local pool")
    goal("cluster_ms_vs_local",
         ratio("cluster.procpool.ms_tasks_per_s", "cluster.local.ms_tasks_per_s"), 0.9)
    # From the SIGKILL of the agent holding a task to its outcome from another agent,
    # at most the lease plus one second (lower is better).
    lease = get("cluster.procpool.recovery_lease_s") or 1.0
    goal("cluster_recovery_s", get("cluster.procpool.recovery_s"), lease + 1,
         higher_is_better=False)

    print("\n".join(goals))


if __name__ == "__main__":
    main()
