"""Label sheets: each cluster's most central images exported for a person to label, read back.

A sheet is ``labels.csv`` (the image's position and, for image files, its path; its cluster and
distance to the centroid; an empty ``label`` column) and ``sheet-NNN.png`` contact sheets. The
filled CSV, as a spreadsheet saves it, names the clusters of ``kmi fit DATA --labels
labels.csv`` (:func:`read_label_sheet`), matched by path where the images are files (by name,
``DATA#train:12``, where they are not), or those of the model it was made from, without fitting
again (``kmi name``, :func:`name_from_sheet`).
"""

import codecs
import csv
import io
import os
import re
import unicodedata
from pathlib import Path

import numpy as np

from .errors import KMIError

__all__ = ["SHEET_COLUMNS", "name_from_sheet", "read_label_sheet", "read_sheet_rows",
           "write_label_sheet"]


#: The columns of ``labels.csv``.
SHEET_COLUMNS = ("index", "path", "cluster", "distance", "label")
#: Separators a spreadsheet saves CSV with: the one whose header has the columns wins.
_SEPARATORS = (",", ";", "\t", "|")
#: A label read back as a whole number, without sign or zeros that the number would lose.
_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")


def write_label_sheet(model, source, out_dir, *, per_cluster=5, clusters_per_page=32):
    """Export, for each cluster, the images nearest its centroid for a person to label.

    Writes ``labels.csv`` (position of the image in the source; its file, or for images without
    files its name as ``kmi predict`` writes it, ``DATA#train:12`` say; its cluster, distance to
    the centroid, and an empty ``label`` column to fill in) and
    ``sheet-NNN.png`` contact sheets (one row per cluster: its centroid, then its images in the
    CSV's order). The filled CSV names the clusters of ``kmi fit ... --labels labels.csv``.

    Parameters
    ----------
    model : ClusterClassifier
        Fitted, with an ``image_shape_``.
    source : ImageSource
        The images to choose from, in the model's size and colour (read in one pass).
    out_dir : path-like
        The folder to write into (created; an existing folder with files in it is an error).
    per_cluster : int, default=5
        Images per cluster.
    clusters_per_page : int, default=32
        Clusters (rows) per contact sheet.

    Returns
    -------
    dict of str to Path
        ``"csv"`` and one entry per sheet page.

    See Also
    --------
    read_label_sheet : Reads the filled sheet back.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery import ClusterClassifier
    >>> from kmeans_imagery.datasets import open_source
    >>> from kmeans_imagery.label_sheets import write_label_sheet
    >>> source = open_source("digits")
    >>> digits = source.read_all()
    >>> model = ClusterClassifier(n_clusters=4, random_state=0).fit(digits.images, digits.labels)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     written = write_label_sheet(model, source, Path(folder) / "sheet", per_cluster=3)
    ...     rows = written["csv"].read_text().splitlines()
    >>> sorted(written), len(rows), rows[0]  # a header, then 3 images for each of 4 clusters
    (['csv', 'sheet-001'], 13, 'index,path,cluster,distance,label')
    >>> rows[1]  # the bundled digits have no files: the image's name, as kmi predict writes it
    '609,bundled#train:609,0,1.23192,'
    """
    # Imported here: kmeans_imagery.fit reads sheets without loading what writes them.
    from . import plots
    from .labeling import nearest_members
    from .outputs import atomic_text_file, centroid_images, member_images, prepare_out_dir

    members = nearest_members(model, source, per_cluster)
    out = prepare_out_dir(out_dir)  # once the images are read: a bad input leaves no folder
    k = len(members.indices)
    written = {"csv": out / "labels.csv"}
    with atomic_text_file(written["csv"]) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(SHEET_COLUMNS)
        for cluster in range(k):
            # Images without files are named as kmi predict and explore name them
            # (DATA#train:12): a sheet then finds them in either split, or in both.
            names = ([str(p) for p in members.paths[cluster]] if members.paths is not None
                     else source.image_names(members.indices[cluster]))
            for index, name, distance in zip(members.indices[cluster], names,
                                             members.distances[cluster], strict=True):
                writer.writerow([int(index), name, cluster, f"{distance:.6g}", ""])
    centres = centroid_images(model)
    for page, first in enumerate(range(0, k, clusters_per_page), start=1):
        rows = np.arange(first, min(first + clusters_per_page, k))
        ax = plots.plot_cluster_members(centres[rows], member_images(members, rows),
                                        cluster_ids=rows)
        written[f"sheet-{page:03d}"] = plots.save_png(ax, out / f"sheet-{page:03d}.png")
    # A contact sheet of an earlier, longer sheet in the folder would pass for one of this one.
    pages = {path.name for path in written.values()}
    for stale in out.glob("sheet-*.png"):
        if re.fullmatch(r"sheet-\d{3,}\.png", stale.name) and stale.name not in pages:
            stale.unlink()
    return written


def name_from_sheet(model, sheet, source):
    """Name a fitted model's clusters from a filled label sheet, without fitting again.

    Each labelled image of the sheet votes for its label in the cluster the model puts it in;
    a cluster is named by its majority, and a cluster without votes takes the name of the
    nearest named centroid (:func:`~kmeans_imagery.labeling.name_from_clusters`). The
    clusters themselves do not change.

    Parameters
    ----------
    model : ClusterClassifier
        Fitted; renamed in place.
    sheet : path-like
        A filled ``labels.csv`` (:func:`write_label_sheet`, any rows labelled).
    source : ImageSource
        The images the sheet refers to, in the model's colour and size.

    Returns
    -------
    model : ClusterClassifier
        The same model, with new ``classes_`` and ``cluster_labels_``.
    n_labelled : int
        The labelled images that named it.

    Raises
    ------
    KMIError
        For a sheet that cannot be read or refers to images the source lacks, or images not
        of the model's shape.

    Examples
    --------
    An unlabelled model of the digits; a person labels two images (a 3 and a 4) of different
    clusters, and the other clusters take the name of their nearest named neighbour:

    >>> from kmeans_imagery import ClusterClassifier
    >>> from kmeans_imagery.datasets import open_source
    >>> source = open_source("digits")
    >>> model = ClusterClassifier(n_clusters=4, random_state=0).fit(source.read_all().images, None)
    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery.label_sheets import name_from_sheet
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     sheet = Path(folder) / "labels.csv"
    ...     _ = sheet.write_text("index,label\\n0,three\\n6,four\\n")
    ...     model, n_labelled = name_from_sheet(model, sheet, source)
    >>> n_labelled, sorted(set(model.cluster_labels_.tolist()))
    (2, ['four', 'three'])
    """
    from .labeling import name_from_clusters
    from .predict import check_model_shape

    check_model_shape(model, source)
    indices, labels = read_label_sheet(sheet, source)
    named = name_from_clusters(model, model.predict_cluster(source.take(indices).images), labels)
    return named, len(labels)


def read_sheet_rows(path):
    """The filled rows of a label sheet, as ``(row, label)`` pairs (``row``: the CSV's columns).

    The sheet may come back from a spreadsheet: UTF-8 (with or without a byte-order mark, as
    "CSV UTF-8" saves it) or UTF-16 with one ("Unicode Text"); columns separated by commas,
    semicolons, tabs or bars (the header decides; a first line ``sep=;`` too), in any order and
    case, with extra columns and empty rows. A label is read without surrounding spaces and with
    each run of spaces inside it made one (Unicode NFC); a label of question marks only, or
    ``skip`` (any case), leaves its image unlabelled, as an empty cell does.

    Parameters
    ----------
    path : path-like
        The CSV, with a ``label`` column and an ``index`` or ``path`` column.

    Returns
    -------
    list of (dict, str)
        Each row whose label is filled in (its cells by lower-case column name), and that label.

    Raises
    ------
    KMIError
        For a missing or unreadable file, a sheet without ``label`` and ``index`` or ``path``
        columns (or with two of one), a label that is not UTF-8 text, or no filled label at all.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery.label_sheets import read_sheet_rows
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     sheet = Path(folder) / "labels.csv"
    ...     _ = sheet.write_text("Path;Label\\ncats/1.png; tabby  cat \\ncats/2.png;?\\n")
    ...     read_sheet_rows(sheet)
    [({'path': 'cats/1.png', 'label': ' tabby  cat '}, 'tabby cat')]
    """
    path = Path(path)
    try:
        data = path.read_bytes()
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            text = data.decode("utf-16")
        else:
            # surrogateescape: a file name that is not UTF-8 reads back as the sheet wrote it.
            text = data.decode("utf-8-sig", errors="surrogateescape")
        separator, text = _separator(text)
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
        columns = [" ".join(name.split()).casefold() for name in next(reader, [])]
        if "label" not in columns or not {"index", "path"} & set(columns):
            raise KMIError(f"{path} needs the columns 'label' and 'index' (or 'path')")
        for name in ("index", "path", "label"):
            if columns.count(name) > 1:
                raise KMIError(f"{path} has two {name!r} columns; keep one")
        filled = []
        for cells in reader:
            row = dict(zip(columns, cells, strict=False))
            label = _label(row.get("label") or "")
            if label:
                filled.append((row, label))
    except FileNotFoundError:
        raise KMIError(f"label file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise KMIError(f"{path} is not a readable CSV file ({error})") from None
    if not filled:
        raise KMIError(f"{path} has no filled-in label ('?' and 'skip' leave an image unlabelled)")
    for row, label in filled:
        try:
            label.encode()
        except UnicodeEncodeError:
            raise KMIError(f"{path}: the label {row['label']!r} is not UTF-8 text; save the sheet "
                           f"as \"CSV UTF-8\"") from None
    return filled


def _separator(text):
    """The column separator of a sheet's text, and the text without a ``sep=`` line."""
    first, _, rest = text.partition("\n")
    if first.casefold().startswith("sep=") and len(first.rstrip("\r")) == 5:
        return first[4], rest  # Excel's own hint, written by some exports
    for separator in _SEPARATORS:
        header = next(csv.reader(io.StringIO(text, newline=""), delimiter=separator), [])
        if "label" in {" ".join(name.split()).casefold() for name in header}:
            return separator, text
    return ",", text


def _label(cell):
    """A cell's label: spaces tidied, Unicode in one form; "" for an image left unlabelled."""
    label = " ".join(unicodedata.normalize("NFC", cell).split())
    return "" if label.strip("?") == "" or label.casefold() == "skip" else label


def _path_finder(paths, sheet_folder):
    """``find(text) -> position or None``: the image a sheet's path names.

    Tried in turn: the path as the source lists it; the same file, relative to the working
    folder or to the sheet's folder; and the one image whose path ends with the given parts
    (a sheet written with DATA named another way, or from another folder).
    """
    position = {str(p): i for i, p in enumerate(paths)}
    real = {os.path.realpath(p): i for i, p in enumerate(paths)}
    by_name = {}
    for i, p in enumerate(paths):
        by_name.setdefault(Path(p).name, []).append(i)

    def find(text):
        if text in position:
            return position[text]
        for base in (Path.cwd(), sheet_folder):
            found = real.get(os.path.realpath(base / text))
            if found is not None:
                return found
        parts = Path(os.path.normpath(text)).parts
        ending = [i for i in by_name.get(Path(text).name, [])
                  if Path(paths[i]).parts[-len(parts):] == parts]
        return ending[0] if len(ending) == 1 else None

    return find


def read_label_sheet(path, source):
    """Read a filled label sheet: the images whose label is filled in, and those labels.

    Parameters
    ----------
    path : path-like
        CSV with the columns ``index`` (or ``path``) and ``label``, as written by
        :func:`write_label_sheet` (or saved again by a spreadsheet: see
        :func:`read_sheet_rows`). Each row is matched by its path where it has one: a file
        of a source of files (the same file, relative to the working folder or the sheet's,
        or the one image whose path ends the same), or an image name such as
        ``DATA#test:12`` in a source without files (``DATA`` compared by its last part: a
        sheet of both splits reads with ``split="all"``); else by its index. An image given
        twice keeps one label.
    source : ImageSource
        The images the sheet refers to.

    Returns
    -------
    indices : ndarray of int64, shape (n_labelled,)
        Sorted positions of the labelled images in ``source``.
    labels : ndarray of shape (n_labelled,)
        Their labels, in the same order: integers when every filled label is a whole number
        written as one (``7``; ``007`` and ``+7`` stay text), else strings.

    Raises
    ------
    KMIError
        For a missing file or column, a path or name not of the source, a bad or
        out-of-range index, an image given two labels, or no filled label at all.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from kmeans_imagery.datasets import open_source
    >>> from kmeans_imagery.label_sheets import read_label_sheet
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     sheet = Path(folder) / "labels.csv"
    ...     _ = sheet.write_text("index,path,cluster,distance,label\\n"
    ...                          "12,,0,0.5,7\\n40,,1,0.7,\\n3,,2,0.2,1\\n")
    ...     read_label_sheet(sheet, open_source("digits"))  # the unfilled row is left out
    (array([ 3, 12]), array([1, 7]))
    """
    rows = read_sheet_rows(path)
    find = None if source.paths is None else _path_finder(source.paths, Path(path).parent)
    indices = []
    for row, _ in rows:
        text = (row.get("path") or "").strip()
        index = (row.get("index") or "").strip()
        if text and (find is not None or "#" in text):
            # A row's image file (or image name) says which image it is, whatever its index.
            found = find(text) if find is not None else _named_image(source, text)
            if found is None:
                raise KMIError(f"{path}: {text} is not an image of {source.display_name}")
        elif not index:
            what = (f"{text} has no index, and {source.display_name} has no image files" if text
                    else "a labelled row has neither an index nor a path")
            raise KMIError(f"{path}: {what}")
        elif index.isascii() and index.isdigit() and int(index) < source.n_images:
            found = int(index)
        else:
            raise KMIError(f"{path}: index {index!r} is not an image of the "
                           f"{source.n_images} images of {source.display_name}")
        indices.append(found)
    given = {}  # each image once, with its one label
    for index, (row, label) in zip(indices, rows, strict=True):
        if given.setdefault(index, label) != label:
            image = (row.get("path") or "").strip() or f"index {index}"
            raise KMIError(f"{path}: {image} is labelled both {given[index]!r} and {label!r}")
    indices = np.array(sorted(given), dtype=np.int64)
    labels = [given[i] for i in indices.tolist()]
    # Whole numbers only as written ("7", not "007" or "+7"), and only those int64 holds.
    if all(_INTEGER.fullmatch(label) and -2**63 <= int(label) < 2**63 for label in labels):
        return indices, np.array([int(label) for label in labels], dtype=np.int64)
    return indices, np.asarray(labels)


def _named_image(source, text):
    """Position of the image named ``text`` (``DATA#12``, ``DATA#test:12``, as
    :meth:`~kmeans_imagery.datasets.ImageSource.image_names` names them) in a source without
    files, or None; DATA is compared by its last part, so a folder given another way matches."""
    origin, _, tail = text.rpartition("#")
    split, _, number = tail.rpartition(":")
    if not (number.isascii() and number.isdigit()):
        return None
    offset = 0
    for part in getattr(source, "parts", [source]):  # both splits: train, then test
        if ((part.split or "") == split and int(number) < part.n_images
                and Path(part.origin or part.name).name == Path(origin).name):
            return offset + int(number)
        offset += part.n_images
    return None
