"""Every example runs as a notebook, through a real Jupyter kernel, and shows its figures inline.

jupytext turns each percent-format script into a notebook and nbclient runs it
cell by cell in a ``python3`` kernel (the ipykernel of the Python running the
tests), tiny, on fake IDX files: the knobs of tests/test_examples.py, given to
the kernel through its environment. Example 05 runs as one process (size 1).
"""

import importlib.util
import os
from pathlib import Path

import pytest
from helpers.idx_helpers import make_fake_fashion

MISSING = [m for m in ("jupytext", "nbclient", "ipykernel") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs the notebook extra ({', '.join(MISSING)} "
                                f"missing): pip install -e \".[notebook]\"")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DRAWS = {"01_autoencoder.py", "02_gradcheck_by_hand.py", "03_classify_codes.py", "04_tsne_map.py",
         "06_your_own_layer.py"}  # 05 prints only


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fake-fashion")
    make_fake_fashion(directory, n_train=300, n_test=100)
    return directory


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("0*.py")))
def test_example_runs_as_a_notebook(name, fake_data, tmp_path, monkeypatch):
    import jupytext  # noqa: PLC0415
    from nbclient import NotebookClient  # noqa: PLC0415

    for key in [k for k in os.environ if k.startswith("NANOAE_EXAMPLE_")]:
        monkeypatch.delenv(key)
    # the kernel inherits this environment when it starts
    for key, value in {"NANOAE_BACKEND": "numpy", "NANOAE_DATA_DIR": str(fake_data),
                       "NANOAE_EXAMPLE_NO_VERIFY": "1", "NANOAE_EXAMPLE_EPOCHS": "1",
                       "NANOAE_EXAMPLE_LIMIT": "200", "NANOAE_EXAMPLE_OUT": str(tmp_path / "out"),
                       "XDG_CACHE_HOME": str(tmp_path / "cache"), "NANOAE_MPI": "0"}.items():
        monkeypatch.setenv(key, value)
    notebook = jupytext.read(EXAMPLES / name)
    assert sum(c.cell_type == "markdown" for c in notebook.cells) >= 3, "the prose is in markdown cells"
    client = NotebookClient(notebook, kernel_name="python3", timeout=120,
                            resources={"metadata": {"path": str(EXAMPLES)}})  # cwd: _knobs imports
    client.execute()  # raises CellExecutionError, naming the cell, if one errs
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    if name in DRAWS:
        assert images, f"{name} showed no figure inline"
