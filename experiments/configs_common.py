"""Helpers shared by experiment files: the `file.py:arg` parser and the training block of the
dense_shapes task studies (`set_dense_shapes_training`).

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


def set_dense_shapes_training(config, *, quick: bool, steps: int) -> None:
  """The training block the dense_shapes task studies share (colorization, depth + normals, multi-task):
  AdamW (lr 1e-3, weight decay 1e-4, gradients clipped at norm 1) with a cosine schedule; quick mode
  600 steps of batch 16 (warm-up 50, a row every 25 steps, an evaluation and a checkpoint every 300),
  else 20k steps of batch 32 (warm-up 500, every 100 / 2000); `steps` > 0 replaces the step count.
  Two checkpoints kept, four figures per evaluation."""
  config.total_steps = steps or (600 if quick else 20_000)
  config.batch_size = 16 if quick else 32
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=1e-3, schedule="cosine", warmup_steps=50 if quick else 500,
      weight_decay=1e-4, grad_clip_norm=1.0))
  config.log_every = 25 if quick else 100
  config.eval_every = 300 if quick else 2000
  config.checkpoint_every = 300 if quick else 2000
  config.keep_checkpoints = 2
  config.num_figures = 4
