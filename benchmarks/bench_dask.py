"""``KMeans(n_clusters=256).fit(dask_array)`` against dask-ml's KMeans on MNIST, same cluster, same run.

MNIST train (60,000 x 784, float32 in [0, 1]) becomes a dask array of ``--chunk`` rows, persisted
on a fresh ``LocalCluster`` of ``--workers`` single-threaded worker processes for each fit before its
clock starts, the workers having imported both engines. Alternately, ``--repeats`` times (dask-ml
``--daskml-repeats`` times):

- ``kmi``: ``kmeans_imagery.KMeans(n_clusters=K, random_state=seed).fit(X)``, which runs on Dask by
  itself (:class:`kmeans_imagery.engine.dask.DaskKMeans`);
- ``dask-ml``: ``dask_ml.cluster.KMeans(n_clusters=K, random_state=seed).fit(X)`` (k-means||,
  its defaults); a run past ``--daskml-limit`` seconds is recorded unfinished (its cluster closed);

and once ``memory``: the in-memory engine on the same rows. Inertia is recomputed the same way
for every fit (exact, float64, over all rows). The target: median ``kmi`` time at most 0.05 x the
median dask-ml time, and ``kmi`` inertia at most 1.001 x scikit-learn's converged inertia
(``--sklearn-inertia``: 1,477,251 at K=256, the README's engine benchmark figure for converged
``sklearn.cluster.KMeans``, lloyd, n_init=1, median of seeds 0-2; ``--run-sklearn`` fits it here
instead, about a minute).

    python benchmarks/bench_dask.py --out dask.json
"""

import argparse
import json
import statistics
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def exact_inertia(X, centers):
    """Sum of squared distances to the nearest centre, float64, block by block."""
    C = centers.astype(np.float64)
    c_sq = (C**2).sum(axis=1)
    total = 0.0
    for s in range(0, len(X), 4096):
        B = X[s:s + 4096].astype(np.float64)
        d = (B**2).sum(axis=1)[:, None] - 2 * B @ C.T + c_sq
        total += float(np.maximum(d.min(axis=1), 0).sum())
    return total


def fit_kmi(X, k, seed):
    from kmeans_imagery import KMeans

    model = KMeans(n_clusters=k, random_state=seed).fit(X)
    return model.cluster_centers_, model.n_iter_


def fit_daskml(X, k, seed):
    from dask_ml.cluster import KMeans

    model = KMeans(n_clusters=k, random_state=seed).fit(X)
    return np.asarray(model.cluster_centers_), int(model.n_iter_)


def timed(fn, *args, limit=None):
    """``(seconds, result)`` of ``fn(*args)``; ``(None, None)`` past ``limit`` seconds or on an error."""
    out = {}

    def run():
        start = time.perf_counter()
        try:
            out["result"] = fn(*args)
        except Exception as exc:  # noqa: BLE001 - the cluster closed under an abandoned fit
            out["error"] = exc
            return
        out["s"] = time.perf_counter() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive() or "s" not in out:
        return None, None
    return out["s"], out["result"]


@contextmanager
def cluster_with(X, n_workers, chunk):
    """A fresh LocalCluster of single-threaded worker processes holding ``X`` as a persisted dask
    array; closing it ends whatever still runs there (an abandoned fit)."""
    import dask.array as da
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        client.wait_for_workers(n_workers)
        client.run(_import_engines)  # as on a running cluster: no fit pays the workers' imports
        lazy = client.persist(da.from_array(X, chunks=(chunk, X.shape[1])))
        lazy.sum().compute()  # every chunk on its worker before the clock starts
        yield lazy


def _import_engines():
    import dask_ml.cluster  # noqa: F401

    import kmeans_imagery.engine.dask  # noqa: F401


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=7500, help="Rows per dask chunk.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--daskml-repeats", type=int, default=None,
                        help="dask-ml fits (default: --repeats); 0 skips dask-ml.")
    parser.add_argument("--daskml-limit", type=float, default=3600.0,
                        help="Seconds after which a dask-ml fit is recorded unfinished.")
    parser.add_argument("--sklearn-inertia", type=float, default=1_477_251.0)
    parser.add_argument("--run-sklearn", action="store_true")
    parser.add_argument("--out", help="Write the results as JSON here.")
    args = parser.parse_args(argv)
    if args.daskml_repeats is None:
        args.daskml_repeats = args.repeats

    from kmeans_imagery.datasets import load_dataset
    from kmeans_imagery.engine.kmeans import KMeans as MemoryKMeans
    from kmeans_imagery.preprocessing import flatten_scale

    X = flatten_scale(load_dataset("mnist", data_dir=args.data_dir).train_images)
    results = {"k": args.k, "seed": args.seed, "workers": args.workers, "chunk": args.chunk,
               "runs": []}

    def record(name, seconds, centers=None, n_iter=None):
        inertia = None if centers is None else exact_inertia(X, centers)
        results["runs"].append({"run": name, "fit_s": seconds, "inertia": inertia, "n_iter": n_iter})
        print(json.dumps(results["runs"][-1]), flush=True)

    if args.run_sklearn:
        from sklearn.cluster import KMeans as SKLearnKMeans

        start = time.perf_counter()
        model = SKLearnKMeans(args.k, n_init=1, random_state=args.seed).fit(X)
        record("sklearn", time.perf_counter() - start, model.cluster_centers_, int(model.n_iter_))
        args.sklearn_inertia = results["runs"][-1]["inertia"]
    start = time.perf_counter()
    memory = MemoryKMeans(args.k, random_state=args.seed).fit(X)
    record("memory", time.perf_counter() - start, memory.cluster_centers_, memory.n_iter_)

    for i in range(args.repeats):
        with cluster_with(X, args.workers, args.chunk) as lazy:
            seconds, (centers, n_iter) = timed(fit_kmi, lazy, args.k, args.seed)
            record("kmi", seconds, centers, n_iter)
        if i < args.daskml_repeats:
            with cluster_with(X, args.workers, args.chunk) as lazy:
                seconds, result = timed(fit_daskml, lazy, args.k, args.seed, limit=args.daskml_limit)
                record("dask-ml", seconds, *(result or (None, None)))

    summary = {"sklearn_inertia": args.sklearn_inertia}
    for name in ("kmi", "dask-ml"):
        runs = [r for r in results["runs"] if r["run"] == name and r["fit_s"] is not None]
        if runs:
            summary[name] = {"median_s": statistics.median(r["fit_s"] for r in runs),
                             "median_inertia": statistics.median(r["inertia"] for r in runs),
                             "finished": len(runs)}
    if "kmi" in summary:
        summary["kmi"]["inertia_ratio_to_sklearn"] = summary["kmi"]["median_inertia"] / args.sklearn_inertia
    if "kmi" in summary and "dask-ml" in summary:
        summary["time_ratio_kmi_to_daskml"] = summary["kmi"]["median_s"] / summary["dask-ml"]["median_s"]
    results["summary"] = summary
    print(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
