"""Deterministic resource names, derived from the model name and version.

Every platform has its own naming rules; these helpers keep one scheme across targets so that
``fraud-detector`` version 7 is ``fraud-detector-v7`` everywhere it fits.
"""

from __future__ import annotations

import hashlib
import re

_INVALID = re.compile(r"[^a-z0-9-]+")


def dns_label(text: str, max_len: int = 63) -> str:
    """An RFC 1123 label: lowercase alphanumerics and '-', starts and ends alphanumeric.

    Too long a label is cut and given a short hash of the full text, so two long names that
    share a prefix stay distinct.
    """
    s = _INVALID.sub("-", text.lower()).strip("-")
    s = re.sub(r"-{2,}", "-", s) or "model"
    if s[0].isdigit():
        s = f"m-{s}"
    if len(s) > max_len:
        digest = hashlib.sha256(text.encode()).hexdigest()[:6]
        s = f"{s[: max_len - 7].rstrip('-')}-{digest}"
    return s


def base_name(model_name: str, max_len: int = 63) -> str:
    """The name shared by every resource of a model (``fraud-detector``)."""
    return dns_label(model_name, max_len)


def version_name(model_name: str, version: str, max_len: int = 63) -> str:
    """The name of a per-version resource (``fraud-detector-v7``)."""
    suffix = f"-v{version}"
    return f"{base_name(model_name, max_len - len(suffix))}{suffix}"
