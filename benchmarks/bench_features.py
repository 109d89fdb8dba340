"""Benchmark the feature pipelines of ``kmeans_imagery.features`` on MNIST (not a test).

Fits every pipeline on the 60k training images, scores on the 10k test images, and reports per
pipeline and seed:

- K=256: test accuracy with clusters named by majority vote of the training labels, and the
  end-to-end seconds (features on train and test + K-means fit + predict);
- K=256, one label per cluster: each cluster named from the true label of its single training
  image nearest the centroid (256 labels in all), scored on test;
- K=10: Hungarian (best one-to-one cluster -> class) accuracy on test of the init with the lowest
  inertia among ``--k10-inits`` single-init runs, plus every init's inertia and accuracy, so the
  stability of the unsupervised choice is visible;
- for pipelines ending in umap: the same K=256 and K=10 test accuracies when the test images are
  embedded by umap-learn's own ``transform`` instead of the stored out-of-sample rule.

Examples::

    .venv/bin/python benchmarks/bench_features.py --pipelines raw,hog,pixhog --seeds 0 \\
        --out bench-features.json
    .venv/bin/python benchmarks/bench_features.py --pipelines umap --seeds 0,1,2,3,4 \\
        --umap-transform-seeds 0 --out bench-umap.json
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from kmeans_imagery.datasets import load_dataset
from kmeans_imagery.engine import make_kmeans
from kmeans_imagery.features import UMAP, make_features
from kmeans_imagery.labeling import majority_vote
from kmeans_imagery.metrics import hungarian_accuracy
from kmeans_imagery.outputs import write_json
from kmeans_imagery.preprocessing import flatten_scale

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
N_CLASSES = 10


def load_mnist(folder):
    data = load_dataset("mnist", data_dir=folder)
    return (
        flatten_scale(data.train_images),
        data.train_labels.astype(np.intp),
        flatten_scale(data.test_images),
        data.test_labels.astype(np.intp),
    )


def majority_names(labels, y, n_clusters):
    """Each cluster's most frequent training label (ties to the smaller label)."""
    return majority_vote(labels, y, n_clusters, N_CLASSES).argmax(axis=1)


def central_names(features, labels, centers, y):
    """Each cluster named by the label of its training row nearest the centroid."""
    d2 = ((features - centers[labels]) ** 2).sum(axis=1)
    order = np.lexsort((d2, labels))  # by cluster, then distance
    first = np.r_[True, labels[order][1:] != labels[order][:-1]]
    names = np.zeros(len(centers), dtype=np.intp)
    names[labels[order][first]] = y[order][first]
    return names


def k10(F_train, F_test_by_rule, y_test, seed, n_inits, engine):
    """Single-init K=10 runs; the lowest-inertia one is the unsupervised choice."""
    runs = []
    for i in range(n_inits):
        km = make_kmeans(
            N_CLASSES, algorithm="full", engine=engine, random_state=seed * 1000 + i
        ).fit(F_train)
        accs = {
            rule: hungarian_accuracy(y_test, km.predict(F_test))
            for rule, F_test in F_test_by_rule.items()
        }
        runs.append({"inertia": float(km.inertia_), "test_hungarian_accuracy": accs})
    chosen = min(range(n_inits), key=lambda i: runs[i]["inertia"])
    return {"chosen_init": chosen, **runs[chosen], "inits": runs}


def bench(spec, seed, data, args):
    X_train, y_train, X_test, y_test = data
    t0, cpu0 = time.perf_counter(), time.process_time()
    pipeline = make_features(spec, (28, 28), random_state=seed)
    F_train = pipeline.fit_transform(X_train)
    F_test = pipeline.transform(X_test)
    t_features = time.perf_counter() - t0
    km = make_kmeans(256, algorithm="full", engine=args.engine, random_state=seed).fit(F_train)
    t_fit = time.perf_counter() - t0 - t_features
    pred = km.predict(F_test)
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - cpu0
    names = majority_names(km.labels_, y_train, 256)
    central = central_names(F_train, km.labels_, km.cluster_centers_, y_train)
    row = {
        "pipeline": spec,
        "spec": pipeline.spec,
        "seed": seed,
        "n_features": int(F_train.shape[1]),
        "seconds": {
            "features": round(t_features, 2),
            "kmeans_fit": round(t_fit, 2),
            "end_to_end": round(seconds, 2),
            # all threads' CPU time: on a machine shared with other work, wall time overstates
            # the cost, and CPU time / cores estimates the wall time on an idle machine
            "end_to_end_cpu": round(cpu_seconds, 2),
        },
        "k256_test_accuracy": float(np.mean(names[pred] == y_test)),
        "k256_one_label_test_accuracy": float(np.mean(central[pred] == y_test)),
        "k256_n_iter": int(km.n_iter_),
    }
    F_test_by_rule = {"stored": F_test}
    last = pipeline.steps[-1]
    if isinstance(last, UMAP) and seed in args.umap_transform_seeds:
        before = X_test
        for step in pipeline.steps[:-1]:
            before = step.transform(before)
        t1 = time.perf_counter()
        F_test_by_rule["umap_transform"] = last.umap_.transform(before).astype(np.float32)
        row["umap_transform_seconds"] = round(time.perf_counter() - t1, 2)
        pred_umap = km.predict(F_test_by_rule["umap_transform"])
        row["k256_test_accuracy_umap_transform"] = float(np.mean(names[pred_umap] == y_test))
    if args.k10_inits:
        row["k10"] = k10(F_train, F_test_by_rule, y_test, seed, args.k10_inits, args.engine)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--pipelines",
        default="raw,l2,hog,pixhog,umap",
        help="comma-separated feature specs or preset names",
    )
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--engine", default="sklearn", help="K-means engine name")
    parser.add_argument(
        "--k10-inits", type=int, default=10, help="single-init K=10 runs per seed; 0 skips K=10"
    )
    parser.add_argument(
        "--umap-transform-seeds",
        default="0",
        help="seeds for which umap pipelines are also scored with umap-learn's own transform",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    args.umap_transform_seeds = {int(s) for s in args.umap_transform_seeds.split(",") if s}
    data = load_mnist(args.data_dir)
    rows = []
    for spec in args.pipelines.split(","):
        for seed in seeds:
            row = bench(spec, seed, data, args)
            rows.append(row)
            summary = {k: v for k, v in row.items() if k != "k10"}
            if "k10" in row:
                summary["k10_chosen"] = row["k10"]["test_hungarian_accuracy"]
                summary["k10_all_inits"] = [
                    round(r["test_hungarian_accuracy"]["stored"], 3) for r in row["k10"]["inits"]
                ]
            print(json.dumps(summary), flush=True)
            if args.out:
                write_json({"engine": args.engine, "rows": rows}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
