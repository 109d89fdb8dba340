"""Benchmark the project's K-means engine against scikit-learn and faiss on MNIST (not a test).

Every fit runs in a fresh child process (spawned, data read from temporary .npy files the parent
writes once), so that its memory is its own: the child notes its RSS after importing the peer,
loads the data, resets the kernel's high-water mark (``/proc/self/clear_refs``), fits, and reports
``VmHWM``. The memory target is checked on the peak less the RSS after imports (the Python stack
alone: numpy, scipy, scikit-learn and, when installed, the pandas it loads). The parent scores
every peer the same way: exact inertia over all 60,000 training images (float64) and test accuracy
with clusters named by the majority training label.

``--sweep`` times the tutorial's sweep the way ``kmi sweep`` runs it: ``pipeline.run_sweep`` over
K = 10..256 (mini-batch, fits plus their scores), one child process per engine and seed.

``--sparse`` clusters a generated TF-IDF-like CSR matrix instead (:func:`make_tfidf`; by default
100,000 x 20,000 at 0.5 % density, K = 100): the project's KMeans against scikit-learn's KMeans
(lloyd, n_init=1, converged), each fit in its own process as above, both scored by their exact
inertia (float64) over all rows.

Usage (from the repository root)::

    python benchmarks/bench_kmeans.py --out results.json            # K = 10, 64, 256; seeds 0-2
    python benchmarks/bench_kmeans.py --sweep --out sweep.json      # the tutorial's sweep
    python benchmarks/bench_kmeans.py --sparse --out sparse.json    # TF-IDF-like rows, K = 100

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


def make_tfidf(n_rows=100_000, n_terms=20_000, density=0.005, n_topics=100, seed=0):
    """TF-IDF-like rows: each document draws its terms from one topic and a Zipf background.

    Every row has ``1.6 * density * n_terms`` term draws (about ``density * n_terms`` distinct
    terms): 60 % from its topic's 200 terms (drawn by a Zipf law within the topic), the rest
    from all terms by a Zipf law over the vocabulary; the counts become
    ``(1 + log count) * idf``, rows scaled to unit norm (scikit-learn's ``TfidfVectorizer``
    defaults), float64 CSR.
    """
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    per_row = int(round(1.6 * density * n_terms))
    n_topic = int(0.6 * per_row)

    def zipf_cdf(n):
        p = 1.0 / np.arange(1, n + 1)
        return np.cumsum(p / p.sum())

    topic_terms = np.stack([rng.choice(n_terms, 200, replace=False) for _ in range(n_topics)])
    topics = rng.integers(0, n_topics, n_rows)
    within = np.searchsorted(zipf_cdf(200), rng.random((n_rows, n_topic)))
    ranks = np.searchsorted(zipf_cdf(n_terms), rng.random((n_rows, per_row - n_topic)))
    background = rng.permutation(n_terms)[np.minimum(ranks, n_terms - 1)]
    cols = np.concatenate([topic_terms[topics[:, None], np.minimum(within, 199)], background], axis=1).ravel()
    rows = np.repeat(np.arange(n_rows), per_row)
    X = sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(n_rows, n_terms))
    X.sum_duplicates()
    df = np.bincount(X.indices, minlength=n_terms)
    X.data = (1 + np.log(X.data)) * (np.log((1 + n_rows) / (1 + df)) + 1)[X.indices]
    norms = np.sqrt(np.add.reduceat(X.data**2, X.indptr[:-1]))
    X.data /= np.repeat(norms, np.diff(X.indptr))
    return X


# -- one fit in a child process ----------------------------------------------------------------


def _status_mib(field):
    """A memory field of /proc/self/status (VmRSS: now, VmHWM: peak), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
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


def _import_peer(peer):
    """Import what a peer needs (before the clock and the memory baselines)."""
    if peer == "faiss":
        import faiss  # noqa: F401
    elif peer.startswith("sklearn"):
        import sklearn.cluster  # noqa: F401
    else:
        import kmeans_imagery.engine.kmeans  # noqa: F401


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the high-water mark to the current RSS
    except OSError:
        pass


def _load(path):
    """An array saved by the parent: .npy dense, .npz a scipy sparse matrix."""
    if path.endswith(".npz"):
        import scipy.sparse as sp

        return sp.load_npz(path)
    return np.load(path)


def _child(peer, n_clusters, seed, npy_path, queue):
    _import_peer(peer)
    after_imports = _status_mib("VmRSS")
    X = _load(npy_path)
    before = _status_mib("VmRSS")
    _reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    centers = _fit(peer, n_clusters, seed, X)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    queue.put(
        {
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "peak_rss_mib": _status_mib("VmHWM"),
            "rss_after_imports_mib": after_imports,
            "rss_before_fit_mib": before,
            "centers": np.asarray(centers, dtype=np.float32),
        }
    )


def _sweep_child(engine, seed, paths, queue):
    """The tutorial's sweep as ``kmi sweep`` runs it: ``pipeline.run_sweep`` over SWEEP_KS."""
    from kmeans_imagery.experiment import run_sweep

    X, y, X_test, y_test = (np.load(path) for path in paths)
    t0 = time.perf_counter()
    sweep = run_sweep(
        X, y, SWEEP_KS, X_test=X_test, y_test=y_test, algorithm="minibatch", engine=engine,
        random_state=seed,
    )
    seconds = time.perf_counter() - t0
    queue.put(
        {
            "seconds": seconds,
            "fit_seconds": {row["k"]: row["fit_seconds"] for row in sweep.rows},
            "centers": {k: np.asarray(m.cluster_centers_, dtype=np.float32) for k, m in sweep.models.items()},
        }
    )


def run_sweep_child(engine, seed, paths):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_sweep_child, args=(engine, seed, paths, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


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
                "median_peak_above_imports_mib": statistics.median(
                    r["peak_rss_mib"] - r["rss_after_imports_mib"] for r in rs
                ),
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
    head += f" {'above imports':>14} {'fit +MiB':>9}"
    print(head)
    print("-" * len(head))
    for s in summary:
        print(
            f"{s['peer']:<18} {s['k']:>4} {s['median_seconds']:>8.2f} {s['median_inertia']:>12,.0f} "
            f"{s['median_test_accuracy']:>9.3f} {s['median_peak_rss_mib']:>13.0f} "
            f"{s['median_peak_above_imports_mib']:>14.0f} {s['median_fit_rss_increase_mib']:>9.0f}"
        )
    print()
    for r in ratio_rows:
        print(
            f"{r['ours']:<14} / {r['peer']:<18} K={r['k']:<4} time x{r['time_ratio']:.2f}  "
            f"inertia x{r['inertia_ratio']:.5f}"
        )


def main(argv=None):
    # Imported here, not at the top: spawned fit processes import this module and must not pay for it.
    from kmeans_imagery.outputs import write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--ks", default="10,64,256", help="comma-separated K values")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--peers", default=None, help="comma-separated subset of the peers")
    parser.add_argument("--sweep", action="store_true", help="time the tutorial sweep, kmi vs sklearn")
    parser.add_argument("--sparse", action="store_true", help="TF-IDF-like sparse rows instead of MNIST")
    parser.add_argument("--sparse-shape", default="100000,20000", help="rows,terms of --sparse data")
    parser.add_argument("--sparse-density", type=float, default=0.005)
    parser.add_argument("--sparse-k", type=int, default=100)
    parser.add_argument("--out", default="results.json")
    args = parser.parse_args(argv)

    seeds = [int(s) for s in args.seeds.split(",")]
    command = " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    if args.sparse:
        report = bench_sparse(args, seeds, command, write_json)
        report.update({"command": command, "cpu_count": os.cpu_count()})
        write_json(report, args.out)
        print(f"\nwrote {args.out}")
        return
    X, y, X_test, y_test = load_mnist(args.data_dir)
    data_mib = X.nbytes / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, array in (("X", X), ("y", y), ("X_test", X_test), ("y_test", y_test)):
            paths.append(os.path.join(tmp, f"{name}.npy"))
            np.save(paths[-1], array)
        if args.sweep:
            report = bench_sweep(seeds, paths, (X, y, X_test, y_test), command, args.out, write_json)
        else:
            report = bench_fits(args, seeds, paths[0], (X, y, X_test, y_test), command, write_json)
    report.update({"command": command, "cpu_count": os.cpu_count(), "data_mib": data_mib})
    write_json(report, args.out)
    print(f"\nwrote {args.out}")


def bench_fits(args, seeds, npy, data, command, write_json):
    """Each peer at each K and seed in its own process; the table, ratios and memory check."""
    ks = [int(k) for k in args.ks.split(",")]
    peers = ["kmi-full", "kmi-minibatch", "sklearn-full", "sklearn-minibatch"]
    try:
        import faiss  # noqa: F401

        peers.append("faiss")
    except ImportError:
        print("faiss not installed: skipping it (pip install -e .[bench])", file=sys.stderr)
    if args.peers:
        peers = [p for p in peers if p in args.peers.split(",")]
    runs = []
    for k in ks:
        for seed in seeds:
            for peer in peers:  # interleaved, so that drifting load hits every peer alike
                fit = run_fit(peer, k, seed, npy)
                inertia, acc = score(fit["centers"], *data)
                runs.append(
                    {
                        "peer": peer,
                        "k": k,
                        "seed": seed,
                        "seconds": fit["seconds"],
                        "inertia": inertia,
                        "test_accuracy": acc,
                        "peak_rss_mib": fit["peak_rss_mib"],
                        "rss_after_imports_mib": fit["rss_after_imports_mib"],
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
    ratio_rows = ratios(
        summary, [("kmi-full", "sklearn-full"), ("kmi-full", "faiss"), ("kmi-minibatch", "sklearn-minibatch")]
    )
    data_mib = data[0].nbytes / 2**20
    print_table(summary, ratio_rows, data_mib)
    # The memory target: peak RSS of the fit's process, less what its imports alone take (the
    # Python stack: numpy, scipy, scikit-learn and, when installed, pandas), under data + 200 MiB.
    memory = [
        {
            "peer": s["peer"],
            "k": s["k"],
            "peak_above_imports_mib": s["median_peak_above_imports_mib"],
            "limit_mib": data_mib + 200,
            "within": s["median_peak_above_imports_mib"] <= data_mib + 200,
        }
        for s in summary
        if s["peer"].startswith("kmi")
    ]
    for m in memory:
        print(
            f"memory {m['peer']} K={m['k']}: {m['peak_above_imports_mib']:.0f} MiB above imports "
            f"(limit {m['limit_mib']:.0f}): {'ok' if m['within'] else 'OVER'}"
        )
    return {"runs": runs, "summary": summary, "ratios": ratio_rows, "memory": memory}


def sparse_inertia(X, centers, chunk=8192):
    """Exact (float64) inertia of the CSR rows ``X`` against their nearest centroids."""
    C = centers.astype(np.float64)
    c_sq = (C**2).sum(axis=1)
    total = 0.0
    for s in range(0, X.shape[0], chunk):
        Xb = X[s : s + chunk].astype(np.float64)
        G = np.asarray(Xb @ C.T) * -2 + c_sq
        total += float(G.min(axis=1).sum() + Xb.multiply(Xb).sum())
    return total


def bench_sparse(args, seeds, command, write_json):
    """The project's KMeans against scikit-learn's on TF-IDF-like rows, one process per fit."""
    import scipy.sparse as sp

    n_rows, n_terms = (int(v) for v in args.sparse_shape.split(","))
    k = args.sparse_k
    t0 = time.perf_counter()
    X = make_tfidf(n_rows, n_terms, args.sparse_density)
    density = X.nnz / (n_rows * n_terms)
    print(f"TF-IDF-like rows: {n_rows:,} x {n_terms:,}, {X.nnz:,} stored ({density:.3%}), "
          f"{(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 2**20:.0f} MiB CSR; "
          f"made in {time.perf_counter() - t0:.1f} s", flush=True)
    peers = ["kmi-full", "sklearn-full"]
    if args.peers:
        peers = [p for p in peers if p in args.peers.split(",")]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "X.npz")
        sp.save_npz(path, X, compressed=False)
        for seed in seeds:
            for peer in peers:
                fit = run_fit(peer, k, seed, path)
                inertia = sparse_inertia(X, fit["centers"])
                runs.append({"peer": peer, "k": k, "seed": seed, "inertia": inertia, **{
                    key: fit[key] for key in ("seconds", "cpu_seconds", "peak_rss_mib", "rss_before_fit_mib")
                }})
                print(f"{peer:<14} K={k} seed={seed} {fit['seconds']:7.2f} s (CPU {fit['cpu_seconds']:.2f} s)"
                      f"  inertia {inertia:,.2f}  peak RSS {fit['peak_rss_mib']:.0f} MiB", flush=True)
                write_json({"command": command, "runs": runs, "partial": True}, args.out)
    med = {}
    for peer in peers:
        rs = [r for r in runs if r["peer"] == peer]
        med[peer] = {
            "median_seconds": statistics.median(r["seconds"] for r in rs),
            "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in rs),
            "median_inertia": statistics.median(r["inertia"] for r in rs),
            "median_fit_rss_increase_mib": statistics.median(
                r["peak_rss_mib"] - r["rss_before_fit_mib"] for r in rs
            ),
        }
        m = med[peer]
        print(f"{peer:<14} median {m['median_seconds']:7.2f} s (CPU {m['median_cpu_seconds']:.2f} s)  "
              f"inertia {m['median_inertia']:,.2f}"
              f"  fit +{m['median_fit_rss_increase_mib']:.0f} MiB")
    result = {"runs": runs, "medians": med, "shape": [n_rows, n_terms], "nnz": X.nnz, "density": density}
    if len(peers) == 2:
        ours, ref = med["kmi-full"], med["sklearn-full"]
        result["time_ratio"] = ours["median_seconds"] / ref["median_seconds"]
        result["cpu_time_ratio"] = ours["median_cpu_seconds"] / ref["median_cpu_seconds"]
        result["inertia_ratio"] = ours["median_inertia"] / ref["median_inertia"]
        print(f"kmi-full / sklearn-full K={k}: time x{result['time_ratio']:.2f} "
              f"(CPU x{result['cpu_time_ratio']:.2f})  "
              f"inertia x{result['inertia_ratio']:.5f}")
    return result


def bench_sweep(seeds, paths, data, command, out, write_json):
    """The tutorial sweep, kmi against sklearn, one process per (engine, seed)."""
    X, y, X_test, y_test = data
    runs = []
    for seed in seeds:
        for engine in ("kmi", "sklearn"):
            sweep = run_sweep_child(engine, seed, paths)
            inertias = {k: score(c, X, y, X_test, y_test)[0] for k, c in sweep["centers"].items()}
            runs.append({"engine": engine, "seed": seed, "seconds": sweep["seconds"],
                         "fit_seconds": sweep["fit_seconds"], "inertia": inertias})
            print(f"{engine:<8} seed={seed} sweep {sweep['seconds']:6.2f} s  (fits "
                  f"{sum(sweep['fit_seconds'].values()):.2f} s)", flush=True)
            write_json({"command": command, "runs": runs, "partial": True}, out)
    med = {}
    for engine in ("kmi", "sklearn"):
        rs = [r for r in runs if r["engine"] == engine]
        med[engine] = {
            "sweep_seconds": statistics.median(r["seconds"] for r in rs),
            "fit_seconds": statistics.median(sum(r["fit_seconds"].values()) for r in rs),
            "inertia": {k: statistics.median(r["inertia"][k] for r in rs) for k in SWEEP_KS},
            "k_fit_seconds": {k: statistics.median(r["fit_seconds"][k] for r in rs) for k in SWEEP_KS},
        }
    print(f"\n{'K':>4} {'kmi fit s':>10} {'sklearn fit s':>14} {'kmi inertia':>13} {'sklearn inertia':>16}")
    for k in SWEEP_KS:
        print(f"{k:>4} {med['kmi']['k_fit_seconds'][k]:>10.2f} {med['sklearn']['k_fit_seconds'][k]:>14.2f} "
              f"{med['kmi']['inertia'][k]:>13,.0f} {med['sklearn']['inertia'][k]:>16,.0f}")
    result = {
        "speedup": med["sklearn"]["sweep_seconds"] / med["kmi"]["sweep_seconds"],
        "fit_speedup": med["sklearn"]["fit_seconds"] / med["kmi"]["fit_seconds"],
        "inertia_not_worse_at_every_k": all(
            med["kmi"]["inertia"][k] <= med["sklearn"]["inertia"][k] for k in SWEEP_KS
        ),
    }
    print(
        f"\nsweep (median wall): kmi {med['kmi']['sweep_seconds']:.2f} s, sklearn "
        f"{med['sklearn']['sweep_seconds']:.2f} s: x{result['speedup']:.2f} faster (fits alone "
        f"x{result['fit_speedup']:.2f}); inertia <= sklearn at every K: "
        f"{result['inertia_not_worse_at_every_k']}"
    )
    return {"runs": runs, "medians": med, "sweep": result}


if __name__ == "__main__":
    main()
