"""Build N realistic digit images (MNIST, randomly distorted) straight into a Zarr store.

Each image is a random MNIST training image, rotated by up to ``--rotate`` degrees, shifted by
up to ``--shift`` pixels and elastically distorted (Simard et al. 2003: a random displacement
field smoothed by a Gaussian of ``--sigma`` pixels, scaled by ``--alpha``), resampled bilinearly;
its label is kept. Images are generated and written one chunk at a time (memory: one chunk),
each chunk from its own seed, so the store is the same for the same arguments.

    python benchmarks/make_scale_data.py --n 1000000 --out /tmp/scale/mnist-1m.zarr

Needs the scale extra (zarr); 1M images take about 0.8 GB before compression.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

from kmeans_imagery.datasets import DEFAULT_CHUNK, Batch, ImageSource, convert_to_zarr, load_dataset

REPO = Path(__file__).resolve().parents[1]


class DistortedMnist(ImageSource):
    """``n`` distorted MNIST images, generated chunk by chunk (front to back only)."""

    random_access = False

    def __init__(self, images, labels, n, *, seed, rotate, shift, alpha, sigma):
        super().__init__()
        rng = np.random.default_rng(seed)
        self._images, self._seed = images, seed
        self._index = rng.integers(0, len(images), n)
        self._fields = elastic_fields(rng, _FIELD_POOL, images.shape[1:], alpha, sigma)
        self._rotate, self._shift = rotate, shift
        self._labels_cache = labels[self._index]
        self.name = f"mnist-distorted-{n}"
        self.n_images = n
        self.image_shape = tuple(images.shape[1:])

    def iter_batches(self, batch_size, *, start=0, stop=None):
        stop = self.n_images if stop is None else stop
        for s in range(start, stop, batch_size):
            e = min(s + batch_size, stop)
            rng = np.random.default_rng([self._seed, s])
            images = distort(self._images[self._index[s:e]], rng, self._fields, self._rotate,
                             self._shift)
            yield Batch(s, images, self._labels_cache[s:e])


#: Smooth displacement fields drawn once; each image takes one, with random signs and
#: transposition (8 variants each), which costs an index instead of a Gaussian filter.
_FIELD_POOL = 4096


def elastic_fields(rng, count, shape, alpha, sigma):
    """``count`` elastic displacement fields (Simard et al. 2003): shape (count, 2, H, W)."""
    field = rng.uniform(-1, 1, (count, 2, *shape)).astype(np.float32)
    return gaussian_filter(field, sigma=(0, 0, sigma, sigma), mode="constant") * np.float32(alpha)


def distort(images, rng, fields, rotate, shift):
    """Rotate, shift and elastically distort a stack of images (n, H, W) uint8, vectorised.

    The images are stacked into one tall image with a zero border each, so one 2-D bilinear
    ``map_coordinates`` call resamples them all and a point outside an image reads zero.
    """
    n, h, w = images.shape
    angle = np.deg2rad(rng.uniform(-rotate, rotate, n)).astype(np.float32)[:, None, None]
    dy, dx = rng.uniform(-shift, shift, (2, n, 1, 1)).astype(np.float32)
    pick = rng.integers(0, len(fields), n)
    signs = rng.choice(np.float32([-1, 1]), (2, n, 1, 1))
    fy, fx = fields[pick, 0] * signs[0], fields[pick, 1] * signs[1]
    flip = rng.random(n) < 0.5
    fy[flip], fx[flip] = fx[flip].transpose(0, 2, 1), fy[flip].transpose(0, 2, 1)
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float32) - (h - 1) / 2,
                         np.arange(w, dtype=np.float32) - (w - 1) / 2, indexing="ij")
    cos, sin = np.cos(angle), np.sin(angle)
    # +1: the zero border; clipping onto it makes every outside point read zero.
    src_y = np.clip(cos * yy - sin * xx + (h - 1) / 2 + dy + fy + 1, 0, h + 1)
    src_x = np.clip(sin * yy + cos * xx + (w - 1) / 2 + dx + fx + 1, 0, w + 1)
    src_y += (np.arange(n, dtype=np.float32) * (h + 2))[:, None, None]
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1))).astype(np.float32)
    out = map_coordinates(padded.reshape(n * (h + 2), w + 2), [src_y, src_x], order=1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, required=True, help="Number of images.")
    parser.add_argument("--out", required=True, help="Zarr store to write (e.g. /tmp/x.zarr).")
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rotate", type=float, default=10.0, help="Max rotation, degrees.")
    parser.add_argument("--shift", type=float, default=2.0, help="Max shift, pixels.")
    parser.add_argument("--alpha", type=float, default=34.0, help="Elastic strength, pixels.")
    parser.add_argument("--sigma", type=float, default=4.0, help="Elastic smoothness, pixels.")
    parser.add_argument("--force", action="store_true", help="Replace an existing store.")
    args = parser.parse_args(argv)
    mnist = load_dataset("mnist", data_dir=args.data_dir)
    source = DistortedMnist(mnist.train_images, mnist.train_labels, args.n, seed=args.seed,
                            rotate=args.rotate, shift=args.shift, alpha=args.alpha,
                            sigma=args.sigma)
    start = time.perf_counter()
    store = convert_to_zarr(source, args.out, chunk_size=args.chunk_size, force=args.force)
    print(f"wrote {store.n_images} images to {args.out} in {time.perf_counter() - start:.1f} s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
