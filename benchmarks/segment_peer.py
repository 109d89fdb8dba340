"""The script people write today to classify a large raster: the peer of ``kmi segment`` in bench_segment.py.

rasterio reads 10,000 randomly sampled pixels, scikit-learn's KMeans fits them, and every block of the
raster is classified with numpy (nearest centroid) and written to a DEFLATE-compressed GeoTIFF.

    python benchmarks/segment_peer.py RASTER OUT.tif K
"""

import sys

import numpy as np
import rasterio
from sklearn.cluster import KMeans


def main(path, out, k):
    with rasterio.open(path) as src:
        rng = np.random.default_rng(0)
        rows = rng.integers(0, src.height, 10_000)
        cols = rng.integers(0, src.width, 10_000)
        xy = [src.xy(r, c) for r, c in zip(rows, cols, strict=True)]
        sample = np.array(list(src.sample(xy)), dtype=np.float32)
        centers = KMeans(n_clusters=k, random_state=0).fit(sample).cluster_centers_.astype(np.float32)
        c_sq = (centers**2).sum(axis=1)
        profile = src.profile
        profile.update(count=1, dtype="uint8", compress="deflate", nodata=None)
        with rasterio.open(out, "w", **profile) as dst:
            for _, window in src.block_windows(1):
                block = src.read(window=window)
                X = block.reshape(block.shape[0], -1).T.astype(np.float32)
                labels = ((X**2).sum(axis=1)[:, None] - 2 * X @ centers.T + c_sq).argmin(axis=1)
                dst.write(labels.reshape(block.shape[1:]).astype(np.uint8), 1, window=window)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
