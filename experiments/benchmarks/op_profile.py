"""Where a compiled XLA program spends its time, by op class: one table row per class.

    from experiments.benchmarks.op_profile import profile_by_class, print_profile
    rows = profile_by_class(jax.jit(step).lower(*args).compile(), args, steps=3)
    print_profile("FCN-ResNet50 train step", rows)

Method: run the compiled program `steps` times under `jax.profiler.trace(create_perfetto_trace=True)`,
read the trace's complete events (one per executed HLO instruction, named after it: `ynn_fusion.3`,
`dot_general.7`, `while.4`, ...), take each event's *self* time (its duration minus the events nested
in it on the same thread, so a `while` loop is charged only its own overhead and its body's matmuls
count as matmuls), and map each instruction name to the JAX primitive in its HLO metadata
(`op_name="jit(step)/transpose(jvp(...))/conv_general_dilated"`). The class is the primitive's kind,
split into forward and backward (`transpose(` in the op name: the VJP):

  conv            `conv_general_dilated` (XLA's convolutions: forward, input gradient, XLA's dw)
  matmul          `dot_general` (1x1 convs, the blocked conv weight gradient, dense layers)
  layout copies   pad, concatenate, slice, dynamic-slice, transpose, copy, reshape, gather, select_n...
  reductions      reduce_* (batch-norm statistics, loss sums)
  elementwise     everything else (activations, normalisation, optimizer update)

Times are summed over threads (XLA:CPU runs independent ops concurrently), so the classes add up to
the op time, which can exceed the wall time. Works on every backend whose profiler emits per-op
events (CPU thunks, GPU kernels); on GPU kernel names differ from HLO names and fall into "other"
unless they match.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import tempfile

import jax

_LAYOUT = ("pad", "concatenate", "slice", "dynamic_slice", "dynamic_update_slice", "transpose", "copy",
           "reshape", "broadcast_in_dim", "gather", "scatter", "select_n", "rev", "squeeze", "expand_dims",
           "convert_element_type", "iota", "bitcast")


def op_class(op_name: str) -> str:
  """The class of an HLO instruction from its metadata op_name (see the module docstring)."""
  primitive = op_name.rsplit("/", 1)[-1]
  primitive = re.sub(r"\[.*$", "", primitive)
  if primitive.startswith("conv_general_dilated"):
    kind = "conv"
  elif primitive.startswith("dot_general"):
    kind = "matmul"
  elif primitive.startswith(_LAYOUT):
    kind = "layout copies"
  elif primitive.startswith(("reduce", "argmax", "argmin", "cumsum")):
    kind = "reductions"
  elif primitive in ("while", "cond", "scan", "closed_call", ""):
    kind = "control flow"
  else:
    kind = "elementwise"
  return f"{kind} {'bwd' if 'transpose(' in op_name else 'fwd'}"


def hlo_op_names(hlo_text: str) -> dict[str, str]:
  """HLO instruction name -> its metadata op_name, from a compiled module's text."""
  names = {}
  for m in re.finditer(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*?metadata=\{[^}]*?op_name=\"([^\"]*)\"", hlo_text, re.M):
    names[m.group(1)] = m.group(2)
  return names


def self_times(events):
  """(name, self-time µs) per complete event: duration minus the nested events' on the same thread."""
  by_thread = collections.defaultdict(list)
  for e in events:
    by_thread[(e.get("pid"), e.get("tid"))].append(e)
  out = []
  for evs in by_thread.values():
    evs.sort(key=lambda e: (e["ts"], -e.get("dur", 0)))
    stack = []  # [event, child time]
    for e in evs:
      while stack and e["ts"] >= stack[-1][0]["ts"] + stack[-1][0].get("dur", 0):
        done, child = stack.pop()
        out.append((done["name"], done.get("dur", 0) - child))
      if stack:
        stack[-1][1] += e.get("dur", 0)
      stack.append([e, 0.0])
    while stack:
      done, child = stack.pop()
      out.append((done["name"], done.get("dur", 0) - child))
  return out


def profile_by_class(compiled, args, steps: int = 3) -> dict[str, float]:
  """ms per run of `compiled(*args)` by op class (see the module docstring), plus 'total op time'."""
  names = hlo_op_names(compiled.as_text())
  jax.block_until_ready(compiled(*args))
  with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp, create_perfetto_trace=True):
      for _ in range(steps):
        jax.block_until_ready(compiled(*args))
    paths = glob.glob(os.path.join(tmp, "**", "*.trace.json.gz"), recursive=True)
    if not paths:
      return {}
    with gzip.open(paths[0]) as f:
      trace = json.load(f)
  events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X" and e.get("name") in names]
  totals: dict[str, float] = collections.defaultdict(float)
  for name, us in self_times(events):
    totals[op_class(names[name])] += us / 1e3 / steps
  totals = dict(sorted(totals.items(), key=lambda kv: -kv[1]))
  totals["total op time"] = sum(totals.values())
  return totals


def profile_rows(rows: dict[str, float]) -> list[dict]:
  """`profile_by_class`'s result as rows: op class, ms per step, share of the op time (the total last)."""
  total = rows.get("total op time", 0.0) or float("nan")
  return [{"op_class": name, "ms": ms, "share": ms / total} for name, ms in rows.items()]


def print_profile(title: str, rows: dict[str, float]) -> None:
  """A markdown table of `profile_rows`: class, ms per step, share of the op time."""
  from experiments.benchmarks import table, timing  # pylint: disable=g-import-not-at-top
  print(table.markdown(profile_rows(rows), ["op_class", "ms", "share"], digits=2,
                       title=f"\n{title}: time by op class (self time summed over threads, ms per step; "
                             f"{timing.load()})"))
