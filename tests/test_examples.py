"""Every notebook in examples/ is stored without outputs and runs from top to bottom."""

import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
# The shared data (MNIST, rasters, hyperspectral scenes) beside the checkout; the notebooks fall back to
# bundled or synthetic data where it is absent.
SHARED_DATA = EXAMPLES.parents[1] / "shared" / "data"
CELL_TIMEOUT_S = 300


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4, f"examples/ holds {[path.name for path in NOTEBOOKS]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, f"{path.name} has no code"
    for cell in code:
        assert cell.execution_count is None and cell.outputs == [], f"{path.name}: {cell.source[:60]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs(path, tmp_path, monkeypatch):
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    # The kernel is this interpreter, whatever kernels the machine has installed.
    write_kernel_spec(tmp_path / "kernels" / "this-python")
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    assert specs.get_kernel_spec("this-python").argv[0] == sys.executable
    kernel = KernelManager(kernel_name="this-python", kernel_spec_manager=specs)

    if SHARED_DATA.is_dir():
        monkeypatch.setenv("KMI_DATA_DIR", str(SHARED_DATA))
    # Never the network: a download the notebook falls back to fails at once.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # inline figures, as in Jupyter
    work = tmp_path / "work"
    work.mkdir()
    before = sorted(EXAMPLES.rglob("*"))
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(notebook, km=kernel, timeout=CELL_TIMEOUT_S,
                            resources={"metadata": {"path": str(work)}}).execute()  # raises on an error
    # Everything a notebook writes goes to a temporary folder or its working directory, never the repo.
    assert sorted(EXAMPLES.rglob("*")) == before
