#!/usr/bin/env bash
# The side-by-side comparison: builds procpool's workloads and the same workloads on
# procspawn and rayon (src/main.rs) and on Python's multiprocessing (peers.py), runs
# every measurement once per round, in interleaved rounds, and prints the medians, the
# ratios and one `goal <name> <measured> <threshold> PASS|FAIL` line per goal (those of
# issue 3, issue 10's async row, and issue 11's cluster rows).
#
# The cluster rows (`compare cluster ...`, src/cluster.rs) start a redis-server of their
# own on a unix socket and their agents as processes; their Celery peer (celery_peer.py)
# runs in a venv made here at the first run (.venv, celery-requirements.txt).
# PP_COMPARE_STATS=1 makes the cluster throughput rows print, on stderr, the server's
# commands and each process's CPU per task.
#
#   benches/compare/run.sh            # ROUNDS=5 by default
#   ROUNDS=3 benches/compare/run.sh   # quicker, noisier
#
# Each measurement is a process of its own, so one cannot warm or pollute another.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rounds=${ROUNDS:-5}

cargo build --release --quiet --manifest-path "$here/Cargo.toml"
bin="$here/target/release/procpool-compare"
venv="$here/.venv"
if [ ! -x "$venv/bin/celery" ]; then
    echo "making $venv for the Celery row" >&2
    python3 -m venv "$venv" && "$venv/bin/pip" install --quiet -r "$here/celery-requirements.txt" \
        || echo "  Celery not installed: its row will be missing" >&2
fi

# peer workload [size]; python rows run peers.py. Slow peers get fewer items and are
# compared by rate. procspawn gets 2,000: it opens descriptors per queued task and fails
# with "Too many open files" at 20,000 (ulimit -n 20000 here). Each peer's start-up
# takes milliseconds and swings with the VM's noise, so the four start rows run three
# times per round, interleaved: fifteen samples per peer in five rounds, for every peer
# alike. So do the CPU rows (a VM that loses a CPU for a moment slows whichever
# parallel run it meets) and the fresh-process rows (each task is a fork and an exit,
# which wait on the host's scheduler). The cluster rows come last, each against its peer
# next to it: Celery's tiny tasks on the same kind of server, and the local pool's on
# the same 1 ms tasks.
measurements=(
    "raw rtt"
    "raw memcpy"
    "procpool tiny"
    "python tiny"
    "python tiny1"
    "procspawn tiny 2000"
    "procpool rtt"
    "procpool submit"
    "procpool async"
    "procspawn submit 2000"
    "python submit"
    "procpool cpu"
    "rayon cpu"
    "procpool cpu"
    "rayon cpu"
    "procpool cpu"
    "rayon cpu"
    "procpool payload"
    "procpool payload_serde"
    "procpool start"
    "procpool-fork start"
    "procspawn start"
    "python start"
    "procpool start"
    "procpool-fork start"
    "procspawn start"
    "python start"
    "procpool start"
    "procpool-fork start"
    "procspawn start"
    "python start"
    "procpool-fork fresh"
    "python fresh"
    "procpool-fork fresh"
    "python fresh"
    "procpool-fork fresh"
    "python fresh"
    "procpool crash"
    "procpool memory"
    "cluster tiny"
    "celery tiny"
    "cluster ms"
    "cluster local_ms"
    "cluster ms_sleep"
    "cluster local_ms_sleep"
    "cluster recovery"
)

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for round in $(seq 1 "$rounds"); do
    echo "round $round of $rounds" >&2
    for m in "${measurements[@]}"; do
        read -r peer workload size <<<"$m"
        if [ "$peer" = python ]; then
            cmd=(python3 "$here/peers.py" "$workload" ${size:+"$size"})
        elif [ "$peer" = celery ]; then
            cmd=("$venv/bin/python" "$here/celery_peer.py" "$workload" ${size:+"$size"})
        else
            cmd=("$bin" "$peer" "$workload" ${size:+"$size"})
        fi
        if ! timeout 300 "${cmd[@]}" >>"$results" 2>/dev/null; then
            echo "  failed or timed out: $m" >&2
        fi
    done
done

python3 "$here/summarize.py" "$results"
