"""Checks of single values that reach a file, a command or an API verbatim: image references,
Python versions, CIDR blocks, namespace names, Prometheus durations. Pure; each returns the value
or raises ValueError with a one-line reason (settings put the key path in front)."""

from __future__ import annotations

import ipaddress
import re

# An OCI image reference, after the grammar of distribution/reference (reference.go):
#   reference := name [":" tag] ["@" digest];  name := [domain "/"] path-component ["/" path-component]*
#   domain-component := [a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9];  port := [0-9]+
#   path-component := [a-z0-9]+ (separator [a-z0-9]+)*;  separator := [_.] | "__" | "-"+
#   tag := [\w][\w.-]{0,127};  digest := algorithm ":" [0-9a-fA-F]{32,}
# Matched with fullmatch and re.ASCII: no whitespace, newline, '#', quote or shell metacharacter
# can get through (`$` alone would let a trailing newline pass).
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[_.]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?/)?"
    rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?",
    re.ASCII,
)
PYTHON_VERSION = re.compile(r"[0-9]{1,2}\.[0-9]{1,3}(?:\.[0-9]{1,4})?", re.ASCII)
"""A Python version as MLflow records it in MLmodel (``3.11`` or ``3.11.7``)."""
_PYTHON_PLACEHOLDER = "{python_version}"


def check_image_reference(value: str, *, placeholder: bool = False) -> str:
    """``value`` if it is an image reference (``{python_version}`` allowed when ``placeholder``),
    else ValueError. Used for ``image.baseImage`` and the base image it renders to."""
    probe = (value.replace(_PYTHON_PLACEHOLDER, "3.11") if placeholder else value) if isinstance(value, str) else ""
    if not IMAGE_REFERENCE.fullmatch(probe):
        want = "registry/name[:tag][@digest]" + (", '{python_version}' allowed" if placeholder else "")
        raise ValueError(f"not an image reference ({want}; got {value!r})")
    return value


def check_cidr(value: str) -> str:
    """``value`` if it is an IPv4/IPv6 CIDR block (``10.0.0.0/8``), else ValueError."""
    if not isinstance(value, str) or "/" not in value:
        raise ValueError(f"not a CIDR block such as '10.0.0.0/8' (got {value!r})")
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"not a CIDR block such as '10.0.0.0/8' (got {value!r})") from None
    return value


_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)


def check_namespace(value: str) -> str:
    """``value`` if it is a Kubernetes namespace name (an RFC 1123 label), else ValueError."""
    if not isinstance(value, str) or not _NAMESPACE.fullmatch(value):
        raise ValueError(f"not a namespace name (lowercase letters, digits, '-'; got {value!r})")
    return value


def cidr_within(inner: str, outer: str) -> bool:
    """True when the CIDR block ``inner`` lies inside ``outer`` (same IP version)."""
    a, b = ipaddress.ip_network(inner, strict=False), ipaddress.ip_network(outer, strict=False)
    return a.version == b.version and a.subnet_of(b)  # type: ignore[arg-type]


def check_python_version(value: str) -> str:
    """``value`` if it is a Python version string (``3.11``, ``3.11.7``), else ValueError."""
    if not isinstance(value, str) or not PYTHON_VERSION.fullmatch(value):
        raise ValueError(f"not a Python version such as '3.11' or '3.11.7' (got {value!r})")
    return value


def duration_seconds(text: str) -> float:
    """A Prometheus duration made of one unit (``30s``, ``1m``, ``500ms``, ``2h``) in seconds."""
    m = re.fullmatch(r"([0-9]+)(ms|s|m|h|d|w|y)", text)
    if m is None:
        raise ValueError(f"not a duration such as '30s' or '1m' (got {text!r})")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}[m.group(2)]
    return int(m.group(1)) * unit
