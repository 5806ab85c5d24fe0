"""Input limits checked before MLflow parses a request: JSON nesting depth, error message size.

Python's JSON decoder recurses once per nesting level: a body of 100,000 ``[`` raises
``RecursionError`` (an HTTP 500 from MLflow's app), and a few hundred levels already fail
deeper in MLflow's parsing. ``json_depth_exceeds`` rejects such bodies before anything parses
them, in C-speed passes over the bytes (``bytes.translate`` keeps only the brackets, numpy sums
them), so a 6 MB body costs about a millisecond and a typical request a few microseconds.
"""

from __future__ import annotations

import re

import numpy as np

_BRACKETS = b"[]{}"
_DELETE = bytes(b for b in range(256) if b not in _BRACKETS)
# "[" and "{" -> +1, "]" and "}" -> -1 (as int8), after everything else is deleted
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)

# Error messages that repeat the request (MLflow's "Input: <the whole body>" after a JSON
# decoding error) are cut: the client has its body, a log line or a response of megabytes helps no one.
MAX_MESSAGE_CHARS = 4096
MAX_ECHO_CHARS = 256
_ECHO_MARKER = "\nInput: \n"


def _max_depth(brackets: bytes) -> int:
    steps = np.frombuffer(brackets.translate(_STEP), dtype=np.int8)
    return int(np.cumsum(steps, dtype=np.int64).max())


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """True if the JSON document ``body`` nests arrays/objects more than ``limit`` deep.

    Brackets inside strings are ignored. The bytes need not be valid JSON (the parser reports
    what else is wrong); an unbalanced ``]`` inside a string can only make the count lower, and
    then the parser's own recursion limit still applies (``serving.invocations`` answers 400).
    """
    brackets = body.translate(None, _DELETE)
    if len(brackets) <= limit:  # not enough brackets to nest deeper than the limit
        return False
    if _max_depth(brackets) <= limit:
        return False
    # Maybe brackets inside strings: count again without the strings.
    stripped = _JSON_STRING.sub(b"", body).translate(None, _DELETE)
    return len(stripped) > limit and _max_depth(stripped) > limit


def bounded_message(message: str) -> str:
    """``message`` with any echoed input cut to ``MAX_ECHO_CHARS`` and the whole to
    ``MAX_MESSAGE_CHARS``."""
    at = message.find(_ECHO_MARKER)
    if at != -1:
        start = at + len(_ECHO_MARKER)
        echoed = len(message) - start
        if echoed > MAX_ECHO_CHARS:
            message = f"{message[: start + MAX_ECHO_CHARS]}... [{echoed - MAX_ECHO_CHARS} more characters]"
    if len(message) > MAX_MESSAGE_CHARS:
        cut = len(message) - MAX_MESSAGE_CHARS
        message = f"{message[:MAX_MESSAGE_CHARS]}... [{cut} more characters]"
    return message
