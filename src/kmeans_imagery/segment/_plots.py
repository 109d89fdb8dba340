"""Figures of a segmentation: the scene, its class map, class spectra and class areas.

Each ``plot_*`` draws into ``ax`` (a new figure when None) and returns the axes, as
:mod:`kmeans_imagery.plots` does; matplotlib is imported inside the functions.
"""

import colorsys

import numpy as np

from ..plots import _new_axes

__all__ = ["class_colours", "plot_class_areas", "plot_class_map", "plot_composite", "plot_spectra",
           "stretch"]


def class_colours(n_classes):
    """Distinct colours for classes 0..n-1, uint8 of shape (n, 3): hues a golden angle apart."""
    hues = (np.arange(n_classes) * 0.618033988749895) % 1.0
    levels = [(0.95, 0.75), (0.6, 0.9), (0.85, 0.55)]  # vary saturation/value too past a few classes
    return np.array([[round(255 * v) for v in colorsys.hsv_to_rgb(h, *levels[i % 3])]
                     for i, h in enumerate(hues)], dtype=np.uint8).reshape(n_classes, 3)


def stretch(values, valid):
    """Band values to [0, 1] for display: each band's 2nd to 98th percentile over valid pixels."""
    out = np.zeros(values.shape, dtype=np.float32)
    if valid.any():
        pixels = values[valid].astype(np.float64)
        low, high = np.percentile(pixels, [2, 98], axis=0)
        out = np.clip((values - low) / np.where(high > low, high - low, 1), 0, 1).astype(np.float32)
    out[~valid] = 1.0  # nodata as white, like the figure face
    return out


def plot_composite(rgb, ax=None, *, title="Scene (colour composite)"):
    """Draw a stretched composite, an array of shape (rows, cols, 3) or (rows, cols) in [0, 1]."""
    if ax is None:
        ax = _new_axes((6, 6))
    ax.imshow(rgb, cmap="gray" if rgb.ndim == 2 else None, interpolation="nearest")
    ax.set_title(title)
    ax.set_axis_off()
    return ax


def plot_class_map(classes, colours, ax=None, *, title="Classes"):
    """Draw a class map (classes 0..K-1, -1 = nodata in white) in the given colours."""
    if ax is None:
        ax = _new_axes((6, 6))
    palette = np.vstack([colours, [[255, 255, 255]]])
    ax.imshow(palette[np.where(classes < 0, len(colours), classes)], interpolation="nearest")
    ax.set_title(title)
    ax.set_axis_off()
    return ax


def plot_spectra(means, colours, ax=None, *, bands=None, wavelengths=None, wavelength_unit=None):
    """Mean value per band of each class, as lines over the band numbers or their wavelengths.

    Parameters
    ----------
    means : ndarray of shape (n_classes, n_bands)
    colours : ndarray of shape (n_classes, 3), uint8
    ax : matplotlib Axes, optional
    bands : sequence of int, optional
        The bands' numbers in their file (default 1 to n_bands).
    wavelengths : sequence of float, optional
        The bands' centre wavelengths, drawn instead of their numbers.
    wavelength_unit : str, optional

    Returns
    -------
    matplotlib Axes
    """
    from matplotlib.ticker import MaxNLocator

    if ax is None:
        ax = _new_axes((8, 4.5))
    if wavelengths is not None:
        x = np.asarray(wavelengths, dtype=np.float64)
        ax.set_xlabel(f"wavelength ({wavelength_unit})" if wavelength_unit else "wavelength")
    else:
        x = np.arange(1, means.shape[1] + 1) if bands is None else np.asarray(bands)
        ax.set_xlabel("band")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for c, mean in enumerate(means):
        ax.plot(x, mean, color=colours[c] / 255, marker="o" if len(x) <= 12 else None, lw=1.3,
                label=f"class {c + 1}")
    ax.set_ylabel("mean value")
    ax.set_title("Class spectra (signatures)")
    ax.grid(True, alpha=0.3)
    if len(means) <= 20:
        ax.legend(fontsize=7, ncols=2)
    return ax


#: Larger units of square metres, largest first: (symbol, square metres).
_METRE_AREAS = (("km²", 1e6), ("ha", 1e4))


def plot_class_areas(counts, colours, ax=None, *, pixel_area=None, area_unit=None):
    """Horizontal bars: pixels (or area, when ``pixel_area`` is given) of each class.

    Parameters
    ----------
    counts : ndarray of shape (n_classes,)
        Pixels per class.
    colours : ndarray of shape (n_classes, 3), uint8
    ax : matplotlib Axes, optional
    pixel_area : float, optional
        Area of one pixel in square ``area_unit``.
    area_unit : str, optional
        The map's linear unit; areas in metres are drawn in hectares or square kilometres once
        the largest class reaches one.

    Returns
    -------
    matplotlib Axes
    """
    if ax is None:
        ax = _new_axes((6, max(2.5, 0.3 * len(counts) + 1)))
    sizes = np.asarray(counts, dtype=np.float64)
    label = "pixels"
    if pixel_area is not None:
        sizes = sizes * pixel_area
        label = f"area ({area_unit}²)"
        if area_unit == "m":
            for symbol, square_metres in _METRE_AREAS:
                if sizes.max(initial=0) >= square_metres:
                    sizes, label = sizes / square_metres, f"area ({symbol})"
                    break
    ax.barh(np.arange(1, len(sizes) + 1), sizes, color=colours / 255)
    ax.invert_yaxis()
    ax.set_xlabel(label)
    ax.set_ylabel("class")
    ax.set_title("Class areas")
    return ax
