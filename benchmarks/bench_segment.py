"""Speed and memory of ``kmi segment`` on a large GeoTIFF, against the script people write today.

Generates (once, into /tmp) a synthetic 10,000 x 10,000 x 8-band uint16 GeoTIFF, tiled 256 x 256 and
uncompressed (1.6 GB), whose pixels belong to 16 planted classes: 250 x 250-pixel cells, each of one
class, each class a random mean spectrum plus Gaussian noise. Then runs, in turn and ``--repeats``
times each, under ``/usr/bin/time -v``:

- the whole ``kmi segment RASTER --k 16 --out DIR --force`` command (training, classifying every
  pixel, writing all outputs);
- ``benchmarks/segment_peer.py`` (rasterio + scikit-learn KMeans on 10,000 sampled pixels, numpy
  classification per block, compressed GeoTIFF out);
- the bound: a script that only reads every block of the raster and writes a compressed uint8
  GeoTIFF of the same size (``--bound``).

Prints each one's median wall time, CPU time (user + system), megapixels per second and peak
resident memory, how well each class map recovers the planted classes (Hungarian accuracy on
200,000 random pixels), and the ratios of ``kmi segment`` to the peer run after it, pair by pair.

    python benchmarks/bench_segment.py [--size 10000] [--repeats 3] [--path /tmp/kmi-bench-10000.tif]
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
K, BANDS, CELL, TILE = 16, 8, 250, 256
PEER = "peer (rasterio + scikit-learn)"

BOUND = """
import sys, rasterio
with rasterio.open(sys.argv[1]) as src:
    profile = src.profile
    profile.update(count=1, dtype="uint8", compress="deflate", nodata=None)
    with rasterio.open(sys.argv[2], "w", **profile) as dst:
        for _, window in src.block_windows(1):
            block = src.read(window=window)
            dst.write((block[0] >> 12).astype("uint8"), 1, window=window)
"""


def planted_classes(rows, cols, seed=0):
    """Class (0..K-1) of each pixel: one class per CELL x CELL cell, drawn at random."""
    grid = np.random.default_rng(seed).integers(0, K, (10**6 // CELL, 10**6 // CELL))
    return grid[rows // CELL, cols // CELL]


def make_raster(path, size, seed=0):
    import rasterio
    from affine import Affine

    rng = np.random.default_rng(seed)
    spectra = rng.uniform(2000, 20000, (K, BANDS))
    profile = {"driver": "GTiff", "height": size, "width": size, "count": BANDS, "dtype": "uint16",
               "crs": "EPSG:32633", "transform": Affine(10, 0, 300000, 0, -10, 5000000),
               "tiled": True, "blockxsize": TILE, "blockysize": TILE, "interleave": "pixel"}
    cols = np.arange(size)
    with rasterio.open(path, "w", **profile) as dst:
        for start in range(0, size, TILE):
            rows = np.arange(start, min(start + TILE, size))
            classes = planted_classes(rows[:, None], cols[None, :], seed)
            values = spectra[classes] + rng.normal(0, 1500, (len(rows), size, BANDS))
            block = np.clip(values, 1, 65535).astype(np.uint16)
            dst.write(np.moveaxis(block, -1, 0), window=((start, start + len(rows)), (0, size)))


def timed(command):
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of a command, as /usr/bin/time -v
    reports them."""
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{command} failed:\n{done.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", done.stderr)
    hours, minutes, seconds = (float(x) if x else 0.0 for x in wall.groups())
    cpu = sum(float(re.search(rf"{kind} time \(seconds\): ([\d.]+)", done.stderr).group(1))
              for kind in ("User", "System"))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return hours * 3600 + minutes * 60 + seconds, cpu, rss / 1024


def recovery(class_map_path, size, seed=0):
    import rasterio

    from kmeans_imagery.metrics import hungarian_accuracy

    rng = np.random.default_rng(1)
    rows, cols = rng.integers(0, size, 200_000), rng.integers(0, size, 200_000)
    with rasterio.open(class_map_path) as dataset:
        found = dataset.read(1)[rows, cols]
    return hungarian_accuracy(planted_classes(rows, cols, seed), found)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--path", help="Raster (made when missing; default /tmp/kmi-bench-SIZE.tif).")
    args = parser.parse_args()
    path = Path(args.path or f"/tmp/kmi-bench-{args.size}.tif")
    if not path.exists():
        print(f"generating {path} ...", flush=True)
        make_raster(path, args.size)
    megapixels = args.size**2 / 1e6
    kmi = Path(sys.executable).with_name("kmi")
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        tmp = Path(tmp)
        runs = {
            "kmi segment": ([str(kmi), "segment", str(path), "--k", str(K), "--out", str(tmp / "seg"),
                             "--force"], tmp / "seg" / "classes.tif"),
            PEER: ([sys.executable, str(BENCH / "segment_peer.py"), str(path), str(tmp / "peer.tif"), str(K)],
                   tmp / "peer.tif"),
            "bound (read + write only)": ([sys.executable, "-c", BOUND, str(path), str(tmp / "bound.tif")],
                                          None),
        }
        figures = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, (command, _) in runs.items():
                figures[name].append(timed(command))
        print(f"{args.size} x {args.size} x {BANDS} uint16, K={K}, {args.repeats} runs each, medians:")
        print("| command | wall s | CPU s | Mpx/s | peak RSS MiB | planted classes recovered |")
        print("|---|---|---|---|---|---|")
        for name, (_, output) in runs.items():
            wall, cpu, rss = (statistics.median(run[i] for run in figures[name]) for i in range(3))
            score = f"{recovery(output, args.size):.4f}" if output else "-"
            print(f"| {name} | {wall:.2f} | {cpu:.1f} | {megapixels / wall:.1f} | {rss:.0f} | {score} |")
        # Each kmi run against the peer run beside it: a ratio holds when the machine's speed drifts.
        for i, figure in enumerate(("wall time", "CPU time")):
            ratios = sorted(a[i] / b[i] for a, b in zip(figures["kmi segment"], figures[PEER], strict=True))
            print(f"kmi segment / peer, {figure}, pair by pair: median {statistics.median(ratios):.2f} "
                  f"({ratios[0]:.2f}-{ratios[-1]:.2f})")


if __name__ == "__main__":
    main()
