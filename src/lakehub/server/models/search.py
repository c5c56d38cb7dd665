"""MLflow's search filter language, the part people write: ``metrics.rmse < 1 and params.depth
= '3' and tags.team = 'x' and attributes.status = 'FINISHED'`` (``and`` only, as in MLflow), and
its ``order_by`` (``metrics.rmse DESC``). Parsed into clauses the stores turn into SQL."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from lakehub.server.models.base import ModelsError

T = TypeVar("T")

KINDS = {
    "metric": "metric",
    "metrics": "metric",
    "param": "param",
    "params": "param",
    "parameter": "param",
    "parameters": "param",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attr",
    "attributes": "attr",
    "attr": "attr",
    "run": "attr",
    "dataset": "dataset",
    "datasets": "dataset",
}
_AND = re.compile(r"\s+and\s+", re.I)
_NUM = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


@dataclass(frozen=True)
class Clause:
    kind: str  # metric | param | tag | attr | dataset
    key: str
    op: str
    value: Any  # float for metrics and time attributes, str, or a list of str for IN


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "`\"'":
        return text[1:-1]
    return text


def _split_and(text: str) -> list[str]:
    """Split on ``and`` outside quotes."""
    parts, buf, quote = [], "", ""
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            buf += c
            if c == quote:
                quote = ""
        elif c in "'\"`":
            quote = c
            buf += c
        else:
            m = _AND.match(text, i)
            if m:
                parts.append(buf)
                buf = ""
                i = m.end()
                continue
            buf += c
        i += 1
    parts.append(buf)
    return [p.strip() for p in parts if p.strip()]


def parse_filter(text: str | None, default_kind: str = "attr") -> list[Clause]:
    if not text or not text.strip():
        return []
    out = []
    for part in _split_and(text.strip()):
        m = re.match(
            r"^\s*(?P<ident>(?:[A-Za-z_]+\.)?(?:`[^`]+`|\"[^\"]+\"|[A-Za-z0-9_.\-/:]+?))\s*"
            r"(?P<op>!=|>=|<=|=|>|<|(?i:not\s+in)|(?i:in)|(?i:ilike)|(?i:like))\s*(?P<value>.+?)\s*$",
            part,
        )
        if not m:
            raise ModelsError(f"cannot read the filter {part!r}: write e.g. metrics.rmse < 1")
        ident, op, raw = m["ident"], " ".join(m["op"].upper().split()), m["value"]
        head, dot, rest = ident.partition(".")
        if dot and head.lower() in KINDS and not head.startswith(("`", '"')):
            kind, key = KINDS[head.lower()], _unquote(rest)
        else:
            kind, key = default_kind, _unquote(ident)
        if op in ("IN", "NOT IN"):
            if not (raw.startswith("(") and raw.endswith(")")):
                raise ModelsError(f"{op} takes a list: {key} {op} ('a', 'b')")
            value: Any = [_unquote(v.strip()) for v in raw[1:-1].split(",") if v.strip()]
        elif kind == "metric" or (_NUM.match(raw) and not raw.startswith(("'", '"'))):
            if not _NUM.match(raw):
                raise ModelsError(f"metrics compare with numbers: {part!r}")
            value = float(raw)
        else:
            if not (len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\""):
                raise ModelsError(f"put text in quotes: {part!r}")
            value = raw[1:-1]
        out.append(Clause(kind, key, op, value))
    return out


def parse_order(items: list[str] | None) -> list[tuple[str, str, bool]]:
    """``["metrics.rmse DESC", "start_time"]`` -> [(kind, key, ascending)]."""
    out = []
    for item in items or []:
        text = item.strip()
        asc = True
        low = text.lower()
        if low.endswith(" desc"):
            asc, text = False, text[:-5].strip()
        elif low.endswith(" asc"):
            text = text[:-4].strip()
        head, dot, rest = text.partition(".")
        if dot and head.lower() in KINDS:
            out.append((KINDS[head.lower()], _unquote(rest), asc))
        else:
            out.append(("attr", _unquote(text), asc))
    return out


def page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def offset_of(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = int(json.loads(base64.urlsafe_b64decode(token.encode()))["offset"])
    except (ValueError, KeyError, TypeError):
        raise ModelsError("invalid page_token") from None
    if offset < 0:
        raise ModelsError("invalid page_token")
    return offset


def tags_match(raw: str, clauses: list[Clause]) -> bool:
    """Whether tags kept as a JSON object pass every tag clause (a missing tag is ``!=`` any
    value and fails the rest, as in MLflow)."""
    tags = json.loads(raw)
    for c in clauses:
        have = tags.get(c.key)
        if c.op == "!=":
            ok = have != c.value
        elif have is None:
            ok = False
        elif c.op == "=":
            ok = have == c.value
        elif c.op in ("LIKE", "ILIKE"):
            pattern = "".join(
                ".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in str(c.value)
            )
            ok = re.fullmatch(pattern, have, re.I | re.S if c.op == "ILIKE" else re.S) is not None
        elif c.op == "IN":
            ok = have in c.value
        elif c.op == "NOT IN":
            ok = have not in c.value
        else:
            raise ModelsError(f"tags compare with = != LIKE ILIKE IN, not {c.op}")
        if not ok:
            return False
    return True


def page_list(items: list[T], max_results: int, token: str | None) -> tuple[list[T], str | None]:
    offset = offset_of(token)
    more = len(items) > offset + max_results
    return items[offset : offset + max_results], page_token(offset + max_results) if more else None
