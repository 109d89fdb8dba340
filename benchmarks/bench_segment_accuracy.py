"""Accuracy of ``kmi segment`` pipelines on the three hyperspectral scenes with ground truth.

For each scene (Salinas-A, Jasper Ridge, Samson from ../shared/data/hsi), each feature pipeline and
each seed, runs :func:`kmeans_imagery.segment.segment` with K = number of classes on every pixel,
scored on the labelled pixels (Hungarian-matched overall accuracy), and with
``--label-budget 4 x classes`` (K = 4 x classes, each cluster named from its most central labelled
pixel). Prints the median and range over the seeds. ``default`` stands for the defaults: no
``--features``, so the class map and the label-budget models each use their own default pipeline.

    python benchmarks/bench_segment_accuracy.py [--seeds 0,1,2,3,4] [--features SPEC;SPEC;...]

Jasper Ridge and Samson are stored as unmixing data (abundances): they are written here as a
(rows, cols, bands) cube and a hard truth (largest abundance, classes numbered from 1) in a
temporary folder; Salinas-A is read from its MATLAB files as they are.
"""

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import scipy.io

from kmeans_imagery.features import DEFAULT_PIXEL_FEATURES
from kmeans_imagery.segment import segment

HSI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "hsi"
CANDIDATES = ["raw", "std", "l2", "l2+std", "std+pca:10", "l2+std+pca:10", "nbr:1+std",
              DEFAULT_PIXEL_FEATURES, "default"]


def scenes(folder):
    """(name, cube path, truth path, number of classes) for each scene, written into ``folder``."""
    yield "Salinas-A", HSI / "SalinasA_corrected.mat", HSI / "SalinasA_gt.mat", 6
    jasper = scipy.io.loadmat(HSI / "jasperRidge2_R198.mat")
    cube = jasper["Y"].T.reshape(100, 100, -1, order="F")
    truth = jasper["A"].T.reshape(100, 100, -1, order="F").argmax(axis=-1) + 1
    np.save(folder / "jasper.npy", cube)
    np.save(folder / "jasper_gt.npy", truth.astype(np.uint8))
    yield "Jasper Ridge", folder / "jasper.npy", folder / "jasper_gt.npy", 4
    samson = scipy.io.loadmat(HSI / "Samson.mat")
    np.save(folder / "samson.npy", samson["SamSon"])
    np.save(folder / "samson_gt.npy", (samson["A"].argmax(axis=-1) + 1).astype(np.uint8))
    yield "Samson", folder / "samson.npy", folder / "samson_gt.npy", 3


def summary(values):
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--features", default=";".join(CANDIDATES),
                        help="Pipelines to compare, separated by semicolons.")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print("| scene | features | K = classes: Hungarian accuracy | K = 4 x classes, one label per cluster |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, cube, truth, n_classes in scenes(tmp):
            for spec in args.features.split(";"):
                plain, budget = [], []
                for seed in seeds:
                    out = tmp / "out"
                    results = segment(cube, out, n_clusters=n_classes, truth=truth,
                                      features=None if spec == "default" else spec,
                                      label_budgets=(4 * n_classes,), random_state=seed, force=True).results
                    plain.append(results["test"]["hungarian_accuracy"])
                    budget.append(results["label_budget"][0]["accuracy"])
                used = f"`{results['features']}`, budget `{results['label_budget'][0]['features']}`"
                shown = f"default: {used}" if spec == "default" else f"`{spec}`"
                print(f"| {name} | {shown} | {summary(plain)} | {summary(budget)} |", flush=True)


if __name__ == "__main__":
    main()
