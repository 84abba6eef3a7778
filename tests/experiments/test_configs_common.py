"""`parse_arg`: typed `file.py:arg` options."""

import pytest

from experiments.configs_common import parse_arg


def test_defaults_and_values():
  arg = parse_arg("quick,width=16,up=bilinear", quick=False, width=64, up="transposed", lr=0.1)
  assert (arg.quick, arg.width, arg.up, arg.lr) == (True, 16, "bilinear", 0.1)
  assert parse_arg(None, quick=False).quick is False
  assert parse_arg("quick=false", quick=True).quick is False


def test_lone_value_goes_to_first_option():
  assert parse_arg("32", width=64, quick=False).width == 32
  assert parse_arg("quick", width=64, quick=False).quick is True


@pytest.mark.parametrize("arg,match", [
    ("qiuck", "unknown option 'qiuck'"), ("width=abc", "'width': expected a int"),
    ("quick=maybe", "'quick': expected a bool"), ("width", "'width': expected a int")])
def test_errors(arg, match):
  with pytest.raises(ValueError, match=match):
    parse_arg(arg, quick=False, width=64)
