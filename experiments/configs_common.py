"""Helpers shared by experiment files: the `file.py:arg` parser.

    def get_config(arg=None):
      arg = parse_arg(arg, quick=False, width=64, up="transposed")
      ...

`--config experiments/x.py:quick,width=16` calls `get_config("quick,width=16")`. Values are converted
to the type of their default (a bool needs no value: `quick` means `quick=True`; `quick=false` is
False). A lone value without `=` that is not a bool option is the value of the first option
(`x.py:16` → width=16 if width came first). Unknown names are an error listing the known ones.
"""

from __future__ import annotations

import ml_collections


def _to_bool(text: str) -> bool:
  lowered = text.lower()
  if lowered not in ("true", "false", "1", "0", ""):
    raise ValueError(f"expected true/false, got {text!r}")
  return lowered in ("true", "1")


def _convert(name: str, text: str, default):
  try:
    if isinstance(default, bool):
      return _to_bool(text)
    if default is None:
      return text
    return type(default)(text)
  except ValueError as e:
    raise ValueError(f"config argument {name!r}: expected a {type(default).__name__}, got {text!r} ({e})") from None


def parse_arg(arg: str | None, **spec) -> ml_collections.ConfigDict:
  """`arg` ('a=1,b,c=x') parsed against `spec` (name → default) into a ConfigDict of typed values."""
  arg = (arg or "").strip()
  result = ml_collections.ConfigDict(dict(spec))
  if not arg:
    return result
  if "=" not in arg and "," not in arg and arg not in spec and spec:
    first = next(iter(spec))
    if not isinstance(spec[first], bool):
      arg = f"{first}={arg}"
  with result.unlocked():
    for item in filter(None, (part.strip() for part in arg.split(","))):
      name, eq, value = item.partition("=")
      if name not in spec:
        raise ValueError(f"config argument: unknown option {name!r}; expected one of {sorted(spec)}")
      result[name] = _convert(name, value if eq else "true", spec[name])
  return result
