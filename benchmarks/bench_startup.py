"""Whole-process start-up time of ``kmi --version`` and ``kmi --help``: median of several runs.

    python benchmarks/bench_startup.py --runs 5
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

KMI = Path(sys.executable).parent / "kmi"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    for flag in ("--version", "--help"):
        subprocess.run([str(KMI), flag], capture_output=True, check=True)  # warm the file cache
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run([str(KMI), flag], capture_output=True, check=True)
            times.append(time.perf_counter() - started)
        print(f"kmi {flag}: median {statistics.median(times):.3f} s "
              f"(min {min(times):.3f}, max {max(times):.3f}, {args.runs} runs)")


if __name__ == "__main__":
    main()
