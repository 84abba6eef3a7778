"""Every colab runs top to bottom on the CPU (headless), so none of them rots; outputs stay stripped."""

import pathlib
import re

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

COLABS = sorted((pathlib.Path(__file__).parents[2] / "colabs").glob("*.ipynb"))


def _case(path):
  """The notebook as a test case, `slow` if it trains (in the kernel or through a sweep's subprocesses),
  `torch` if it imports torch."""
  text = path.read_text()
  marks = [pytest.mark.slow] if re.search(r"train_and_evaluate\(|run_all_locally\(", text) else []
  marks += [pytest.mark.torch] if re.search(r'"(?:import|from) torch', text) else []
  return pytest.param(path, id=path.stem, marks=marks)


@pytest.mark.parametrize("path", [_case(p) for p in COLABS])
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
