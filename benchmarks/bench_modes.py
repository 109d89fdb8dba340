"""The same fit in memory, streamed and on Dask: test accuracy and time of each mode.

Fits MNIST train (60,000 images) with a feature pipeline at K=256 through
:func:`kmeans_imagery.fit.fit` in each mode, names the clusters by majority, and scores the 10,000
test images, all in one process (Dask on a local cluster of ``--workers`` workers, reading a Zarr
copy of the training images: a gzip IDX file can only be read front to back):

    python benchmarks/bench_modes.py --features pixhog --k 256 --seed 0
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--features", default="pixhog")
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", default="memory,stream,dask")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    from kmeans_imagery.datasets import convert_to_zarr, open_source
    from kmeans_imagery.engine.dask import connect
    from kmeans_imagery.fit import FitSpec, fit

    train = open_source("mnist", data_dir=args.data_dir)
    test = open_source("mnist", split="test", data_dir=args.data_dir)
    spec = FitSpec(args.k, features=args.features, random_state=args.seed)
    rows = []
    for mode in args.modes.split(","):
        started = time.perf_counter()
        if mode == "dask":
            with tempfile.TemporaryDirectory() as tmp, \
                    connect("local", n_workers=args.workers) as client:
                store = convert_to_zarr(train, Path(tmp) / "train.zarr")
                result = fit(store, spec, mode=mode, client=client, test=test)
        else:
            result = fit(train, spec, mode=mode, test=test)
        rows.append({"mode": mode, "features": args.features, "k": args.k, "seed": args.seed,
                     "test_accuracy": round(result.metrics["test_accuracy"], 4),
                     "inertia": round(result.metrics["inertia"], 1),
                     "seconds": round(time.perf_counter() - started, 1)})
        print(json.dumps(rows[-1]), flush=True)
    accuracies = [row["test_accuracy"] for row in rows]
    print(f"spread of test accuracy across modes: {max(accuracies) - min(accuracies):.4f}")


if __name__ == "__main__":
    main()
