"""``kmi organize``: sort image files into one folder per cluster, without ever losing a file.

The run has two steps, so that it can be interrupted at any moment and run again:

1. **Plan.** Every file of DATA is predicted (batch by batch) and given a target
   ``INTO/<folder>/<file name>``, where the folder is the cluster's label when the model has
   names (fitted with labels) and ``cluster-NN`` otherwise. A name that is taken (by a file
   already in INTO, or by another planned file) gets ``-1``, ``-2``, ... before its suffix: no
   file is ever overwritten. Files of DATA already inside INTO's cluster folders (INTO within
   DATA, sorted by an earlier run) stay where they are. The plan, with the mode, DATA and the
   model's fingerprint, is written to ``INTO/.kmi-organize-plan.json`` atomically before any
   file is touched.
2. **Apply.** Each file is linked, copied or moved to its target. A target is only ever
   created, never replaced (hard links and the final step of a copy use ``link``, which fails
   on an existing name); a move is a link followed by removing the old name (or, across file
   systems, a complete copy followed by the removal; a symbolic link in DATA is moved as a
   link to the same file), so a file always exists in at least one place. Then
   ``manifest.csv`` (old and new place of every file) is written atomically and the plan
   removed.

Running again after an interruption finds the plan and finishes it (with the same mode, DATA
and model only): files already in place are recognised and skipped. Running again after a run
finished changes nothing: a file an earlier run put in place (the same file for links and
moves, an identical copy for copies) is found there.
"""

import csv
import errno
import filecmp
import hashlib
import json
import os
import re
import shutil
import uuid
from functools import cache, partial
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..errors import KMIError

__all__ = ["MODES", "PLAN_NAME", "organize"]

MODES = ("link", "copy", "move")
PLAN_NAME = ".kmi-organize-plan.json"
MANIFEST_COLUMNS = ("old_path", "new_path", "cluster", "label")


def organize(model, data, into, *, mode="link", dry_run=False, resize=False, skip_bad=False,
             batch_size=1024, progress=None):
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
    resize : bool
        Read images at the model's size (as :func:`~kmeans_imagery.predict.reading_options`:
        always for a model fitted on resized images); else they must have its size.
    skip_bad : bool
        Leave unreadable files where they are (counted) instead of stopping.
    batch_size : int
        Images decoded and predicted at once.
    progress : callable or None
        ``progress(total, description)`` returning a context manager with ``advance(n=1)``.

    Returns
    -------
    dict
        ``rows`` (one dict per file in its place, or planned for a dry run: old_path,
        new_path, cluster, label), ``manifest`` (its
        path, None for a dry run), ``done`` (files linked, copied or moved by this run),
        ``already`` (found in place, put there by an earlier run), ``resumed`` (whether an
        interrupted run's plan was finished), ``unreadable`` (files left where they are with
        ``skip_bad``), ``sorted_before`` (files of ``data`` already inside the cluster folders
        of ``into``, left where they are), ``missing`` (files listed but gone from disk: a
        store's deleted files, or files moved away during an interrupted run; not in the
        manifest).

    Raises
    ------
    KMIError
        For a bad ``mode``, a destination that refuses writes, a move out of a folder that
        refuses it, unreadable data, or an interrupted run of another mode, DATA or model
        pending in ``into``.

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
    from ..model_io import load_model

    if mode not in MODES:
        raise KMIError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not hasattr(model, "cluster_centers_"):
        model = load_model(model)
    into = Path(os.path.abspath(into))
    plan_path = into / PLAN_NAME
    identity = {"mode": mode, "data": os.path.realpath(data), "model": _fingerprint(model)}
    resumed = plan_path.exists()
    # A resumed plan holds only the files that were read and still to be sorted.
    unreadable = sorted_before = missing = 0
    if resumed:
        rows = _read_plan(plan_path, identity)
    else:
        rows, unreadable, sorted_before, missing = _plan(model, data, into, mode, resize,
                                                         skip_bad, batch_size, progress)
    summary = {"rows": rows, "manifest": None, "done": 0, "already": 0, "resumed": resumed,
               "unreadable": unreadable, "sorted_before": sorted_before, "missing": missing}
    if dry_run:
        return summary
    if not resumed:
        _prepare(into, rows, mode)
        with atomic_write(plan_path, "w", encoding="utf-8") as handle:
            json.dump({**identity, "rows": rows}, handle)
    from ..progress import open_progress

    placed = []
    with open_progress(progress, len(rows), f"{mode} files") as bar:
        for row in rows:
            outcome = _apply(Path(row["old_path"]), Path(row["new_path"]), mode)
            summary[outcome] += 1
            if outcome != "missing":
                placed.append(row)
            bar.advance()
    manifest = _free_name(into / "manifest.csv", set())
    with atomic_write(manifest, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(placed)
    plan_path.unlink()
    summary.update(rows=placed, manifest=manifest)
    return summary


def _fingerprint(model):
    """A digest of what decides the folders: the centroids and their names."""
    digest = hashlib.sha256(np.ascontiguousarray(model.cluster_centers_).tobytes())
    digest.update(repr(_folder_names(model)).encode())
    return digest.hexdigest()[:16]


def _plan(model, data, into, mode, resize, skip_bad, batch_size, progress):
    """One row per readable file of ``data`` not yet sorted; the numbers of unreadable files, of
    files already inside INTO's cluster folders (an earlier run's, left where they are), and of
    files a store lists that are no longer on disk."""
    from ..datasets import open_source
    from ..predict import check_model_shape, reading_options
    from ..progress import open_progress

    # Every file below DATA, as explore reads it: loose images beside sub-folders (albums and
    # loose photos, or new files beside the cluster folders of a folder sorted in place) too.
    source = open_source(data, **reading_options(model, resize), skip_bad=skip_bad,
                         loose_images="read")
    if source.paths is None:
        raise KMIError(f"{data} has no image files (a folder, or a store converted from one); "
                       f"organize sorts files")
    check_model_shape(model, source)
    folders = _folder_names(model)
    # Compared on real paths: DATA or INTO may be reached through a symbolic link. Once per
    # folder, not per file: the files of a folder share the answer.
    sorted_folders = {Path(os.path.realpath(into / name)) for name in folders}

    @cache
    def sorted_already(folder):
        real = Path(os.path.realpath(folder))
        return not sorted_folders.isdisjoint((real, *real.parents))

    taken = set()
    rows = []
    sorted_before = missing = 0
    with open_progress(progress, source.n_images, "predicting") as bar:
        for batch in source.iter_batches(batch_size):
            clusters = model.predict_cluster(batch.images)
            labels = model.cluster_labels_[clusters]
            for path, cluster, label in zip(batch.paths, clusters, labels, strict=True):
                # The entry of DATA itself, not what a symbolic link points to: a move moves
                # the link, never a file outside DATA.
                old = Path(os.path.abspath(path))
                if not os.path.lexists(old):  # a store's file deleted since it was converted
                    missing += 1
                    continue
                if sorted_already(old.parent):
                    sorted_before += 1
                    continue
                # A file an earlier run already put in place is found there, not sorted twice.
                new = _free_name(into / folders[int(cluster)] / old.name, taken,
                                 reusable=partial(_in_place, old, mode=mode, resuming=False))
                taken.add(new)
                rows.append({"old_path": str(old), "new_path": str(new), "cluster": int(cluster),
                             "label": str(label)})
            bar.advance(len(clusters))
    return rows, source.skipped.get("bad", 0), sorted_before, missing


#: Longest folder name, in UTF-8 bytes (file systems allow 255).
_MAX_FOLDER_BYTES = 120


def _folder_names(model):
    """One folder name per cluster: its label when the model has names, else cluster-NN.

    A label becomes one safe path component (no separator, not ``.`` or ``..``, at most 120
    bytes); two labels that would give one name, or names that differ only in case (one folder
    on the case-insensitive file systems of macOS and Windows), keep apart with ``-2``, ``-3``,
    ...
    """
    k = len(model.cluster_centers_)
    labels = np.asarray(model.cluster_labels_)
    unnamed = labels.dtype.kind in "iu" and np.array_equal(labels, np.arange(k)) and np.array_equal(
        np.asarray(model.classes_), np.arange(k))
    if unnamed:
        width = len(str(k - 1))
        return [f"cluster-{c:0{width}d}" for c in range(k)]
    names = (getattr(model, "metadata_", None) or {}).get("label_names")
    folder_of, used = {}, set()
    for label in dict.fromkeys(labels.tolist()):
        text = names[label] if names and isinstance(label, int) and 0 <= label < len(names) else label
        name = re.sub(r"[\\/:\x00-\x1f]", "_", str(text)).strip()
        name = name.encode()[:_MAX_FOLDER_BYTES].decode(errors="ignore").strip()
        name = "_" if name.strip(".") == "" else name
        unique, n = name, 1
        while unique.casefold() in used:
            n += 1
            unique = f"{name}-{n}"
        folder_of[label] = unique
        used.add(unique.casefold())
    return [folder_of[label] for label in labels.tolist()]


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


def _prepare(into, rows, mode):
    """Stop before any file is touched when a target folder cannot be made or written, or, for
    a move, a file's own folder does not let it be removed."""
    # INTO itself too: it holds the plan and the manifest, even when no file is to move.
    folders = sorted({into, *(Path(row["new_path"]).parent for row in rows)})
    for folder in folders:
        if os.path.lexists(folder) and not folder.is_dir():
            raise KMIError(f"cannot write to {folder}: it is a file, not a folder")
    if mode == "move":
        for folder in sorted({Path(row["old_path"]).parent for row in rows}):
            if not os.access(folder, os.W_OK | os.X_OK):
                raise KMIError(f"cannot move files out of {folder}: it is not writable")
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".kmi-write-test-{uuid.uuid4().hex}"
            probe.touch(exist_ok=False)
            probe.unlink()
        except OSError as error:
            raise KMIError(f"cannot write to {folder}: {error.strerror or error}") from None


def _read_plan(plan_path, identity):
    """The rows of an interrupted run's plan, which must be this run's (mode, DATA, model)."""
    try:
        plan = json.loads(plan_path.read_text("utf-8"))
        rows = plan["rows"]
        if not all(isinstance(row.get("old_path"), str) and isinstance(row.get("new_path"), str)
                   and set(row) == set(MANIFEST_COLUMNS) for row in rows):
            raise ValueError("a row is not old_path, new_path, cluster, label")
        pending = {key: plan[key] for key in identity}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise KMIError(f"{plan_path} is not a readable organize plan ({error}); remove it to "
                       f"start again") from None
    if pending["mode"] != identity["mode"]:
        raise KMIError(f"an interrupted organize with --mode {pending['mode']} is pending in "
                       f"{plan_path.parent}; run it again with --mode {pending['mode']} to "
                       f"finish it")
    if pending != identity:
        what = "data" if pending["data"] != identity["data"] else "model"
        raise KMIError(f"an interrupted organize of {pending['data']} with another {what} is "
                       f"pending in {plan_path.parent}; run it again with that model and data to "
                       f"finish it, or remove {plan_path.name} to start again")
    return rows


def _apply(old, new, mode):
    """Put ``old`` at ``new``: "done", "already" (an earlier run did), or "missing" (``old``
    was moved or deleted since the plan was made: nothing to sort)."""
    if os.path.lexists(new):
        if not _in_place(old, new, mode=mode, resuming=True):
            raise KMIError(f"{new} appeared since the plan was made and is not {old}; it is left "
                           f"alone: move it away and run again")
        if mode == "move" and os.path.lexists(old):
            _remove(old, new)  # the move was interrupted after the link, before the removal
        return "already"
    if not os.path.lexists(old):
        return "missing"
    try:
        if mode == "copy":
            _copy_new(old, new)
        elif mode == "link":
            _link_new(old, new)
        elif old.is_symlink():
            # A moved symbolic link points where it did, wherever it now lies.
            os.symlink(os.path.realpath(old), new)
        else:
            try:
                os.link(old, new)
            except OSError as error:
                if error.errno != errno.EXDEV:
                    raise
                _copy_new(old, new)
    except OSError as error:
        raise KMIError(f"cannot {mode} {old} to {new}: {error.strerror or error}; nothing was "
                       f"lost, run again to finish") from None
    if mode == "move":
        _remove(old, new)
    return "done"


def _remove(old, new):
    """The last step of a move: remove the old name, now that ``new`` holds the file."""
    try:
        old.unlink()
    except OSError as error:
        raise KMIError(f"cannot remove {old} after putting it at {new}: "
                       f"{error.strerror or error}; it is in both places until its folder "
                       f"lets it be removed and the command is run again") from None


def _in_place(old, new, *, mode, resuming):
    """Whether ``new`` already is ``old`` in its place: put there by an earlier run, or, when
    ``resuming`` a plan (whose targets were all free), by this plan's interrupted run.

    A file that merely looks the same is never taken for a moved one unless resuming: a move
    removes the old name, so only the same file (or, resuming, one this plan made) will do.
    """
    try:
        if new.is_symlink():
            # Link mode's symbolic link across file systems, or a moved symbolic link.
            if mode == "link":
                return os.readlink(new) == str(old)
            return (mode == "move" and os.path.realpath(new) == os.path.realpath(old)
                    and (old.is_symlink() or (resuming and not os.path.lexists(old))))
        if mode == "copy":
            return not _same(old, new) and filecmp.cmp(old, new, shallow=False)
        if mode == "link" or not resuming:
            return _same(old, new)
        # Resuming a move: done (old gone), linked, or copied across file systems.
        return (not os.path.lexists(old) or _same(old, new)
                or filecmp.cmp(old, new, shallow=False))
    except OSError:
        return False  # an unreadable or broken entry is someone else's: pick another name


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
