"""Benchmark the project's K-means engine against scikit-learn and faiss on MNIST (not a test).

Every fit runs in a fresh child process (spawned, data read from a temporary .npy the parent
writes once), so that its peak resident memory is its own: the child resets the kernel's
high-water mark (``/proc/self/clear_refs``) after loading the data, fits, and reports ``VmHWM``.
The parent scores every peer the same way: exact inertia over all 60,000 training images
(float64) and test accuracy with clusters named by the majority training label.

Usage (from the repository root)::

    python benchmarks/bench_kmeans.py --out results.json            # K = 10, 64, 256; seeds 0-2
    python benchmarks/bench_kmeans.py --sweep --out sweep.json      # the tutorial's sweep

Peers: ``kmi-full`` and ``kmi-minibatch`` (this project, through ``make_kmeans``),
``sklearn-full`` (KMeans, lloyd, n_init=1, converged), ``sklearn-minibatch`` (the tutorial's
defaults) and ``faiss`` (all points, niter=25) when faiss is installed (the ``bench`` extra).
"""

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data" / "mnist"
SWEEP_KS = (10, 16, 36, 64, 144, 256)


# -- data ------------------------------------------------------------------------------------


def load_mnist(data_dir):
    """Train and test images as float32 rows in [0, 1], and their labels."""
    from kmeans_imagery.datasets import load_dataset
    from kmeans_imagery.errors import KMIError
    from kmeans_imagery.preprocessing import flatten_scale

    try:
        ds = load_dataset("mnist", data_dir=data_dir)
    except KMIError as exc:
        raise SystemExit(f"{exc} (use --data-dir)") from None
    X, X_test = flatten_scale(ds.train_images), flatten_scale(ds.test_images)
    return X, ds.train_labels.astype(np.int64), X_test, ds.test_labels.astype(np.int64)


# -- one fit in a child process ----------------------------------------------------------------


def _peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _current_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _fit(peer, n_clusters, seed, X):
    """Fit one peer; return its centroids."""
    if peer == "faiss":
        import faiss

        km = faiss.Kmeans(X.shape[1], n_clusters, niter=25, seed=seed, max_points_per_centroid=X.shape[0])
        km.train(X)
        return km.centroids
    from kmeans_imagery.engine import make_kmeans

    engine, algorithm = peer.split("-")
    est = make_kmeans(n_clusters, algorithm=algorithm, engine=engine, random_state=seed)
    return est.fit(X).cluster_centers_


def _child(peer, n_clusters, seed, npy_path, queue):
    X = np.load(npy_path)
    if peer == "faiss":
        import faiss  # noqa: F401  (import before the clock and the memory baseline)
    else:
        import sklearn.cluster  # noqa: F401

        import kmeans_imagery.engine  # noqa: F401
    before = _current_rss_mib()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the high-water mark to the current RSS
    except OSError:
        pass
    t0 = time.perf_counter()
    centers = _fit(peer, n_clusters, seed, X)
    seconds = time.perf_counter() - t0
    queue.put(
        {
            "seconds": seconds,
            "peak_rss_mib": _peak_rss_mib(),
            "rss_before_fit_mib": before,
            "centers": np.asarray(centers, dtype=np.float32),
        }
    )


def run_fit(peer, n_clusters, seed, npy_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(peer, n_clusters, seed, npy_path, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


# -- scoring -----------------------------------------------------------------------------------


def nearest(X, centers, chunk=4096):
    """Nearest centroid and exact squared distance (float64) for every row."""
    C = centers.astype(np.float64)
    c_sq = (C**2).sum(axis=1)
    labels = np.empty(len(X), dtype=np.int64)
    dist = np.empty(len(X), dtype=np.float64)
    for s in range(0, len(X), chunk):
        Xb = X[s : s + chunk].astype(np.float64)
        G = c_sq - 2 * Xb @ C.T
        lab = G.argmin(axis=1)
        labels[s : s + chunk] = lab
        diff = Xb - C[lab]
        dist[s : s + chunk] = np.einsum("ij,ij->i", diff, diff)
    return labels, dist


def score(centers, X, y, X_test, y_test):
    labels, dist = nearest(X, centers)
    k = len(centers)
    votes = np.zeros((k, 10), dtype=np.int64)
    np.add.at(votes, (labels, y), 1)
    names = votes.argmax(axis=1)
    test_labels, _ = nearest(X_test, centers)
    return float(dist.sum()), float((names[test_labels] == y_test).mean())


# -- reporting ---------------------------------------------------------------------------------


def summarize(runs):
    """Medians over seeds of each (peer, K)."""
    table = {}
    for r in runs:
        table.setdefault((r["peer"], r["k"]), []).append(r)
    out = []
    for (peer, k), rs in sorted(table.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        out.append(
            {
                "peer": peer,
                "k": k,
                "seeds": [r["seed"] for r in rs],
                "median_seconds": statistics.median(r["seconds"] for r in rs),
                "median_inertia": statistics.median(r["inertia"] for r in rs),
                "median_test_accuracy": statistics.median(r["test_accuracy"] for r in rs),
                "median_peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in rs),
                "median_fit_rss_increase_mib": statistics.median(
                    r["peak_rss_mib"] - r["rss_before_fit_mib"] for r in rs
                ),
            }
        )
    return out


def ratios(summary, pairs):
    by = {(s["peer"], s["k"]): s for s in summary}
    out = []
    for ours, peer in pairs:
        for k in sorted({s["k"] for s in summary}):
            if (ours, k) in by and (peer, k) in by:
                a, b = by[(ours, k)], by[(peer, k)]
                out.append(
                    {
                        "ours": ours,
                        "peer": peer,
                        "k": k,
                        "time_ratio": a["median_seconds"] / b["median_seconds"],
                        "inertia_ratio": a["median_inertia"] / b["median_inertia"],
                    }
                )
    return out


def print_table(summary, ratio_rows, data_mib):
    print(f"\nMNIST train: 60,000 x 784 float32 = {data_mib:.0f} MiB; medians over seeds")
    head = f"{'peer':<18} {'K':>4} {'fit s':>8} {'inertia':>12} {'test acc':>9} {'peak RSS MiB':>13}"
    print(head + f" {'fit +MiB':>9}")
    print("-" * (len(head) + 10))
    for s in summary:
        print(
            f"{s['peer']:<18} {s['k']:>4} {s['median_seconds']:>8.2f} {s['median_inertia']:>12,.0f} "
            f"{s['median_test_accuracy']:>9.3f} {s['median_peak_rss_mib']:>13.0f} "
            f"{s['median_fit_rss_increase_mib']:>9.0f}"
        )
    print()
    for r in ratio_rows:
        print(
            f"{r['ours']:<14} / {r['peer']:<18} K={r['k']:<4} time x{r['time_ratio']:.2f}  "
            f"inertia x{r['inertia_ratio']:.5f}"
        )


def main(argv=None):
    # Imported here, not at the top: spawned fit processes import this module and must not pay for it.
    from kmeans_imagery.pipeline import write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--ks", default="10,64,256", help="comma-separated K values")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--peers", default=None, help="comma-separated subset of the peers")
    parser.add_argument("--sweep", action="store_true", help="time the tutorial sweep, kmi vs sklearn")
    parser.add_argument("--out", default="results.json")
    args = parser.parse_args(argv)

    X, y, X_test, y_test = load_mnist(args.data_dir)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.sweep:
        ks = list(SWEEP_KS)
        peers = ["kmi-minibatch", "sklearn-minibatch"]
    else:
        ks = [int(k) for k in args.ks.split(",")]
        peers = ["kmi-full", "kmi-minibatch", "sklearn-full", "sklearn-minibatch"]
        try:
            import faiss  # noqa: F401

            peers.append("faiss")
        except ImportError:
            print("faiss not installed: skipping it (pip install -e .[bench])", file=sys.stderr)
    if args.peers:
        peers = [p for p in peers if p in args.peers.split(",")]

    command = " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        npy = os.path.join(tmp, "mnist-train.npy")
        np.save(npy, X)
        for k in ks:
            for seed in seeds:
                for peer in peers:  # interleaved, so that drifting load hits every peer alike
                    fit = run_fit(peer, k, seed, npy)
                    inertia, acc = score(fit["centers"], X, y, X_test, y_test)
                    runs.append(
                        {
                            "peer": peer,
                            "k": k,
                            "seed": seed,
                            "seconds": fit["seconds"],
                            "inertia": inertia,
                            "test_accuracy": acc,
                            "peak_rss_mib": fit["peak_rss_mib"],
                            "rss_before_fit_mib": fit["rss_before_fit_mib"],
                        }
                    )
                    print(
                        f"{peer:<18} K={k:<4} seed={seed} {fit['seconds']:7.2f} s  inertia {inertia:,.0f}  "
                        f"acc {acc:.3f}  peak RSS {fit['peak_rss_mib']:.0f} MiB",
                        flush=True,
                    )
                    write_json({"command": command, "runs": runs, "partial": True}, args.out)
    summary = summarize(runs)
    if args.sweep:
        ratio_rows = ratios(summary, [("kmi-minibatch", "sklearn-minibatch")])
        totals = {p: sum(s["median_seconds"] for s in summary if s["peer"] == p) for p in peers}
        sweep = {
            "total_median_seconds": totals,
            "speedup": totals["sklearn-minibatch"] / totals["kmi-minibatch"],
            "inertia_not_worse_at_every_k": all(r["inertia_ratio"] <= 1.0 for r in ratio_rows),
        }
    else:
        ratio_rows = ratios(
            summary,
            [
                ("kmi-full", "sklearn-full"),
                ("kmi-full", "faiss"),
                ("kmi-minibatch", "sklearn-minibatch"),
            ],
        )
        sweep = None
    data_mib = X.nbytes / 2**20
    print_table(summary, ratio_rows, data_mib)
    if sweep:
        print(
            f"\nsweep total: kmi {sweep['total_median_seconds']['kmi-minibatch']:.2f} s, sklearn "
            f"{sweep['total_median_seconds']['sklearn-minibatch']:.2f} s: x{sweep['speedup']:.2f} faster; "
            f"inertia <= sklearn at every K: {sweep['inertia_not_worse_at_every_k']}"
        )
    write_json(
        {
            "command": command,
            "cpu_count": os.cpu_count(),
            "data_mib": data_mib,
            "runs": runs,
            "summary": summary,
            "ratios": ratio_rows,
            "sweep": sweep,
        },
        args.out,
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
