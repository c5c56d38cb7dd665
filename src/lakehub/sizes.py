"""Sizes people type (``10MiB``, ``1.5GB``, ``2048``) and sizes people read (``1.2 MiB``)."""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1}
for _i, _p in enumerate("kmgtp", start=1):
    _UNITS[_p] = _UNITS[f"{_p}ib"] = 1024**_i  # k, M, G: binary, as in most tools
    _UNITS[f"{_p}b"] = 1000**_i
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def parse_size(text: str) -> int:
    """Bytes in ``text``: a number with an optional unit (B, KB/MB/GB/TB, KiB/MiB/GiB/TiB)."""
    match = _SIZE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise ValueError(f"invalid size {text!r}: use a number with an optional unit like 10MiB")
    return int(float(match.group(1)) * _UNITS[unit])


def human(n: int) -> str:
    """``512 B``, ``1.0 KiB``, ``1.2 MiB``... (binary units, one decimal)."""
    if n < 1024:
        return f"{n} B"
    value, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"
