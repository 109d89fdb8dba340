"""``kmi organize``: sort image files into one folder per cluster, without ever losing a file.

The run has two steps, so that it can be interrupted at any moment and run again:

1. **Plan.** Every file of DATA is predicted (batch by batch) and given a target
   ``INTO/<folder>/<file name>``, where the folder is the cluster's label when the model has
   names (fitted with labels) and ``cluster-NN`` otherwise. A name that is taken (by a file
   already in INTO, or by another planned file) gets ``-1``, ``-2``, ... before its suffix: no
   file is ever overwritten. The plan is written to ``INTO/.kmi-organize-plan.json``
   atomically before any file is touched.
2. **Apply.** Each file is linked, copied or moved to its target. A target is only ever
   created, never replaced (hard links and the final step of a copy use ``link``, which fails
   on an existing name); a move is a link followed by removing the old name (or, across file
   systems, a complete copy followed by the removal), so a file always exists in at least one
   place. Then ``manifest.csv`` (old and new place of every file) is written atomically and
   the plan removed.

Running again after an interruption finds the plan and finishes it: files already in place are
recognised (same file for links and moves, same content for copies) and skipped.
"""

import csv
import errno
import filecmp
import json
import os
import re
import shutil
import uuid
from functools import partial
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..errors import KMIError

__all__ = ["MODES", "PLAN_NAME", "organize"]

MODES = ("link", "copy", "move")
PLAN_NAME = ".kmi-organize-plan.json"
MANIFEST_COLUMNS = ("old_path", "new_path", "cluster", "label")


def organize(model, data, into, *, mode="link", dry_run=False, skip_bad=False, batch_size=1024,
             progress=None):
    """Link, copy or move every image file of ``data`` into a folder per cluster.

    Parameters
    ----------
    model : ClusterClassifier or path-like
        A fitted model or a ``.kmi`` file.
    data : path-like
        A folder of image files (flat, or with sub-folders).
    into : path-like
        Destination folder, created if needed; files already there are never replaced.
    mode : {"link", "copy", "move"}
        Hard links (same file system; a symbolic link otherwise), copies, or moves.
    dry_run : bool
        Only plan: return the rows, touch nothing.
    skip_bad : bool
        Leave unreadable files where they are (counted) instead of stopping.
    batch_size : int
        Images decoded and predicted at once.
    progress : callable or None
        ``progress(total, description)`` returning a context manager with ``advance(n=1)``.

    Returns
    -------
    dict
        ``rows`` (one dict per file: old_path, new_path, cluster, label), ``manifest`` (its
        path, None for a dry run), ``done`` (files linked, copied or moved by this run),
        ``already`` (found in place from an interrupted run), ``resumed`` (whether a plan was
        finished), ``unreadable`` (files left where they are with ``skip_bad``).

    Raises
    ------
    KMIError
        For a bad ``mode``, a destination that refuses writes, or unreadable data.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> from kmeans_imagery import ClusterClassifier
    >>> images = np.zeros((6, 8, 8), np.uint8)
    >>> images[:3, :, :4] = 255                     # three bright on the left,
    >>> images[3:, :, 4:] = 255                     # three bright on the right
    >>> images[:, 0, 0] = np.arange(6)              # no two alike
    >>> model = ClusterClassifier(2, random_state=0).fit(images, None)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     (Path(tmp) / "photos").mkdir()
    ...     for i, image in enumerate(images):
    ...         Image.fromarray(image).save(Path(tmp) / "photos" / f"{i}.png")
    ...     done = organize(model, Path(tmp) / "photos", Path(tmp) / "sorted", mode="copy")
    ...     print(done["done"], sorted(p.name for p in (Path(tmp) / "sorted").iterdir()))
    ...     print([(Path(r["old_path"]).name, r["cluster"]) for r in done["rows"]][:4])
    6 ['cluster-0', 'cluster-1', 'manifest.csv']
    [('0.png', 0), ('1.png', 0), ('2.png', 0), ('3.png', 1)]
    """
    if mode not in MODES:
        raise KMIError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    into = Path(into)
    plan_path = into / PLAN_NAME
    resumed = plan_path.exists()
    unreadable = 0  # a resumed plan holds only the files that were read
    if resumed:
        rows = _read_plan(plan_path, mode)
    else:
        rows, unreadable = _plan(model, data, into, mode, skip_bad, batch_size, progress)
    if dry_run:
        return {"rows": rows, "manifest": None, "done": 0, "already": 0, "resumed": resumed,
                "unreadable": unreadable}
    if not resumed:
        _prepare(into, rows)
        with atomic_write(plan_path, "w", encoding="utf-8") as handle:
            json.dump({"mode": mode, "rows": rows}, handle)
    done = already = 0
    from ..progress import open_progress

    with open_progress(progress, len(rows), f"{mode} files") as bar:
        for row in rows:
            if _apply(Path(row["old_path"]), Path(row["new_path"]), mode):
                done += 1
            else:
                already += 1
            bar.advance()
    manifest = _free_name(into / "manifest.csv", set())
    with atomic_write(manifest, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    plan_path.unlink()
    return {"rows": rows, "manifest": manifest, "done": done, "already": already,
            "resumed": resumed, "unreadable": unreadable}


def _plan(model, data, into, mode, skip_bad, batch_size, progress):
    """One row per readable file of ``data``, and the number of unreadable ones."""
    from ..datasets import open_source
    from ..model_io import load_model
    from ..predict import model_color, model_size
    from ..progress import open_progress

    if not hasattr(model, "cluster_centers_"):
        model = load_model(model)
    source = open_source(data, color=model_color(model), size=model_size(model), skip_bad=skip_bad)
    if source.paths is None:
        raise KMIError(f"{data} has no image files (a folder, or a store converted from one); "
                       f"organize sorts files")
    folders = _folder_names(model)
    taken = set()
    rows = []
    with open_progress(progress, source.n_images, "predicting") as bar:
        for batch in source.iter_batches(batch_size):
            clusters = model.predict_cluster(batch.images)
            labels = model.cluster_labels_[clusters]
            for path, cluster, label in zip(batch.paths, clusters, labels, strict=True):
                old = Path(path).resolve()
                # A file already in its place (an earlier run put it there, or it is ``old``
                # itself, inside ``into``) stays: running organize again changes nothing.
                new = _free_name(into.resolve() / folders[int(cluster)] / old.name, taken,
                                 reusable=partial(_holds, old, mode))
                taken.add(new)
                rows.append({"old_path": str(old), "new_path": str(new), "cluster": int(cluster),
                             "label": str(label)})
            bar.advance(len(clusters))
    return rows, source.skipped.get("bad", 0)


def _folder_names(model):
    """One folder name per cluster: its label when the model has names, else cluster-NN."""
    k = len(model.cluster_centers_)
    labels = np.asarray(model.cluster_labels_)
    unnamed = labels.dtype.kind in "iu" and np.array_equal(labels, np.arange(k)) and np.array_equal(
        np.asarray(model.classes_), np.arange(k))
    if unnamed:
        width = len(str(k - 1))
        return [f"cluster-{c:0{width}d}" for c in range(k)]
    names = (getattr(model, "metadata_", None) or {}).get("label_names")
    out = []
    for label in labels.tolist():
        text = names[label] if names and isinstance(label, int) and 0 <= label < len(names) else label
        # Folder names must stay one path component, whatever the label holds.
        out.append(re.sub(r"[\\/:\0]|^\.+$", "_", str(text)).strip() or "_")
    return out


def _free_name(path, taken, reusable=None):
    """``path``, or ``stem-1.suffix``, ``stem-2.suffix``, ... : the first not on disk or taken,
    or, before it, the first on disk (and not taken) that ``reusable(candidate)`` accepts."""
    candidate, n = path, 0
    while candidate in taken or os.path.lexists(candidate):
        if reusable is not None and candidate not in taken and reusable(candidate):
            return candidate
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def _prepare(into, rows):
    """Create the target folders, stopping before any file is touched when one is not writable."""
    for folder in sorted({str(Path(row["new_path"]).parent) for row in rows}):
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            probe = Path(folder) / f".kmi-write-test-{uuid.uuid4().hex}"
            probe.touch(exist_ok=False)
            probe.unlink()
        except OSError as error:
            raise KMIError(f"cannot write to {folder}: {error.strerror or error}") from None


def _read_plan(plan_path, mode):
    try:
        plan = json.loads(plan_path.read_text("utf-8"))
        rows, planned_mode = plan["rows"], plan["mode"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise KMIError(f"{plan_path} is not a readable organize plan ({error}); remove it to "
                       f"start again") from None
    if planned_mode != mode:
        raise KMIError(f"an interrupted organize with --mode {planned_mode} is pending in "
                       f"{plan_path.parent}; run it again with --mode {planned_mode} to finish it")
    return rows


def _apply(old, new, mode):
    """Put ``old`` at ``new``; False when an earlier run already did."""
    if old == new:
        return False
    if os.path.lexists(new):
        if _in_place(old, new, mode):
            if mode == "move" and old.exists():
                old.unlink()  # the link was made, the old name not yet removed
            return False
        raise KMIError(f"{new} appeared since the plan was made and is not {old}; it is left "
                       f"alone: move it away and run again")
    if not old.exists():
        raise KMIError(f"{old} is missing and was not organised; it was moved or deleted "
                       f"since the plan was made")
    try:
        if mode == "copy":
            _copy_new(old, new)
        elif mode == "link":
            _link_new(old, new)
        else:
            try:
                os.link(old, new)
            except OSError as error:
                if error.errno != errno.EXDEV:
                    raise
                _copy_new(old, new)
            old.unlink()
    except OSError as error:
        raise KMIError(f"cannot {mode} {old} to {new}: {error.strerror or error}; nothing was "
                       f"lost, run again to finish") from None
    return True


def _holds(old, mode, candidate):
    """Whether ``candidate`` already is ``old`` in its place (``old`` itself, or put there)."""
    return candidate == old or _in_place(old, candidate, mode)


def _in_place(old, new, mode):
    """Whether ``new`` is ``old`` put in place by an earlier, interrupted run."""
    if mode == "link" and new.is_symlink():
        return Path(os.readlink(new)) == old
    if _same(old, new):
        return True
    if mode == "move" and not old.exists():
        return True
    # A copy, or a move across file systems stopped between the copy and the removal.
    return mode != "link" and old.exists() and filecmp.cmp(old, new, shallow=False)


def _same(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _link_new(old, new):
    try:
        os.link(old, new)
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM):
            raise
        os.symlink(old, new)


def _copy_new(old, new):
    """Copy to a temporary name, then link it to ``new`` (which fails if ``new`` exists)."""
    tmp = new.with_name(f".{new.name}.{uuid.uuid4().hex}.tmp")
    try:
        shutil.copy2(old, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.link(tmp, new)
    finally:
        tmp.unlink(missing_ok=True)
