"""One scheduler tick of buttervolume 3.13 per argument: its own
cli.runjobs(), with cli.snapshot, send and purge replaced by fakes that
only record when they start (and sleep the given seconds to simulate
work). Prints, per tick, its start and end time and each job's start time
(epoch seconds); the bench computes the figures
(bench/src/scheduler/reference.rs). Arguments: schedule.csv, then one
"snapshot,send,purge" seconds triple per tick."""
import sys
import time

import buttervolume.cli as cli

starts = []
work = [0.0, 0.0, 0.0]


def pause(seconds):
    if seconds:
        time.sleep(seconds)


def snapshot(args, test=False):
    starts.append(time.time())
    pause(work[0])
    return f"{args.name[0]}@now"


def send(args, test=False):
    pause(work[1])
    return True


def purge(args, test=False):
    starts.append(time.time())
    pause(work[2])
    return True


cli.snapshot, cli.send, cli.purge = snapshot, send, purge
for tick in sys.argv[2:]:
    work[:] = [float(x) for x in tick.split(",")]
    starts.clear()
    t0 = time.time()
    cli.runjobs(config=sys.argv[1])
    print(t0, time.time(), *starts, flush=True)
