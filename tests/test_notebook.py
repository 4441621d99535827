"""examples/tutorial.ipynb runs top to bottom (at a tiny size) and shows what it promises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).parent.parent / "examples" / "tutorial.ipynb"


def test_notebook_is_stored_clean_and_reads_no_shared_files():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip the outputs"
    source = "".join("".join(c["source"]) for c in nb["cells"])
    assert "shared" not in source and "demo_paths()" in source


def test_notebook_runs_at_a_tiny_size(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("PAINTERLY_NOTEBOOK_SIZE", "48")
    monkeypatch.setenv("PAINTERLY_NOTEBOOK_STEPS", "4")
    monkeypatch.setenv("PAINTERLY_NOTEBOOK_REPORT", str(tmp_path / "report"))
    monkeypatch.setenv("MPLBACKEND", "Agg")  # any figure the kernel does not show inline stays off screen
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=300,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, if a cell fails

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "48 px, 4 steps" in text and "block5_conv2" in text and "total time" in text
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) >= 7  # inputs, feature maps, Gram, snapshots, result, losses, the Result itself
    assert any("image/gif" in o.get("data", {}) for o in outputs)  # the animation
    assert (tmp_path / "report" / "index.html").is_file()
    last = nb.cells[[i for i, c in enumerate(nb.cells) if c.cell_type == "code"][-1]]
    assert "image/png" in last.outputs[-1]["data"]  # `result` shows itself (Result._repr_png_)
