"""Command-line pieces shared by `python -m dense_jax.train` and `python -m dense_jax.evaluate`.

- `define_config_flag()`: the `--config path.py[:arg]` flag (ml_collections' config file flag) with
  three changes: the config gets every optional key of the trainer's schema that the experiment file
  left out, at its default (`dense_jax.train.config`), so every key the README lists can be
  overridden with `--config.key=value`; keys whose value is None (`dataset.image_size`,
  `dataset.data_dir`, `stop_at_step`, `eval_max_batches`, ...) take a Python literal (`64`,
  `(64, 48)`, `0.5`, `true`, `None`), anything else as a string (`/data/voc`); and an experiment file
  that cannot be loaded (no such file, a bad `:arg`) is one line naming the file instead of a traceback.
- `parse_flags(argv, prog)`: absl's flag parsing where every bad command line (a missing required
  flag, an unknown flag, a value of the wrong type, a config key the config does not have) prints one
  `ERROR: ...` line to stderr and exits with EXIT_BAD_CONFIG; `bad_flags_message` is that line, for
  programs that check a trainer command line in-process (`experiments.sweep`).
- `ArgumentParser`: argparse with the same convention, for the programs built on argparse.

Exit codes of both programs: 0 done, 1 non-finite loss (training), 2 (EXIT_BAD_CONFIG) bad
configuration or bad input found before or while running: the command line, the config, the workdir,
the checkpoint's structure, a damaged dataset file; 3 (EXIT_CANNOT_WRITE) the run's outputs could
not be written (a full disk, no permission), the checkpoints written before that intact.
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib.util
import os
import sys

from absl import flags
from ml_collections import config_flags

from dense_jax.train import config as config_lib

EXIT_NON_FINITE_LOSS = 1
EXIT_BAD_CONFIG = 2
EXIT_CANNOT_WRITE = 3


class NoneDefaultParser(flags.ArgumentParser):
  """Override parser for config keys whose value is None: a Python literal, else the text itself.

  `64` -> 64, `(64, 48)` and `64,48` -> (64, 48), `1e-3` -> 0.001, `true`/`false` -> bool,
  `None` -> None, `/data/voc` -> '/data/voc'. A text that happens to read as a number (a directory
  named `2012`) can be quoted: `--config.dataset.data_dir="'2012'"`.
  """

  def parse(self, argument):
    if not isinstance(argument, str):
      return argument
    if argument.lower() in ("true", "false"):
      return argument.lower() == "true"
    try:
      return ast.literal_eval(argument)
    except (SyntaxError, ValueError):
      return argument

  def flag_type(self):
    return "config literal"


config_flags.register_flag_parser_for_type(type(None), NoneDefaultParser())


def with_optional_defaults(config):
  """`config` (a ConfigDict, unlocked) with every key of `config_lib.OPTIONAL_DEFAULTS` and
  `config_lib.DATASET_DEFAULTS` it lacks added at its default, so that the command line reaches it.
  Keys the config has are left as they are; nothing is validated (that is `config_lib.resolve`)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  if not isinstance(config, ml_collections.ConfigDict):
    return config
  with config.unlocked():
    for key, default in config_lib.OPTIONAL_DEFAULTS.items():
      if key not in config:
        config[key] = copy.deepcopy(default)
      elif isinstance(default, dict) and isinstance(config[key], ml_collections.ConfigDict):
        for sub, value in default.items():
          if sub not in config[key] and key != "tasks":   # tasks: the config's list is the whole list
            config[key][sub] = copy.deepcopy(value)
    if "dataset" in config and isinstance(config.dataset, ml_collections.ConfigDict):
      for key, default in config_lib.DATASET_DEFAULTS.items():
        if key not in config.dataset:
          config.dataset[key] = default
  return config


class _ConfigFileParser(flags.ArgumentParser):
  """`path.py[:arg]` -> `get_config(arg)` of that file (as ml_collections' own parser does), plus
  `with_optional_defaults`, locked; a file that is missing or raises ValueError/TypeError (a bad `:arg`)
  is one line naming it."""

  def __init__(self, lock_config: bool = True):
    self._lock_config = lock_config

  def parse(self, argument):
    if not isinstance(argument, str):
      return argument
    path, colon, arg = argument.partition(":")
    if not os.path.isfile(path):
      raise ValueError(f"no such experiment file {path!r} (expected path.py[:arg], e.g. "
                       f"experiments/unet_dense_shapes.py:quick)")
    name = f"_dense_jax_config_{abs(hash(os.path.abspath(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module   # dataclasses defined in a config file look their module up there
    try:
      spec.loader.exec_module(module)
      config = module.get_config(arg) if colon else module.get_config()
    except (TypeError, ValueError) as e:
      raise ValueError(f"{argument}: {type(e).__name__}: {_one_line(e)}") from None
    config = with_optional_defaults(config)
    if self._lock_config and callable(getattr(config, "lock", None)):
      config.lock()
    return config

  def flag_type(self):
    return "config object"


def define_config_flag(help_string: str, flag_values: flags.FlagValues = flags.FLAGS,
                       sys_argv: list[str] | None = None) -> flags.FlagHolder:
  """Defines `--config` (see the module docstring) and returns its holder. The `--config.*` overrides
  are read from `sys_argv`, the whole command line `flag_values` will parse (default: `sys.argv`)."""
  holder = config_flags.DEFINE_config_file("config", None, help_string, flag_values=flag_values,
                                           lock_config=True, sys_argv=sys_argv)
  flag_values["config"].parser = _ConfigFileParser(lock_config=True)
  return holder


def _config_spec(argv: list[str]) -> str | None:
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if spec is None and "--config" in argv and argv.index("--config") + 1 < len(argv):
    spec = argv[argv.index("--config") + 1]
  return spec


def explain_bad_override(argv: list[str], error: Exception) -> str:
  """Names the `--config.a.b=v` override whose key the experiment's config lacks, with the keys it has."""
  spec = _config_spec(argv)
  try:
    config = _ConfigFileParser(lock_config=False).parse(spec)
    path = spec.split(":", 1)[0]
  except Exception:  # pylint: disable=broad-except  # fall back to the bare error
    return f"ERROR: a --config.* override names a key the config does not have: {error}"
  for a in argv:
    if not a.startswith("--config."):
      continue
    node, where = config, "config"
    for key in a[len("--config."):].split("=", 1)[0].split("."):
      if not hasattr(node, "keys") or key not in node:
        known = sorted(node.keys()) if hasattr(node, "keys") else []
        return (f"ERROR: {a.split('=', 1)[0]}: {where} has no key {key!r} (it has {known}); only keys the "
                f"experiment file {path} defines (and the trainer's optional keys) can be overridden")
      node, where = node[key], f"{where}.{key}"
  return f"ERROR: a --config.* override names a key the config does not have: {error}"


def _one_line(error: Exception) -> str:
  text = " ".join(line.strip() for line in str(error).strip().splitlines() if line.strip())
  return text or type(error).__name__


def _is_closed_event_loop_noise(exc_value) -> bool:
  return isinstance(exc_value, RuntimeError) and str(exc_value) == "Event loop is closed"


def quiet_closed_event_loop_errors() -> None:
  """Drops the 'Event loop is closed' RuntimeErrors that orbax's tensorstore reads report through
  `sys.unraisablehook` when a damaged checkpoint fails to read: their callbacks land after orbax has
  closed its event loop, nothing is lost, and each would print a traceback where the programs promise
  one line per problem. Every other unraisable exception goes to the previous hook."""
  previous = sys.unraisablehook
  if getattr(previous, "_dense_jax_quiet", False):
    return

  def hook(unraisable):
    if not _is_closed_event_loop_noise(unraisable.exc_value):
      previous(unraisable)

  hook._dense_jax_quiet = True   # pylint: disable=protected-access
  sys.unraisablehook = hook


def bad_flags_message(argv: list[str], prog: str, error: Exception) -> str | None:
  """The one `ERROR: ...` line for `error`, raised by parsing the command line `argv` of `python -m
  prog` (see `parse_flags`); None when `error` is not a bad command line (a bug, to be raised)."""
  if isinstance(error, (AttributeError, KeyError)):   # raised by ml_collections for an unknown --config.* key
    return explain_bad_override(argv, error)
  if isinstance(error, flags.IllegalFlagValueError):
    text = _one_line(error)
    if "must have a value other than None" in text:   # a required flag left out
      name = text.split("flag --", 1)[-1].split("=", 1)[0]
      return f"ERROR: --{name} is required (python -m {prog} --helpshort lists the flags)"
    return f"ERROR: {text}"
  if isinstance(error, (flags.Error, ValueError, TypeError)):
    return f"ERROR: {_one_line(error)} (python -m {prog} --helpshort lists the flags)"
  return None


def parse_flags(argv: list[str], prog: str) -> list[str]:
  """`flags.FLAGS(argv)`, or one `ERROR:` line on stderr and exit EXIT_BAD_CONFIG (see module doc).
  Also installs `quiet_closed_event_loop_errors` for the program's lifetime."""
  quiet_closed_event_loop_errors()
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except
    message = bad_flags_message(argv, prog, e)
    if message is None:
      raise
  print(message, file=sys.stderr, flush=True)
  sys.exit(EXIT_BAD_CONFIG)


class ArgumentParser(argparse.ArgumentParser):
  """`argparse.ArgumentParser` for the project's other programs (`experiments.sweep`, ...): a bad command
  line (a missing argument, an unknown flag, a value of the wrong type) is one `ERROR: ...` line on
  stderr and exit EXIT_BAD_CONFIG, as in the trainer, instead of argparse's usage text and exit 2."""

  def error(self, message):
    print(f"ERROR: {message} (python -m {self.prog} --help lists the flags)", file=sys.stderr, flush=True)
    sys.exit(EXIT_BAD_CONFIG)
