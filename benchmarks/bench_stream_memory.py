"""Peak memory of ``kmi fit --stream`` on large inputs of every format, as the kernel counts it.

Builds (once, in ``--work``) MNIST-derived collections of ``--n`` images: each image is an MNIST
training image shifted by a seeded -2..2 pixels, so the collection is as large as asked and still
clusters like MNIST. Formats: an uncompressed ``.npy`` file, an uncompressed IDX file, a Zarr store
(``kmi convert``), and a folder of ``--folder-n`` PNG files in class sub-folders. Then runs the
whole command under ``/usr/bin/time -v`` and reports its maximum resident set size (mapped file
pages included: what ``top`` and a container limit see), its wall time, and the seconds per full
pass the fit reports.

    python benchmarks/bench_stream_memory.py --work /tmp/kmi-mem
    python benchmarks/bench_stream_memory.py --work /tmp/kmi-mem --formats zarr --n 10000000 \\
        --max-iter 1 --algorithm full
"""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
KMI = Path(sys.executable).parent / "kmi"
CHUNK = 8192


def shifted_mnist(data_dir, n, seed=0):
    """Yield (images, labels) chunks of ``n`` shifted MNIST training images."""
    from kmeans_imagery.datasets import load_dataset

    mnist = load_dataset("mnist", data_dir=data_dir)
    rng = np.random.default_rng(seed)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        index = rng.integers(0, len(mnist.train_images), m)
        images = mnist.train_images[index].copy()
        shifts = rng.integers(-2, 3, (m, 2))
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                pick = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
                images[pick] = np.roll(images[pick], (dy, dx), axis=(1, 2))
        yield images, mnist.train_labels[index]


def write_raw(path, header, chunks):
    """Write ``header`` then every chunk's bytes, to a temporary file renamed at the end."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        out.write(header)
        for images, _ in chunks:
            out.write(images.tobytes())
    tmp.replace(path)


def build(work, fmt, n, folder_n, data_dir):
    """The input of ``fmt`` in ``work``, built on first use."""
    from kmeans_imagery.datasets import convert_to_zarr, open_source

    if fmt == "npy":
        path = work / f"mnist-{n}.npy"
        if not path.exists():
            header = np.lib.format.header_data_from_array_1_0(np.empty((0, 28, 28), np.uint8))
            header["shape"] = (n, 28, 28)
            import io

            buffer = io.BytesIO()
            np.lib.format.write_array_header_1_0(buffer, header)  # magic string included
            write_raw(path, buffer.getvalue(),
                      shifted_mnist(data_dir, n))
        return path
    if fmt == "idx":
        path = work / f"mnist-{n}-idx3-ubyte"
        if not path.exists():
            header = bytes([0, 0, 0x08, 3]) + np.array([n, 28, 28], ">u4").tobytes()
            write_raw(path, header, shifted_mnist(data_dir, n))
        return path
    if fmt == "zarr":
        path = work / f"mnist-{n}.zarr"
        if not path.exists():
            source = open_source(build(work, "npy", n, folder_n, data_dir))
            convert_to_zarr(source, path, chunk_size=CHUNK)
        return path
    if fmt == "folder":
        path = work / f"mnist-{folder_n}-png"
        if not path.exists():
            from PIL import Image

            tmp = path.with_suffix(".tmp")
            for c in range(10):
                (tmp / str(c)).mkdir(parents=True, exist_ok=True)
            i = 0
            for images, labels in shifted_mnist(data_dir, folder_n):
                for image, label in zip(images, labels, strict=True):
                    Image.fromarray(image).save(tmp / str(label) / f"{i:07d}.png")
                    i += 1
            tmp.replace(path)
        return path
    raise ValueError(f"unknown format {fmt!r}")


def measure(data, out, features, max_iter, algorithm):
    """Run ``kmi fit DATA --stream`` under /usr/bin/time -v; peak RSS, wall time, pass seconds."""
    command = [str(KMI), "fit", str(data), "--stream", "--k", "256", "--out", str(out), "--force",
               "--features", features, "--algorithm", algorithm]
    if max_iter is not None:
        command += ["--max-iter", str(max_iter)]
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    pass_s = re.search(r"seconds_per_pass\D+([\d.,]+)", done.stdout)
    return {"command": " ".join(["kmi", *command[1:]]), "peak_rss_mib": round(rss_kb / 1024, 1),
            "wall_s": round(wall, 1),
            "seconds_per_pass": None if pass_s is None else float(pass_s.group(1).replace(",", ""))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", required=True, type=Path, help="Folder for the built inputs.")
    parser.add_argument("--n", type=int, default=1_000_000, help="Images in npy/idx/zarr inputs.")
    parser.add_argument("--folder-n", type=int, default=200_000, help="PNG files in the folder.")
    parser.add_argument("--formats", default="npy,idx,zarr,folder")
    parser.add_argument("--features", default="raw,pixhog")
    parser.add_argument("--max-iter", type=int, default=None,
                        help="Lloyd passes (peak memory is reached in the first pass).")
    parser.add_argument("--algorithm", default="minibatch", choices=["minibatch", "full"])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--json", type=Path, help="Also write the rows here.")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for fmt in args.formats.split(","):
        started = time.perf_counter()
        data = build(args.work, fmt, args.n, args.folder_n, args.data_dir)
        print(f"{fmt}: {data} ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        for features in args.features.split(","):
            row = {"format": fmt, "features": features,
                   **measure(data, args.work / "model.kmi", features, args.max_iter,
                             args.algorithm)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
