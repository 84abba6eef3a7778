"""`config.init`: start a model from a torchvision file or another dense_jax run, and say what loaded.

    config.init = dict(path='resnet50-0676ba61.pth',     # or a workdir, or <workdir>/checkpoints/<step>
                       source='auto',                    # 'auto' | 'torchvision' | 'dense_jax'
                       include=None,                     # regex over our paths 'a/b/c'; None = all
                       exclude=None,                     # regex; None = nothing excluded
                       strict=False)                     # any array left at init / unused -> error

`path=None` (the default) is a random initialisation. `source='auto'` reads a file as a torchvision
state dict (`.pth` / `.pt` / `.bin`, loaded with `torch.load(weights_only=True)`) and a directory as a
dense_jax run: a workdir (its newest checkpoint that reads) or one step directory
`<workdir>/checkpoints/<step>`; the run's own `config.json` says which model to restore.

Placement. The file's arrays come as flat `{path: array}` parts (`torchvision_files`; a dense_jax run
is one part, its `params` and `batch_stats` merged). Each part is placed under the prefix of the model
where most of its paths exist (`''` for a whole model, `backbone/body/` for a ResNet trunk in Mask
R-CNN, `encoder/` for VGG16-BN in SegNet; ties go to the shortest). Paths are compared without their
collection, so batch-norm statistics travel with their weights, and a model that holds BN scale/bias
as frozen buffers (`batch_stats`) receives them there. A model array loads when `include`
`re.search`-matches its path, `exclude` does not, and the file has it with the same shape; every other
array stays at its initial value with a reason: 'excluded by init.exclude', 'not matched by
init.include', 'shape (91, 1024) in file vs (9, 1024) here', or 'absent from file'. File arrays that
found no place (and torchvision tensors no importer converts, like a classifier's `fc.*`) are listed
as unused.

Errors (ValueError naming `config.init.<key>`, raised before anything compiles): an unknown key or
source, a missing or unreadable path, a file of another architecture (no array would load), an
`include` that matches no model array, and with `strict=True` any array left at init or unused.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from dense_jax import paths
from dense_jax.convert import torchvision_files

INIT_KEYS = ("path", "source", "include", "exclude", "strict")
DEFAULTS = dict(path=None, source="auto", include=None, exclude=None, strict=False)
SOURCES = ("auto", "torchvision", "dense_jax")
TORCH_SUFFIXES = (".pth", ".pt", ".bin")
REPORT_FILE = "init_report.json"
_SHOWN = 5   # paths named in an error message


class InitError(ValueError):
  """`config.init` cannot be applied; nothing was written."""


def _cfg(init) -> dict[str, Any]:
  block = dict(init.to_dict() if hasattr(init, "to_dict") else (init or {}))
  return {**DEFAULTS, **block}


def check_init_config(init) -> None:
  """Types and values of the `config.init` block (InitError naming the key); reads no file."""
  block = dict(init.to_dict() if hasattr(init, "to_dict") else (init or {}))
  unknown = sorted(set(block) - set(INIT_KEYS))
  if unknown:
    raise InitError(f"config.init: unknown keys {unknown}; expected a subset of {list(INIT_KEYS)}")
  cfg = _cfg(block)
  if cfg["path"] is not None and not isinstance(cfg["path"], str):
    raise InitError(f"config.init.path: expected None or a path string, got {cfg['path']!r}")
  if cfg["source"] not in SOURCES:
    raise InitError(f"config.init.source: expected one of {list(SOURCES)}, got {cfg['source']!r}")
  for key in ("include", "exclude"):
    if cfg[key] is None:
      continue
    if not isinstance(cfg[key], str):
      raise InitError(f"config.init.{key}: expected None or a regular expression string, got {cfg[key]!r}")
    try:
      re.compile(cfg[key])
    except re.error as e:
      raise InitError(f"config.init.{key}: expected a regular expression, got {cfg[key]!r} ({e})") from None
  if not isinstance(cfg["strict"], bool):
    raise InitError(f"config.init.strict: expected True or False, got {cfg['strict']!r}")


def is_set(init) -> bool:
  """Whether the block asks for an initialisation from a path."""
  return bool(init) and _cfg(init)["path"] is not None


# ----------------------------------------------------------------------------- reading the source


@dataclasses.dataclass(frozen=True)
class Source:
  description: str                 # e.g. "torchvision resnet50 (classification) file /x/r50.pth"
  parts: list[dict[str, Any]]      # flat {path: array}
  unconverted: list[str]           # file tensors without a place in any model of ours


def _source_kind(path, source: str) -> str:
  if source != "auto":
    return source
  if path.is_dir():
    return "dense_jax"
  if path.suffix in TORCH_SUFFIXES:
    return "torchvision"
  raise InitError(f"config.init.path: expected a torchvision state-dict file ({', '.join(TORCH_SUFFIXES)}) "
                  f"or a dense_jax workdir / checkpoint step directory, got {path} (a file with another "
                  f"suffix; set config.init.source='torchvision' if it is a torch file)")


def _read_torchvision(path) -> Source:
  from dense_jax.convert import torchvision as tv  # pylint: disable=g-import-not-at-top
  if path.is_dir():
    raise InitError(f"config.init.path: expected a torchvision state-dict file, got the directory {path}")
  try:
    with path.open("rb") as f:
      state_dict = tv.load_state_dict(f)
  except Exception as e:  # pylint: disable=broad-except  # pickle, zip, torch and layout errors alike
    raise InitError(f"config.init.path: expected a torch state-dict file readable with "
                    f"torch.load(weights_only=True), got {path} ({type(e).__name__}: {e})") from None
  try:
    imported = torchvision_files.import_state_dict(state_dict)
  except torchvision_files.UnknownArchitectureError as e:
    raise InitError(f"config.init.path: expected {e} (in {path})") from None
  except ValueError as e:   # a known model with tensors missing or of the wrong rank
    raise InitError(f"config.init.path: expected a complete torchvision state dict, got {path}: {e}") from None
  return Source(f"torchvision {imported.kind} file {path}", imported.parts, imported.unconverted)


def _run_and_step(path) -> tuple[Any, int | None]:
  """`(workdir, step or None)` of a workdir or a `<workdir>/checkpoints/<step>` directory."""
  from dense_jax.tools import restore  # pylint: disable=g-import-not-at-top
  if (path / restore.CONFIG_FILE).exists():
    return path, None
  if path.name.isdigit() and path.parent.name == restore.CHECKPOINTS and \
      (path.parent.parent / restore.CONFIG_FILE).exists():
    return path.parent.parent, int(path.name)
  raise InitError(f"config.init.path: expected a dense_jax workdir (with {restore.CONFIG_FILE}) or one of its "
                  f"step directories <workdir>/{restore.CHECKPOINTS}/<step>, got {path}")


def _read_dense_jax(path) -> Source:
  from dense_jax.tools import restore  # pylint: disable=g-import-not-at-top
  workdir, step = _run_and_step(path)
  try:
    run_config = restore.load_run_config(workdir)
    step, variables = restore.restore_variables(run_config, workdir, step)
  except (ValueError, FileNotFoundError, KeyError) as e:
    raise InitError(f"config.init.path: expected a run whose checkpoint can be read, got {path} ({e})") from None
  flat = torchvision_files.flatten_collections(jax.device_get(variables))
  return Source(f"dense_jax run {workdir} ({run_config.model.name}, step {step})", [flat], [])


def read_source(init) -> Source:
  """The arrays `config.init` points at (InitError for a missing, unreadable or unknown file)."""
  check_init_config(init)
  cfg = _cfg(init)
  path = paths.as_path(cfg["path"])
  try:
    exists = path.exists()
  except Exception as e:  # pylint: disable=broad-except  # e.g. gs:// without credentials
    raise InitError(f"config.init.path: expected a readable path, got {cfg['path']} "
                    f"({type(e).__name__}: {e})") from None
  if not exists:
    raise InitError(f"config.init.path: expected an existing torchvision file or dense_jax run, got "
                    f"{cfg['path']} (no such file or directory)")
  kind = _source_kind(path, cfg["source"])
  return _read_torchvision(path) if kind == "torchvision" else _read_dense_jax(path)


# ----------------------------------------------------------------------------- placing into a model


def _model_arrays(variables) -> dict[str, tuple[str, Any]]:
  """`{path: (collection, leaf)}` of a model's variables (arrays or ShapeDtypeStructs)."""
  out = {}
  for collection, tree in variables.items():
    for path, leaf in torchvision_files.flatten(tree).items():
      out[path] = (collection, leaf)
  return out


def _best_prefix(part: Mapping[str, Any], model_paths) -> str:
  """The prefix under which most of `part`'s paths are model paths (ties: the shortest)."""
  votes: dict[str, int] = {}
  for q in part:
    for m in model_paths:
      if m == q or m.endswith("/" + q):
        prefix = m[:len(m) - len(q)]
        votes[prefix] = votes.get(prefix, 0) + 1
  if not votes:
    return ""
  return min(votes, key=lambda p: (-votes[p], len(p)))


@dataclasses.dataclass
class Plan:
  """What `place` decided: the arrays to load and the report (see `report_dict`)."""
  loaded: dict[str, tuple[str, np.ndarray]]     # model path -> (collection, array)
  left_at_init: dict[str, str]                  # model path -> reason
  unused: dict[str, str]                        # file path -> reason
  source: str
  prefixes: list[str]


def _shape_text(shape) -> str:
  return str(tuple(int(d) for d in shape))


def place(variables, source: Source, init) -> Plan:
  """Decides, for every model array, whether it loads (see the module docstring). `variables` may be
  abstract (`jax.eval_shape` of the model's init): nothing is computed here."""
  cfg = _cfg(init)
  model = _model_arrays(variables)
  include = re.compile(cfg["include"]) if cfg["include"] is not None else None
  exclude = re.compile(cfg["exclude"]) if cfg["exclude"] is not None else None
  if include is not None and not any(include.search(p) for p in model):
    raise InitError(f"config.init.include: expected a regular expression matching some of the model's "
                    f"arrays (e.g. {sorted(model)[:_SHOWN]}), got {cfg['include']!r}, which matches none")
  file_at: dict[str, tuple[str, Any]] = {}      # model path -> (file path, array)
  unused: dict[str, str] = {k: "no model of ours has a place for it (not converted)" for k in source.unconverted}
  prefixes = []
  for part in source.parts:
    prefix = _best_prefix(part, model)
    prefixes.append(prefix)
    for q, array in part.items():
      target = prefix + q
      if target in model:
        file_at[target] = (q, array)
      else:
        unused[q] = f"no array {target} in this model"
  if not file_at:
    raise InitError(f"config.init.path: expected a file with arrays of this model (e.g. "
                    f"{sorted(model)[:3]}), got {source.description}, none of whose "
                    f"{sum(len(p) for p in source.parts)} arrays (e.g. {sorted(source.parts[0])[:3]}) has a "
                    f"place in it: a file of another architecture?")
  loaded, left = {}, {}
  for path, (collection, leaf) in model.items():
    if path not in file_at:
      left[path] = "absent from file"
    elif include is not None and not include.search(path):
      left[path] = "not matched by init.include"
    elif exclude is not None and exclude.search(path):
      left[path] = "excluded by init.exclude"
    elif tuple(np.shape(file_at[path][1])) != tuple(leaf.shape):
      left[path] = f"shape {_shape_text(np.shape(file_at[path][1]))} in file vs {_shape_text(leaf.shape)} here"
    else:
      loaded[path] = (collection, np.asarray(file_at[path][1]))
  for path, reason in left.items():
    if path in file_at and reason.startswith("shape"):
      unused[file_at[path][0]] = f"shape differs from {path}"
  if not loaded:
    raise InitError(f"config.init: expected some arrays to load, got none from {source.description} "
                    f"({_reasons(left)})")
  plan = Plan(loaded, left, unused, source.description, prefixes)
  if cfg["strict"] and (left or unused):
    problems = [f"{p}: {r}" for p, r in list(left.items())[:_SHOWN]] + \
               [f"file {p}: {r}" for p, r in list(unused.items())[:_SHOWN]]
    raise InitError(f"config.init.strict: expected every model array loaded and every file array used, got "
                    f"{len(left)} left at init and {len(unused)} unused ({'; '.join(problems)})")
  return plan


def _reasons(left: Mapping[str, str]) -> str:
  counts: dict[str, int] = {}
  for reason in left.values():
    key = "shape differs" if reason.startswith("shape") else reason
    counts[key] = counts.get(key, 0) + 1
  return ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def apply(variables, plan: Plan):
  """`variables` (concrete) with the planned arrays put in as NumPy arrays of each array's dtype (the
  same on every process, so `jax.device_put` can place them in any sharding); new dicts."""
  def rebuild(tree, prefix, collection):
    out = {}
    for key, value in tree.items():
      path = f"{prefix}{key}"
      if isinstance(value, Mapping):
        out[key] = rebuild(value, path + "/", collection)
      elif path in plan.loaded and plan.loaded[path][0] == collection:
        out[key] = np.asarray(plan.loaded[path][1]).astype(value.dtype)
      else:
        out[key] = value
    return out
  return {collection: rebuild(tree, "", collection) for collection, tree in variables.items()}


def summary_line(plan: Plan) -> str:
  """One line: what loaded, what stayed at init (by reason), how many file arrays went unused."""
  total = len(plan.loaded) + len(plan.left_at_init)
  left = f"; {len(plan.left_at_init)} left at init ({_reasons(plan.left_at_init)})" if plan.left_at_init else ""
  unused = f"; {len(plan.unused)} file arrays unused" if plan.unused else ""
  return (f"init: loaded {len(plan.loaded)} of {total} arrays from {plan.source}{left}{unused} "
          f"(details: {REPORT_FILE})")


def report_dict(plan: Plan) -> dict[str, Any]:
  """The JSON written to `<workdir>/init_report.json`."""
  return dict(source=plan.source, prefixes=plan.prefixes, loaded=len(plan.loaded),
              left_at_init_count=len(plan.left_at_init), unused_count=len(plan.unused),
              loaded_arrays=sorted(plan.loaded), left_at_init=dict(sorted(plan.left_at_init.items())),
              unused_file_arrays=dict(sorted(plan.unused.items())), summary=summary_line(plan))


def write_report(workdir, plan: Plan) -> None:
  (paths.as_path(workdir) / REPORT_FILE).write_text(json.dumps(report_dict(plan), indent=1) + "\n")
