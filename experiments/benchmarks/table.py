"""The one formatter of benchmark rows: a markdown table from a list of dicts.

    print(table.markdown(rows, ["model", "step_ms", "images_per_s"], title="## Training step"))

Columns are the given keys (default: every key, in first-seen order); a float prints with `digits`
significant decimals, None or a missing key as '-', anything else with `str`.
"""

from __future__ import annotations

import math


def cell(value, digits: int = 3) -> str:
  """One cell: floats to `digits` decimals below 100 (fewer above), None / NaN / missing as '-'."""
  if value is None:
    return "-"
  if isinstance(value, bool):
    return "yes" if value else "no"
  if isinstance(value, float):
    if not math.isfinite(value):
      return "-" if math.isnan(value) else str(value)
    return f"{value:.{digits if abs(value) < 100 else 1}f}"
  if isinstance(value, int):
    return f"{value:,}" if abs(value) >= 100_000 else str(value)
  return str(value)


def markdown(rows: list[dict], columns: list[str] | None = None, title: str | None = None, digits: int = 3,
             headers: dict | None = None) -> str:
  """Rows as a markdown table (module docstring); `headers` renames columns in the header line."""
  if columns is None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
  headers = headers or {}
  lines = [title] if title else []
  lines.append("| " + " | ".join(headers.get(c, c) for c in columns) + " |")
  lines.append("|" + "---|" * len(columns))
  for r in rows:
    lines.append("| " + " | ".join(cell(r.get(c), digits) for c in columns) + " |")
  return "\n".join(lines)


def select(rows: list[dict], **where) -> list[dict]:
  """The rows whose fields equal every `where` item (e.g. `select(rows, table='parts', side='ours')`)."""
  return [r for r in rows if all(r.get(k) == v for k, v in where.items())]
