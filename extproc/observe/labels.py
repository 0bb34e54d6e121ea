"""Metric label values a client can influence, kept bounded.

The model a request names is the client's text: it reaches the GenAI histograms and the cost counter as
a label, and every distinct label value is a new series in every worker's multiprocess file and in the
keyless `/metrics`. Left alone, one request with a megabyte-long or made-up model name grows both
without bound. So a model becomes a label only when the operator named it (a provider's `model` or
`models`) or when it looks like a model name and matches a glob the operator wrote (routing rules,
prices); even then at most `MAX_DYNAMIC` such names per worker get their own series. Everything else is
`other`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fnmatch import fnmatchcase

OTHER = "other"
MAX_LABEL_CHARS = 64
MAX_DYNAMIC = 64  # per worker process; the total is bounded by workers × this
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,63}$")


class ModelLabels:
    """`label(model)`: the label value for a model a request named (or `other`)."""

    def __init__(self, known: Iterable[str], globs: Iterable[str]) -> None:
        self._known = frozenset(m for m in known if len(m) <= MAX_LABEL_CHARS)
        self._globs = tuple(dict.fromkeys(g for g in globs if g and g != "*"))
        self._dynamic: set[str] = set()
        self._others: set[str] = set()  # names already found to be `other` (bounded: cleared when full)

    def label(self, model: str | None) -> str:
        if not model:
            return ""
        if model in self._known or model in self._dynamic:
            return model
        if model in self._others:
            return OTHER
        if (len(self._dynamic) < MAX_DYNAMIC and _MODEL_NAME.match(model)
                and any(fnmatchcase(model, g) for g in self._globs)):
            self._dynamic.add(model)
            return model
        if len(self._others) >= 4 * MAX_DYNAMIC:
            self._others.clear()
        if len(model) <= MAX_LABEL_CHARS:
            self._others.add(model)
        return OTHER
