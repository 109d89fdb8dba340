"""``kmi explore`` against clustimage, and its duplicate, outlier and scale checks.

Every experiment writes its folders of PNG files into ``--work-dir`` (default /tmp/kmi-explore)
and runs each tool as a whole child process under ``/usr/bin/time -v`` (wall time, peak RSS):

- ``compare``: scikit-learn's digits (1,797), MNIST test (10,000) and MNIST train (60,000)
  written as one PNG per image in class sub-folders. ``kmi explore`` (its defaults: ``l2``
  features, K chosen by the elbow)
  and clustimage (``Clustimage().fit_transform`` on the file list: its defaults, and with
  ``dim`` set to the images' own size, and at that size with its K fixed to the one kmi
  picked in the same pair, ``same-k``; ``--clustimage`` picks), each bounded by ``--timeout``,
  and with ``--floor`` the least any Python tool does on the folder (start, decode every file,
  nothing else), alone and with scikit-learn and matplotlib imported,
  ``--pairs`` times in turn (A B A B ...). Reported: wall seconds, peak RSS, the K each picked,
  and the accuracy at that K (majority naming = purity, and one-to-one = Hungarian) against the
  sub-folder labels; with several pairs, each run's medians and the median of the pair-by-pair
  ratios of kmi's wall time to each clustimage run's.
- ``duplicates``: 2,000 MNIST images plus 300 planted copies of 300 others (100 exact under
  other names, 100 re-encoded as JPEG quality 75, 100 resized x4 up and back down, bicubic);
  recall of the planted pairs and the share of reported pairs that were not planted.
- ``outliers``: 2,000 MNIST images plus 20 foreign ones (5 rendered letters, 5 textures, 5
  noise images, 5 blank images of 5 gray levels); how many of the 20 are among the 20 highest
  outlier scores.
- ``scale``: 100,000 MNIST-based images (train + test + 30,000 shifted copies) in a flat
  folder; ``kmi explore`` wall time and peak RSS, then the time headless Chromium takes to load
  its index.html, with any console errors.

    python benchmarks/bench_explore.py compare duplicates outliers scale --out explore.json
    python benchmarks/bench_explore.py compare --folders mnist-test --clustimage own --pairs 3
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "mnist"
PYTHON = sys.executable
KMI = str(Path(PYTHON).with_name("kmi"))


def _mnist(split):
    from kmeans_imagery.datasets import load_dataset

    data = load_dataset("mnist", data_dir=MNIST)
    if split == "test":
        return data.test_images, data.test_labels
    return data.train_images, data.train_labels


def _save_png(image, path):
    from PIL import Image

    Image.fromarray(image).save(path, optimize=False)


def write_class_folders(images, labels, dest):
    """One PNG per image in a sub-folder named after its label (skipped when already there)."""
    dest = Path(dest)
    done = dest / ".complete"
    if done.exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    for label in np.unique(labels):
        (dest / str(label)).mkdir(parents=True)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        _save_png(image, dest / str(label) / f"{i:06d}.png")
    done.touch()
    return dest


def planted_duplicates(dest, seed=0):
    """2,000 MNIST test images + 300 planted copies; returns the planted (original, copy) names."""
    from PIL import Image

    images, _ = _mnist("test")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), 2000, replace=False)
    dest = Path(dest)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    names = []
    for i in pick:
        names.append(f"img-{i:05d}.png")
        _save_png(images[i], dest / names[-1])
    originals = rng.choice(len(names), 300, replace=False)
    planted = []
    for n, o in enumerate(originals):
        image = Image.fromarray(images[pick[o]])
        if n < 100:
            copy = f"exact-{n:03d}.png"
            image.save(dest / copy)
        elif n < 200:
            copy = f"jpeg-{n:03d}.jpg"
            image.save(dest / copy, quality=75)
        else:
            copy = f"resized-{n:03d}.png"
            image.resize((112, 112), Image.BICUBIC).resize((28, 28), Image.BICUBIC).save(dest / copy)
        planted.append((names[o], copy))
    return planted


def foreign_images(rng):
    """20 images that are not digits: letters, textures, noise, blanks (28 x 28 uint8)."""
    from PIL import Image, ImageDraw, ImageFont

    out = []
    try:
        font = ImageFont.truetype("DejaVuSans-Bold.ttf", 22)
    except OSError:
        font = ImageFont.load_default(22)
    for letter in "AKMWR":
        canvas = Image.new("L", (28, 28), 0)
        ImageDraw.Draw(canvas).text((14, 14), letter, fill=255, font=font, anchor="mm")
        out.append(np.asarray(canvas))
    yy, xx = np.mgrid[:28, :28]
    out += [((np.sin(xx / 1.5) > 0) * 255).astype(np.uint8),               # stripes
            (((xx // 4 + yy // 4) % 2) * 255).astype(np.uint8),             # checkerboard
            (127 + 127 * np.sin((xx + yy) / 2.0)).astype(np.uint8),         # diagonal grating
            (255 * xx / 27).astype(np.uint8),                               # ramp
            (((xx - 14) ** 2 + (yy - 14) ** 2) % 40 * 6).astype(np.uint8)]  # rings
    out += [rng.integers(0, 256, (28, 28), dtype=np.uint8),
            np.clip(rng.normal(128, 60, (28, 28)), 0, 255).astype(np.uint8),
            ((rng.random((28, 28)) < 0.5) * 255).astype(np.uint8),
            ((rng.random((28, 28)) < 0.1) * 255).astype(np.uint8),
            rng.integers(0, 128, (28, 28), dtype=np.uint8)]
    out += [np.full((28, 28), level, np.uint8) for level in (0, 64, 128, 192, 255)]
    return out


def planted_outliers(dest, seed=0):
    """2,000 MNIST test images + 20 foreign images; returns the foreign file names."""
    images, _ = _mnist("test")
    rng = np.random.default_rng(seed)
    dest = Path(dest)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for i in rng.choice(len(images), 2000, replace=False):
        _save_png(images[i], dest / f"img-{i:05d}.png")
    names = []
    for n, image in enumerate(foreign_images(rng)):
        names.append(f"foreign-{n:02d}.png")
        _save_png(image, dest / names[-1])
    return names


# ----------------------------------------------------------------------------------------------
# Running tools as measured child processes


def timed(command, timeout, memory_cap=None):
    """Run a command under /usr/bin/time -v; return wall seconds, peak RSS MiB, status, output.

    ``memory_cap`` (bytes) bounds the child's address space with ``prlimit``, so that a tool
    running out of memory fails with its own MemoryError instead of waking the kernel's OOM
    killer on a shared machine.
    """
    prefix = ["prlimit", f"--as={memory_cap}"] if memory_cap else []
    full = ["/usr/bin/time", "-v", *prefix, *command]
    start = time.perf_counter()
    # A session of its own, so that a timeout stops the tool itself, not only /usr/bin/time.
    process = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return {"seconds": time.perf_counter() - start, "rss_mib": None,
                "status": f"stopped after {timeout} s", "output": ""}
    done = subprocess.CompletedProcess(full, process.returncode, stdout, stderr)
    wall = time.perf_counter() - start
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    clock = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", done.stderr)
    if clock:
        parts = [float(p) for p in clock.group(1).split(":")]
        wall = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    status = "ok" if done.returncode == 0 else f"exit {done.returncode}"
    if "MemoryError" in done.stderr or "Unable to allocate" in done.stderr:
        status = f"out of memory (address space capped at {memory_cap / 2**30:.0f} GiB)"
    return {"seconds": wall, "rss_mib": int(rss.group(1)) / 1024 if rss else None,
            "status": status, "output": (done.stdout + done.stderr)[-2000:]}


def _scores(paths, clusters):
    """K found, and majority / one-to-one accuracy against the parent folder names."""
    from kmeans_imagery.metrics import hungarian_accuracy, purity

    truth = np.array([Path(p).parent.name for p in paths])
    clusters = np.asarray(clusters)
    return {"k": int(len(np.unique(clusters))), "majority": purity(truth, clusters),
            "hungarian": hungarian_accuracy(truth, clusters)}


def run_kmi(folder, out, timeout, *extra):
    result = timed([KMI, "explore", str(folder), "--out", str(out), "--force", *extra], timeout)
    if result["status"] == "ok":
        import csv

        with open(Path(out) / "clusters.csv", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        result.update(_scores([r["path"] for r in rows], [int(r["cluster"]) for r in rows]))
    return result


def run_clustimage(folder, out, timeout, dim=None, k=None, memory_cap=10 * 2**30):
    command = [PYTHON, __file__, "_clustimage", str(folder), str(out)]
    if dim is not None:
        command += ["--dim", f"{dim[0]}x{dim[1]}"]
    if k is not None:
        command += ["--k", str(k)]
    result = timed(command, timeout, memory_cap)
    if result["status"] == "ok":
        found = json.loads(Path(out).read_text())
        result.update(_scores(found["paths"], found["labels"]))
    return result


def _clustimage_child(folder, out, dim, k):
    """Child process: clustimage on every PNG of a folder, labels written to ``out``."""
    from clustimage import Clustimage

    paths = sorted(str(p) for p in Path(folder).rglob("*.png"))
    params = {"verbose": "error"}
    if dim is not None:
        params["dim"] = dim
    # A K of its own choosing, or the one given: its silhouette search over K = k..k.
    search = {} if k is None else {"min_clust": k, "max_clust": k}
    results = Clustimage(**params).fit_transform(paths, **search)
    # clustimage keeps its own order of the files it read: map them back by path.
    Path(out).write_text(json.dumps({"paths": [str(p) for p in results["pathnames"]],
                                     "labels": [int(v) for v in results["labels"]]}))


def run_floor(folder, timeout, imports=False):
    command = [PYTHON, __file__, "_floor", str(folder)] + (["--floor-imports"] if imports else [])
    return timed(command, timeout)


def _floor_child(folder, imports):
    """Child process: the least an image-clustering tool in Python does: start, list the PNG
    files, decode each to a gray array (in threads); with ``imports``, also import what a
    scikit-learn estimator and a matplotlib figure need. No clustering, nothing written."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    def gray(path):
        with Image.open(path) as image:
            return np.asarray(image.convert("L"))

    paths = sorted(Path(folder).rglob("*.png"))
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        images = list(pool.map(gray, paths, chunksize=64))
    if imports:
        import matplotlib.pyplot  # noqa: F401
        import sklearn.base  # noqa: F401
    print(len(images), "images")


def compare(work, timeout, sizes, kmi_features=("raw",), clustimage=("defaults", "own"), pairs=1,
            floor=False):
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    folders = {
        "digits": lambda: write_class_folders(np.round(digits.images * 255 / 16).astype(np.uint8),
                                              digits.target, work / "digits"),
        "mnist-test": lambda: write_class_folders(*_mnist("test"), work / "mnist-test"),
        "mnist-train": lambda: write_class_folders(*_mnist("train"), work / "mnist-train"),
    }
    rows = []
    for name in sizes:
        folder = folders[name]()
        own = Image.open(next(folder.rglob("*.png"))).size[::-1]
        runs = [(f"kmi explore --features {spec}", run_kmi,
                 (folder, work / f"kmi-{name}-{spec}", timeout, "--features", spec), {})
                for spec in kmi_features]
        if "defaults" in clustimage:
            runs.append(("clustimage defaults", run_clustimage,
                         (folder, work / f"ci-{name}.json", timeout), {}))
        if "own" in clustimage:
            runs.append((f"clustimage dim={own[0]}x{own[1]}", run_clustimage,
                         (folder, work / f"ci-own-{name}.json", timeout), {"dim": own}))
        if "same-k" in clustimage:
            runs.append((f"clustimage dim={own[0]}x{own[1]} at kmi's K", run_clustimage,
                         (folder, work / f"ci-same-k-{name}.json", timeout),
                         {"dim": own, "k": "kmi's"}))
        if floor:
            runs += [("floor: decode the files", run_floor, (folder, timeout), {}),
                     ("floor: decode, import scikit-learn and matplotlib", run_floor,
                      (folder, timeout), {"imports": True})]
        done = []
        for pair in range(pairs):
            for peer, run, run_args, run_kwargs in runs:
                if run_kwargs.get("k") == "kmi's":
                    # The K of this turn's first run: kmi's.
                    run_kwargs = {**run_kwargs, "k": done[pair * len(runs)].get("k")}
                result = run(*run_args, **run_kwargs)
                result.update({"folder": name, "peer": peer, "pair": pair})
                done.append(result)
                print(json.dumps({k: v for k, v in result.items() if k != "output"}), flush=True)
        rows += done
        if pairs > 1:
            summary = _pair_summary(name, done, [peer for peer, *_ in runs])
            rows.append(summary)
            print(json.dumps(summary), flush=True)
    return rows


def _pair_summary(folder, done, peers):
    """Each run's median wall time and peak RSS, and the median pair-by-pair ratio of the first
    run's (kmi's) wall time to each other run's."""
    def series(peer, key):
        return [r[key] for r in done if r["peer"] == peer and r["status"] == "ok"]

    out = {"folder": folder, "summary": {}}
    for peer in peers:
        wall, rss = series(peer, "seconds"), series(peer, "rss_mib")
        out["summary"][peer] = {"runs": len(wall),
                                "median_seconds": float(np.median(wall)) if wall else None,
                                "median_rss_mib": float(np.median(rss)) if rss else None}
        if peer != peers[0] and wall and len(wall) == len(series(peers[0], "seconds")):
            ratios = np.array(series(peers[0], "seconds")) / np.array(wall)
            out["summary"][peer]["median_ratio_first_to_this"] = float(np.median(ratios))
    return out


def _read_csv(path):
    import csv

    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def duplicates_experiment(work, timeout):
    planted = planted_duplicates(work / "duplicates")
    result = timed([KMI, "explore", str(work / "duplicates"), "--out", str(work / "kmi-duplicates"),
                    "--force"], timeout)
    groups = {}
    for row in _read_csv(work / "kmi-duplicates" / "duplicates.csv"):
        groups.setdefault(row["group"], []).append(Path(row["path"]).name)
    reported = {frozenset((a, b)) for members in groups.values()
                for i, a in enumerate(members) for b in members[i + 1:]}
    wanted = {frozenset(pair) for pair in planted}
    found = {kind: sum(frozenset(p) in reported for p in planted if p[1].startswith(kind))
             for kind in ("exact", "jpeg", "resized")}
    return {"seconds": result["seconds"], "rss_mib": result["rss_mib"], "status": result["status"],
            "planted_pairs": len(wanted), "reported_pairs": len(reported), "found": found,
            "recall": len(wanted & reported) / len(wanted),
            "not_planted_share": len(reported - wanted) / max(1, len(reported)),
            "not_planted": sorted(sorted(p) for p in reported - wanted)[:20]}


def outliers_experiment(work, timeout, features=("l2", "raw")):
    foreign = set(planted_outliers(work / "outliers"))
    out = {}
    for spec in features:
        dest = work / f"kmi-outliers-{spec}"
        result = timed([KMI, "explore", str(work / "outliers"), "--out", str(dest), "--force",
                        "--features", spec], timeout)
        top = [Path(r["path"]).name for r in _read_csv(dest / "outliers.csv")[:20]]
        out[spec] = {"seconds": result["seconds"], "status": result["status"],
                     "foreign_in_top20": sum(name in foreign for name in top),
                     "missed": sorted(foreign - set(top))}
    return out


def scale_experiment(work, timeout):
    folder = work / "mnist-100k"
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        train, _ = _mnist("train")
        test, _ = _mnist("test")
        rng = np.random.default_rng(0)
        shifted = np.stack([np.roll(image, tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
                            for image in train[:30000]])
        for i, image in enumerate(np.concatenate([train, test, shifted])):
            _save_png(image, folder / f"{i:06d}.png")
        (folder / ".complete").touch()
    out = work / "kmi-100k"
    result = timed([KMI, "explore", str(folder), "--out", str(out), "--force"], timeout)
    result.pop("output")
    result["page"] = page_load(out / "index.html", work / "chromium-profile")
    result["page_bytes"] = (out / "index.html").stat().st_size
    return result


def page_load(page, profile):
    """Headless Chromium: wall seconds to load and dump the page, its load event time, errors."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return {"status": "chromium not installed"}
    probe = page.with_name("probe.html")
    script = ("<script>window.addEventListener('load', function () {"
              "document.body.dataset.loadMs = String(performance.now()); });</script>")
    probe.write_text(page.read_text("utf-8").replace("</body>", script + "</body>"), "utf-8")
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom",
               probe.as_uri()]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - start
    load = re.search(r'data-load-ms="([\d.]+)"', done.stdout)
    probe.unlink()
    return {"wall_seconds": wall, "load_event_ms": float(load.group(1)) if load else None,
            "console_errors": [line for line in done.stderr.splitlines() if ":CONSOLE" in line]}


EXPERIMENTS = {"duplicates": duplicates_experiment, "outliers": outliers_experiment,
               "scale": scale_experiment}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiments", nargs="+")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/kmi-explore"))
    parser.add_argument("--timeout", type=int, default=1800, help="Seconds per tool run.")
    parser.add_argument("--folders", default="digits,mnist-test,mnist-train")
    parser.add_argument("--kmi-features", default="l2", help="kmi explore --features runs.")
    parser.add_argument("--clustimage", default="defaults,own",
                        help="compare: clustimage runs, 'defaults', 'own' (the images' own "
                             "size), 'same-k' (own size, kmi's K), comma-separated; 'none' for "
                             "kmi runs only.")
    parser.add_argument("--pairs", type=int, default=1,
                        help="compare: times every run is made, in turn (A B A B ...).")
    parser.add_argument("--floor", action="store_true",
                        help="compare: also time the least any Python tool does (start, decode "
                             "every file), alone and with scikit-learn and matplotlib imported.")
    parser.add_argument("--floor-imports", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dim", help="(child only) clustimage image size HxW")
    parser.add_argument("--k", type=int, help="(child only) clustimage's K")
    parser.add_argument("--out", type=Path, help="JSON file for the results.")
    args = parser.parse_args(argv)
    if args.experiments[0] == "_clustimage":
        dim = None if args.dim is None else tuple(int(v) for v in args.dim.split("x"))
        _clustimage_child(args.experiments[1], args.experiments[2], dim, args.k)
        return
    if args.experiments[0] == "_floor":
        _floor_child(args.experiments[1], args.floor_imports)
        return
    args.work_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.experiments:
        if name == "compare":
            results[name] = compare(args.work_dir, args.timeout, args.folders.split(","),
                                    args.kmi_features.split(","), args.clustimage.split(","),
                                    args.pairs, args.floor)
        else:
            results[name] = EXPERIMENTS[name](args.work_dir, args.timeout)
        print(json.dumps({name: results[name]}, default=str)[:3000], flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
