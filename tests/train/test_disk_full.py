"""A full disk: the trainer says so in one `ERROR:` line (exit 3), the checkpoints before it stay, and
freeing space and rerunning the same command resumes. The workdir is on a small tmpfs (needs mount
rights: root, as in CI; skipped elsewhere)."""

import os
import pathlib
import subprocess
import sys
import uuid

import pytest

from tests.train.conftest import read_metrics, tiny_config, write_config_file

REPO = pathlib.Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
  mount_point = tmp_path / f"disk_{uuid.uuid4().hex[:6]}"
  mount_point.mkdir()
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                           capture_output=True, text=True)
  if mounted.returncode:
    pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
  try:
    yield mount_point
  finally:
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: pathlib.Path, leave_kib: int) -> pathlib.Path:
  """Writes a filler file leaving about `leave_kib` KiB free on `disk`."""
  stat = os.statvfs(disk)
  free = stat.f_bavail * stat.f_frsize
  filler = disk / "filler"
  with open(filler, "wb") as f:
    f.write(b"\0" * max(0, free - leave_kib * 1024))
  return filler


def train(config_file, workdir):
  run = subprocess.run([sys.executable, "-m", "dense_jax.train", "--config", str(config_file),
                        "--workdir", str(workdir)], cwd=REPO, capture_output=True, text=True, timeout=300)
  return run.returncode, run.stdout + run.stderr


def error_lines(output: str) -> list[str]:
  return [line for line in output.splitlines() if line.startswith("ERROR:")]


@pytest.mark.parametrize("leave_kib", [40, 0])
def test_full_disk_is_one_error_and_the_last_checkpoint_resumes(small_disk, tmp_path, leave_kib):
  workdir = small_disk / "run"
  first = write_config_file(tmp_path, tiny_config(num_devices=1, mesh_shape=(1, 1), stop_at_step=4))
  code, out = train(first, workdir)
  assert code == 0, out
  # The same config without stop_at_step continues the run (stop_at_step is not part of its identity).
  config_file = write_config_file(tmp_path, tiny_config(num_devices=1, mesh_shape=(1, 1)))
  filler = fill(small_disk, leave_kib)

  code, out = train(config_file, workdir)
  assert code == 3, out
  errors = error_lines(out)
  assert len(errors) == 1, out
  assert "disk is full" in errors[0] and str(workdir) in errors[0], errors[0]
  assert "rerun the same command to resume" in errors[0]
  assert "Traceback" not in out, out
  if leave_kib:   # the run trained to step 8 and failed writing its checkpoint
    assert "could not write checkpoint step 8" in errors[0] and "last good checkpoint is step 4" in errors[0]
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["4"]

  filler.unlink()
  code, out = train(config_file, workdir)
  assert code == 0, out
  assert "Resuming from step 4" in out
  assert [r["step"] for r in read_metrics(workdir) if "loss" in r][-1] == 8
