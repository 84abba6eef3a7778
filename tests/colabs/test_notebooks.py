"""Every colab runs top to bottom on the CPU (headless), so none of them rots; outputs stay stripped."""

import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

COLABS = sorted((pathlib.Path(__file__).parents[2] / "colabs").glob("*.ipynb"))


@pytest.mark.parametrize("path", COLABS, ids=[p.stem for p in COLABS])
def test_notebook_runs(path, tmp_path, monkeypatch):
  notebook = nbformat.read(path, as_version=4)
  assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
      f"{path.name}: outputs must be stripped before commit")
  # The notebooks read this to shrink their training runs to a smoke test.
  monkeypatch.setenv("DENSE_JAX_COLAB_QUICK", "1")
  monkeypatch.setenv("MPLBACKEND", "Agg")
  monkeypatch.chdir(tmp_path)   # anything a notebook writes lands in the test's tmp dir
  client = nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                                   resources={"metadata": {"path": str(tmp_path)}})
  client.execute()


def test_there_are_six_colabs():
  assert [p.stem[:2] for p in COLABS] == ["01", "02", "03", "04", "05", "06"]
