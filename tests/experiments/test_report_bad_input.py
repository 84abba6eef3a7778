"""Bad input to the sweep report: one `ERROR:` line on stderr naming the flag or file, exit 2; a metrics
line cut short and an experiment file that is not here are notes, and the report is still written."""

import json
import os

import pytest

from experiments import report as report_lib

DESCRIBED = ("def sweep(add, arg=None):\n  add(name='a')\n\n"
             "def describe(config):\n  return {'width': config.model.width}\n")


def _run_dir(root, name="a", record=None, metrics=None, config=None):
  workdir = root / name
  workdir.mkdir(parents=True, exist_ok=True)
  record = {"status": "done", "name": name, "config": "exp.py", "overrides": {"model.width": 4}} \
      if record is None else record
  (workdir / "sweep_run.json").write_text(record if isinstance(record, str) else json.dumps(record))
  lines = ['{"step": 4, "loss": 0.5, "val/miou": 0.25}'] if metrics is None else metrics
  (workdir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
  if config is not None:
    (workdir / "config.json").write_text(config)
  return workdir


def _error(capsys, *argv) -> str:
  try:
    code = report_lib.main([str(a) for a in argv])
  except SystemExit as e:   # argparse's errors exit from parse_args
    code = e.code
  err = capsys.readouterr().err
  lines = [line for line in err.splitlines() if line.strip()]
  assert code == 2 and len(lines) == 1 and lines[0].startswith("ERROR: "), (code, err)
  return lines[0]


@pytest.mark.parametrize("argv, expected", [
    ([], "the following arguments are required: root"),
    ([""], "root: expected a directory (local or gs://), got an empty string"),
    (["missing"], "root: expected a sweep root (a directory of runs written by experiments.sweep), got missing, "
                  "which does not exist"),
    (["a_file"], "root: expected a directory, got a_file, which is a file"),
    (["empty"], "root: expected a sweep root with runs (*/sweep_run.json), found none in"),
    (["memory://sweep"], "root: expected a local path or a gs://"),
    (["gs://dense-jax-no-such-bucket/sweep"], "root: expected a readable path, got gs://"),
    (["empty", "extra"], "unrecognized arguments: extra"),
])
def test_bad_root(tmp_path, capsys, monkeypatch, argv, expected):
  monkeypatch.chdir(tmp_path)
  (tmp_path / "a_file").write_text("")
  (tmp_path / "empty").mkdir()
  assert expected in _error(capsys, *argv)
  assert sorted(os.listdir(tmp_path)) == ["a_file", "empty"]   # no 'gs:' / 'memory:' directory either


@pytest.mark.parametrize("record, expected", [
    ('{"status": "done", "na',
     "sweep_run.json: expected the launcher's run record (JSON), got a file that is not JSON"),
    ("", "sweep_run.json: expected the launcher's run record (JSON)"),
    ("[1, 2]", "sweep_run.json: expected the launcher's run record, a JSON object with an 'overrides' object"),
    ('{"overrides": [1]}', "sweep_run.json: expected the launcher's run record, a JSON object"),
])
def test_a_damaged_run_record_is_named(tmp_path, capsys, record, expected):
  _run_dir(tmp_path, "a")
  _run_dir(tmp_path, "b", record=record)
  message = _error(capsys, tmp_path)
  assert str(tmp_path / "b" / "sweep_run.json") in message and expected in message, message
  assert "re-run the sweep to rewrite it" in message
  assert not (tmp_path / "report.md").exists()


def test_a_metrics_record_that_is_not_an_object(tmp_path, capsys):
  _run_dir(tmp_path, metrics=['{"step": 2, "loss": 0.7}', "[0.5]"])
  message = _error(capsys, tmp_path)
  assert f"{tmp_path / 'a' / 'metrics.jsonl'} line 2: expected a JSON object of metrics, got list" in message


def test_metrics_that_are_not_text(tmp_path, capsys):
  workdir = _run_dir(tmp_path)
  (workdir / "metrics.jsonl").write_bytes(b'{"step": 2}\n\xff\xfe\n')
  assert "metrics.jsonl: expected the trainer's metrics (JSON lines), got bytes" in _error(capsys, tmp_path)


def test_a_metrics_line_cut_short_is_a_note(tmp_path, capsys):
  _run_dir(tmp_path, metrics=['{"step": 2, "loss": 0.7}', '{"step": 4, "lo', '{"step": 4, "loss": 0.5}'])
  assert report_lib.main([str(tmp_path)]) == 0
  err = capsys.readouterr().err
  assert f"note: {tmp_path / 'a' / 'metrics.jsonl'} line 2 is not JSON" in err and "ERROR" not in err
  assert "| a | done | 4 | 0.5 |" in (tmp_path / "report.md").read_text()


def test_a_damaged_config_json_is_named(tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(tmp_path)
  (tmp_path / "exp.py").write_text(DESCRIBED)
  _run_dir(tmp_path / "sweep", config='{"model": {"wid')
  message = _error(capsys, "sweep")
  assert message.startswith(f"ERROR: {os.path.join('sweep', 'a', 'config.json')}: expected the run's resolved "
                            f"config (JSON), got a file that is not JSON"), message


def test_a_failing_describe_names_the_run(tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(tmp_path)
  (tmp_path / "exp.py").write_text(DESCRIBED)
  _run_dir(tmp_path / "sweep", config='{"model": {"depth": 1}}')
  message = _error(capsys, "sweep")
  assert message.startswith("ERROR: run a: describe(config) of exp.py failed (AttributeError"), message


def test_an_experiment_file_that_fails_to_import(tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(tmp_path)
  (tmp_path / "exp.py").write_text("import no_such_module_here\n")
  _run_dir(tmp_path / "sweep", config='{"model": {"width": 4}}')
  assert "exp.py fails to import (ModuleNotFoundError" in _error(capsys, "sweep")


def test_an_experiment_file_that_is_not_here_is_a_note(tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(tmp_path)
  _run_dir(tmp_path / "sweep", config='{"model": {"width": 4}}')
  assert report_lib.main(["sweep"]) == 0
  err = capsys.readouterr().err
  assert "note: run a: its experiment file 'exp.py' is not here" in err and "ERROR" not in err
