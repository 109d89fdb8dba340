"""``kmi convert``: any input as a chunked Zarr store."""

import click

from ..datasets import open_source
from ._common import FORCE, consoles, data_options, loading_progress, report_skipped


@click.command()
@click.argument("data")
@click.argument("dest", type=click.Path(path_type=str))
@click.option("--split", type=click.Choice(["train", "test", "all"]), default="train",
              show_default=True,
              help="Split of a dataset that has two (named datasets, IDX folders, .npz files); "
                   "all: both, train then test.")
@click.option("--chunk-size", default=8192, show_default=True, type=click.IntRange(1),
              help="Images per Zarr chunk.")
@FORCE
@data_options
def convert(data, dest, split, chunk_size, force, data_dir, color, size, skip_bad):
    """Write DATA (any supported input) as a chunked Zarr store DEST for streaming and Dask fits."""
    from ..datasets import convert_to_zarr
    from ..outputs import output_file_folders

    console, err = consoles(False)
    # The store's folder is made here, to be removed again if the conversion fails.
    with output_file_folders(dest):
        source = open_source(data, split=split, data_dir=data_dir, color=color, size=size,
                             skip_bad=skip_bad)
        store = convert_to_zarr(source, dest, chunk_size=chunk_size, force=force,
                                progress=loading_progress(err))
    report_skipped(source.name, source.skipped, err)
    console.print(f"wrote {store.n_images} images of {'x'.join(map(str, store.image_shape))} "
                  f"to {dest}")
