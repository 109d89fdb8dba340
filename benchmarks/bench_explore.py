"""``kmi explore`` against clustimage, and its duplicate, outlier and scale checks.

Every experiment writes its folders of PNG files into ``--work-dir`` (default /tmp/kmi-explore)
and runs each tool as a whole child process under ``/usr/bin/time -v`` (wall time, peak RSS):

- ``compare``: scikit-learn's digits (1,797), MNIST test (10,000) and MNIST train (60,000)
  written as one PNG per image in class sub-folders. ``kmi explore`` (K chosen by the elbow)
  and clustimage (``Clustimage().fit_transform`` on the file list: its defaults, then with
  ``dim`` set to the images' own size), each bounded by ``--timeout``. Reported: wall seconds,
  peak RSS, the K each picked, and the accuracy at that K (majority naming = purity, and
  one-to-one = Hungarian) against the sub-folder labels.
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
"""

import argparse
import json
import os
import re
import shutil
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
