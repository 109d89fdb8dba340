"""Streaming and Dask K-means at scale: fit time, time per pass, inertia, peak memory.

For each size N (60,000 = MNIST train itself; larger sizes = distorted MNIST from
``make_scale_data.py``, built into ``--work-dir`` when missing), all read from Zarr:

- ``stream``: :func:`kmeans_imagery.fit.fit` with ``mode="stream"`` in one process;
- ``subsample``: the in-memory engine's ``KMeans`` on a random subsample of ``--subsample``
  images, its inertia then evaluated on all N images (the reference of the streaming target);
- ``dask-W``: :class:`kmeans_imagery.engine.dask.DaskKMeans` on a ``LocalCluster`` of W
  single-threaded worker processes (``bench_dask.py`` compares it with dask-ml on MNIST alone);
- ``dask-ml``: ``dask_ml.cluster.KMeans`` on the same kind of cluster and data (float32 rows),
  stopped after ``--daskml-factor`` times the time of our 2-worker fit;
- ``sklearn`` (60,000 only): ``sklearn.cluster.KMeans(n_init=1)`` in memory.

Every measurement runs in a fresh child process, so peak RSS (``ru_maxrss``) is per fit: the
driver's, and each worker's. Timings on a shared machine are noisy: compare rows of one run.

    python benchmarks/make_scale_data.py --n 1000000 --out /tmp/scale/mnist-1000000.zarr
    python benchmarks/bench_scale.py --work-dir /tmp/scale --sizes 60000,1000000 --out r.json
"""

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _store(work_dir, n, data_dir):
    from kmeans_imagery.datasets import convert_to_zarr, open_source

    path = Path(work_dir) / f"mnist-{n}.zarr"
    if not path.exists():
        if n == 60000:
            convert_to_zarr(open_source(data_dir), path)
        else:
            sys.path.insert(0, str(Path(__file__).parent))
            from make_scale_data import main as make

            make(["--n", str(n), "--out", str(path), "--data-dir", str(data_dir)])
    return open_source(path)


def run_stream(path, k, seed):
    from kmeans_imagery.datasets import open_source
    from kmeans_imagery.fit import FitSpec, fit

    source = open_source(path)
    start = time.perf_counter()
    result = fit(source, FitSpec(k, random_state=seed), mode="stream")
    return {"fit_s": time.perf_counter() - start, "pass_s": result.metrics["seconds_per_pass"],
            "inertia_per_image": result.model.inertia_ / source.n_images,
            "lloyd_passes": result.model.n_iter_, "driver_rss_mib": _rss_mib()}


def run_subsample(path, k, seed, size):
    from kmeans_imagery.datasets import open_source
    from kmeans_imagery.engine.kmeans import KMeans
    from kmeans_imagery.preprocessing import flatten_scale

    source = open_source(path)
    rows = np.sort(np.random.default_rng(seed).choice(source.n_images, size, replace=False))
    sample = flatten_scale(source.take(rows).images)
    start = time.perf_counter()
    model = KMeans(k, random_state=seed).fit(sample)
    elapsed = time.perf_counter() - start
    del sample
    inertia = -sum(model.score(flatten_scale(batch.images)) for batch in source.iter_batches(8192))
    return {"fit_s": elapsed, "inertia_per_image": inertia / source.n_images,
            "driver_rss_mib": _rss_mib()}


def _worker_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def _local_client(n_workers):
    """A LocalCluster of single-threaded worker processes, all of them up."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        client.wait_for_workers(n_workers)
        yield client


def run_dask(path, k, seed, n_workers):
    from kmeans_imagery.datasets import open_source
    from kmeans_imagery.engine.dask import DaskKMeans

    source = open_source(path)
    with _local_client(n_workers) as client:
        start = time.perf_counter()
        model = DaskKMeans(k, random_state=seed, client=client, timeout=None).fit(source.to_dask())
        elapsed = time.perf_counter() - start
        t = time.perf_counter()
        model.score(source.to_dask())  # one exact full-space pass, reading the store again
        per_pass = time.perf_counter() - t
        workers = sorted(client.run(_worker_rss).values())
    return {"fit_s": elapsed, "pass_s": per_pass,
            "inertia_per_image": model.inertia_ / source.n_images,
            "lloyd_passes": model.n_iter_, "driver_rss_mib": _rss_mib(), "worker_rss_mib": workers}


def run_daskml(path, k, seed, n_workers):
    from dask_ml.cluster import KMeans

    from kmeans_imagery.datasets import open_source

    source = open_source(path)
    with _local_client(n_workers) as client:
        images = source.to_dask()
        X = (images.reshape(images.shape[0], -1).astype(np.float32) / np.float32(255)).persist()
        start = time.perf_counter()
        model = KMeans(n_clusters=k, random_state=seed).fit(X)
        elapsed = time.perf_counter() - start
        workers = sorted(client.run(_worker_rss).values())
    return {"fit_s": elapsed, "inertia_per_image": float(model.inertia_) / source.n_images,
            "lloyd_passes": int(model.n_iter_), "driver_rss_mib": _rss_mib(),
            "worker_rss_mib": workers}


def run_sklearn(data_dir, k, seed):
    from sklearn.cluster import KMeans

    from kmeans_imagery.datasets import load_dataset
    from kmeans_imagery.preprocessing import flatten_scale

    X = flatten_scale(load_dataset("mnist", data_dir=data_dir).train_images)
    start = time.perf_counter()
    model = KMeans(k, n_init=1, random_state=seed).fit(X)
    return {"fit_s": time.perf_counter() - start, "inertia_per_image": model.inertia_ / len(X),
            "lloyd_passes": int(model.n_iter_), "driver_rss_mib": _rss_mib()}


def _child(queue, fn, args):
    queue.put(fn(*args))


def measure(fn, *args, limit=None):
    """Run ``fn(*args)`` in a fresh process; None when it exceeds ``limit`` seconds."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, args))
    proc.start()
    start = time.perf_counter()
    try:
        result = queue.get(timeout=limit)
    except Exception:  # noqa: BLE001 - queue.Empty on time-out, anything if the child died
        result = None
    if result is None:
        for child in _children(proc.pid):
            child.kill()
        proc.kill()
    proc.join()
    if result is None:
        return {"fit_s": None, "stopped_after_s": time.perf_counter() - start}
    return result


def _children(pid):
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", default="/tmp/kmi-scale", help="Where the Zarr stores go.")
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--sizes", default="60000,1000000,2000000")
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", default="1,2", help="Dask worker counts to time.")
    parser.add_argument("--subsample", type=int, default=100_000)
    parser.add_argument("--daskml-factor", type=float, default=10.0,
                        help="Stop dask-ml after this many times our 2-worker fit time.")
    parser.add_argument("--skip", default="", help="Comma-separated runs to skip, e.g. dask-ml.")
    parser.add_argument("--out", help="Write the results as JSON here.")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    results = {"k": args.k, "seed": args.seed, "runs": []}
    for n in map(int, args.sizes.split(",")):
        path = str(_store(args.work_dir, n, args.data_dir).path)

        def record(name, result, n=n):
            results["runs"].append({"n": n, "run": name, **result})
            print(json.dumps(results["runs"][-1]), flush=True)
            if args.out:
                Path(args.out).write_text(json.dumps(results, indent=2))
            return result

        if "stream" not in skip:
            record("stream", measure(run_stream, path, args.k, args.seed))
        if "subsample" not in skip and n > args.subsample:
            record("subsample", measure(run_subsample, path, args.k, args.seed, args.subsample))
        dask_time = None
        for w in map(int, args.workers.split(",")):
            if f"dask-{w}" not in skip:
                dask_time = record(f"dask-{w}", measure(run_dask, path, args.k, args.seed, w))[
                    "fit_s"]
        if "dask-ml" not in skip:
            limit = None if dask_time is None else args.daskml_factor * dask_time
            record("dask-ml-2", measure(run_daskml, path, args.k, args.seed, 2, limit=limit))
        if "sklearn" not in skip and n == 60000:
            record("sklearn", measure(run_sklearn, args.data_dir, args.k, args.seed))


if __name__ == "__main__":
    main()
