"""Parsing and printing of human sizes (``8GB``, ``24GiB``, ``512MB``) and counts."""

from __future__ import annotations

import re

from loratune.errors import ConfigError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


# No accelerator (or host) holds a pebibyte; anything above is a typo or an overflow (``1e400GB``).
MAX_SIZE_BYTES = 1024**5


def parse_size(text: str, what: str = "size") -> int:
    """``"8GB"`` → bytes. GPU vendors sell binary GiB as "GB", so a bare "GB" means GiB (an
    "8 GB" card reports 8 GiB to ``nvidia-smi``); write ``8e9B`` for decimal bytes.

    Refused, naming ``what`` (the flag or field) and the text: anything but a plain positive number and
    unit (``nan``, ``inf``, a sign), a value that rounds to 0 bytes, and one above
    :data:`MAX_SIZE_BYTES` (which includes every overflow to infinity)."""
    import math

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    if not m:
        raise ConfigError(f"cannot read {what} {text!r}", "write a positive size like 8GB, 24GiB or 512MB")
    value, unit = float(m.group(1)), m.group(2).lower()
    if unit in ("gb", "g"):
        unit = "gib"
    elif unit in ("mb", "m"):
        unit = "mib"
    elif unit in ("tb", "t"):
        unit = "tib"
    elif unit in ("kb", "k"):
        unit = "kib"
    if unit not in _UNITS:
        raise ConfigError(
            f"unknown size unit {m.group(2)!r} in {what} {text!r}", "use B, MB, GB, TB (binary) or MiB/GiB"
        )
    n = value * _UNITS[unit]
    if not math.isfinite(n) or n > MAX_SIZE_BYTES:
        raise ConfigError(
            f"{what} {text!r} is more than 1 PiB (no device holds that)", "give one device's memory, e.g. 24GB or 80GiB"
        )
    if int(n) < 1:
        raise ConfigError(f"{what} must be positive, got {text!r}", "give a size like 8GB, 24GiB or 512MB")
    return int(n)


def parse_bytes(text: str, what: str = "size") -> int:
    """Alias of :func:`parse_size` (its old name)."""
    return parse_size(text, what)


def check_count(value: object, what: str, most: int, fix: str) -> None:
    """A count (batch size, sequence length, examples): a whole number from 1 to ``most``; ``what``
    names the field and flag in the message."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what} must be a whole number, got {value!r}", fix)
    if value < 1:
        raise ConfigError(f"{what} must be at least 1, got {value}", fix)
    if value > most:
        raise ConfigError(f"{what} = {value:,} is absurdly large (at most {most:,})", fix)


def fmt_bytes(n: float) -> str:
    """Bytes as GiB/MiB with two decimals (binary units, as GPU tools report them)."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def fmt_count(n: int) -> str:
    """811008 → '811,008'."""
    return f"{n:,}"


def parse_int_list(text: str, *, what: str, upper: int | None = None) -> list[int]:
    """``"6-11"``, ``"0,2,4"``, ``"20-"`` (to the end, needs ``upper``) → sorted unique ints."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)\s*-\s*(\d*)", part)
        try:
            if m:
                lo = int(m.group(1))
                if m.group(2):
                    hi = int(m.group(2))
                elif upper is not None:
                    hi = upper - 1
                else:
                    raise ValueError
                if hi < lo:
                    raise ValueError
                if upper is not None and hi >= upper:
                    out.add(hi)  # refused below, before a huge range is ever expanded
                    continue
                if hi - lo > 1_000_000:
                    raise ConfigError(f"{what} {text!r} spans over a million layers", "give the model's layer range")
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise ConfigError(
                f"bad {what} {text!r}", "write a range like 6-11, a list like 0,2,4, or an open range like 20-"
            ) from None
    if not out:
        raise ConfigError(f"empty {what} {text!r}", "give at least one index, e.g. 6-11")
    if upper is not None and max(out) >= upper:
        raise ConfigError(
            f"{what} {text!r} goes past the model's last layer ({upper - 1})",
            f"use indices between 0 and {upper - 1}",
        )
    return sorted(out)
