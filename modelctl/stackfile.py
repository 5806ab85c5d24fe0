"""Reading and safely editing ``Pulumi.<stack>.yaml``.

* **Errors name the file**: a YAML error is one line, ``Pulumi.dev.yaml:12:3: <problem>``; an empty
  or missing ``config:`` section, an unreadable file, a read-only file are each one line too.
* **Round trip that keeps the file's layout**: the document is edited with ruamel.yaml's
  round-trip loader, dumped with the indentation detected from the file, and the edit is then
  applied to the original text line by line (:func:`merge_edit`), so every line the edit does not
  touch stays byte for byte what it was, whatever ruamel would have made of it.
* **Comments stay with their keys** (:func:`insert_key`, :func:`delete_key`): ruamel hangs the
  comment lines above a key on the last value before it; moving a key in or out carries those
  lines over, so they keep preceding the key they were written for.
* **Edits never get lost** (:func:`locked`, :func:`atomic_write`): a lock file beside the stack file
  serialises concurrent promote/rollback runs (each reads the file after it holds the lock, so it
  re-validates against the other's edit); the write goes to a temporary file renamed over the stack
  file (same mode), only if the file still has the content the edit was computed from.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import fcntl
import hashlib
import io
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, MarkedYAMLError, YAMLError
from ruamel.yaml.tokens import CommentToken

from modelctl.cli import CommandError

LOCK_TIMEOUT_SECONDS = float(os.environ.get("MODELCTL_LOCK_TIMEOUT", "60"))
"""How long promote/rollback wait for another run editing the same stack file."""


# --------------------------------------------------------------------------- reading


def read_text(path: Path) -> str:
    if not path.exists():
        raise CommandError(f"no stack config file {path}")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {path}: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def yaml_error(path: Path, exc: YAMLError) -> CommandError:
    """``file:line:column: problem (context)`` from a ruamel error, without its source excerpt."""
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = exc.problem or exc.context or type(exc).__name__
        if "\t" in problem or "'\\t'" in problem:
            problem += " (YAML indents with spaces, not tabs)"
        context = ""
        if exc.context and exc.problem and exc.context_mark is not None:
            context = f" ({exc.context} at line {exc.context_mark.line + 1})"
        return CommandError(f"{where}: YAML error: {problem}{context}")
    return CommandError(f"{path}: YAML error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


def parse(path: Path, text: str, *, round_trip: bool) -> Any:
    y = _rt_yaml(text) if round_trip else YAML(typ="safe")
    try:
        return y.load(text)
    except YAMLError as exc:
        raise yaml_error(path, exc) from exc


def config_section(path: Path, data: Any) -> Any:
    """The ``config:`` mapping, or an error naming the file and what is wrong with it."""
    if data is None:
        raise CommandError(f"{path} is empty: a stack file needs a 'config:' section")
    if not isinstance(data, dict):
        raise CommandError(f"{path}: the top level must be a mapping with a 'config:' section")
    if "config" not in data:
        raise CommandError(f"{path} has no 'config:' section")
    config = data["config"]
    if config is None:
        raise CommandError(f"{path}: 'config:' is empty (it needs at least mlflow-deploy:model)")
    if not isinstance(config, dict):
        raise CommandError(f"{path}: 'config:' must be a mapping of keys, not {type(config).__name__}")
    return config


def read_config(path: Path) -> dict[str, Any]:
    """The ``config:`` mapping of a stack file as plain data, ``secure:`` values masked."""
    from modelctl.render import _mask_secure

    config = config_section(path, parse(path, read_text(path), round_trip=False))
    return {str(k): _mask_secure(v) for k, v in config.items()}


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Layout:
    mapping: int = 2
    sequence: int = 4
    offset: int = 2
    explicit_start: bool = False
    newline: str = "\n"


_KEY_ONLY = re.compile(r"^( *)[^#\s-][^#]*:\s*(?:#.*)?$")


def detect_layout(text: str) -> Layout:
    """The indentation the file uses: the most common step from a ``key:`` line to the mapping
    under it, and the dash offset / content indent of its block sequences."""
    lines = text.splitlines()
    map_steps: dict[int, int] = {}
    seq_shapes: dict[tuple[int, int], int] = {}
    for i, line in enumerate(lines[:-1]):
        m = _KEY_ONLY.match(line)
        if not m:
            continue
        key_col = len(m.group(1))
        nxt = next((ln for ln in lines[i + 1 :] if ln.strip() and not ln.lstrip().startswith("#")), None)
        if nxt is None:
            continue
        col = len(nxt) - len(nxt.lstrip(" "))
        body = nxt.lstrip(" ")
        if body.startswith("- ") and col >= key_col:
            content = col + 1 + len(body[1:]) - len(body[1:].lstrip(" "))
            shape = (content - key_col, col - key_col)
            seq_shapes[shape] = seq_shapes.get(shape, 0) + 1
        elif col > key_col:
            map_steps[col - key_col] = map_steps.get(col - key_col, 0) + 1
    mapping = max(map_steps, key=lambda k: (map_steps[k], -k)) if map_steps else 2
    if seq_shapes:
        sequence, offset = max(seq_shapes, key=lambda k: seq_shapes[k])
    else:
        sequence, offset = mapping + 2, mapping
    if sequence < offset + 2:  # ruamel needs room for "- "
        sequence = offset + 2
    return Layout(
        mapping=mapping,
        sequence=sequence,
        offset=offset,
        explicit_start=text.lstrip().startswith("---"),
        newline="\r\n" if "\r\n" in text else "\n",
    )


def _rt_yaml(text: str) -> YAML:
    layout = detect_layout(text)
    y = YAML()
    y.preserve_quotes = True
    y.indent(mapping=layout.mapping, sequence=layout.sequence, offset=layout.offset)
    y.width = 4096
    y.explicit_start = layout.explicit_start
    return y


def dump(data: Any, like: str) -> str:
    buf = io.StringIO()
    _rt_yaml(like).dump(data, buf)
    return buf.getvalue()


def merge_edit(original: str, before: str, after: str) -> str:
    """Apply the change ``before`` -> ``after`` (two dumps of the document, unedited and edited)
    to ``original`` (the file as it is), line by line.

    Where ruamel reproduces the file line for line (``before`` has as many lines as the
    original), the lines the edit leaves alone are copied from the original, byte for byte; the
    changed lines come from the dump, indented as their neighbours are in the original. Otherwise
    the dump is the result.
    """
    orig_lines = original.splitlines(keepends=True)
    before_lines = before.splitlines(keepends=True)
    after_lines = after.splitlines(keepends=True)
    newline = "\r\n" if "\r\n" in original else "\n"
    if len(orig_lines) != len(before_lines):
        return after.replace("\n", newline) if newline != "\n" else after
    out: list[str] = []
    matcher = difflib.SequenceMatcher(None, before_lines, after_lines, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.extend(orig_lines[i1:i2])
            continue
        for line in after_lines[j1:j2]:
            line = _reindent(line, orig_lines, before_lines, i1, i2)
            out.append(line.replace("\n", newline) if newline != "\n" else line)
    if out and not out[-1].endswith("\n") and original.endswith("\n"):
        out[-1] += newline
    return "".join(out)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_content(line: str) -> bool:
    return bool(line.strip()) and not line.lstrip().startswith("#")


def _reindent(line: str, orig: list[str], dump: list[str], i1: int, i2: int) -> str:
    """Give a changed line the indentation its neighbourhood has in the original: that of the
    nearest line at the same dump indentation in the same block (before the change, else after
    it), else the block's parent's plus the dump's step."""
    if not line.strip():
        return line
    d = _indent(line)
    parent: int | None = None
    for k in range(i1 - 1, -1, -1):
        if not _is_content(dump[k]):
            continue
        if _indent(dump[k]) == d:
            return " " * _indent(orig[k]) + line.lstrip(" ")
        if _indent(dump[k]) < d:
            parent = k
            break
    for k in range(i2, len(dump)):
        if not _is_content(dump[k]):
            continue
        if _indent(dump[k]) == d:
            return " " * _indent(orig[k]) + line.lstrip(" ")
        if _indent(dump[k]) < d:
            break
    if parent is not None:
        return " " * (_indent(orig[parent]) + d - _indent(dump[parent])) + line.lstrip(" ")
    return line


# --------------------------------------------------------------------------- comments


def _last_leaf(container: Any, key: Any) -> tuple[Any, Any]:
    """The (container, key) whose trailing comment token ends the subtree of ``container[key]``."""
    value = container[key]
    while isinstance(value, CommentedMap | CommentedSeq) and len(value) and not value.fa.flow_style():
        container = value
        key = list(value.keys())[-1] if isinstance(value, CommentedMap) else len(value) - 1
        value = container[key]
    return container, key


def _token_slot(container: Any) -> int:
    return 2 if isinstance(container, CommentedMap) else 0


def _get_trailing(container: Any, key: Any) -> CommentToken | None:
    entry = container.ca.items.get(key)
    if not entry:
        return None
    token = entry[_token_slot(container)]
    return token if isinstance(token, CommentToken) else None


def _split(value: str) -> tuple[str, str]:
    """A trailing token is ``<end-of-line comment or nothing>\\n<lines before the next key>``."""
    head, sep, rest = value.partition("\n")
    return head + sep, rest


def _take_following(container: Any, key: Any) -> str:
    """Detach the comment lines that follow the subtree of ``container[key]`` (those belong to
    whatever comes next); its end-of-line comment stays."""
    c, k = _last_leaf(container, key)
    token = _get_trailing(c, k)
    if token is None:
        return ""
    head, rest = _split(token.value)
    token.value = head or "\n"
    return rest


def _give_following(container: Any, key: Any, text: str) -> None:
    """Append comment lines after the subtree of ``container[key]``."""
    if not text:
        return
    c, k = _last_leaf(container, key)
    token = _get_trailing(c, k)
    if token is not None:
        head, rest = _split(token.value)
        token.value = (head or "\n") + rest + text
        return
    entry = c.ca.items.setdefault(k, [None, None, None, None])
    entry[_token_slot(c)] = CommentToken("\n" + text, CommentMark(0), None)


def _attached_part(following: str) -> tuple[str, str]:
    """Split the lines between two keys into (what stands alone, what belongs to the next key):
    the comment lines right above the next key, not separated from it by a blank line."""
    lines = following.splitlines(keepends=True)
    cut = len(lines)
    while cut > 0 and lines[cut - 1].strip().startswith("#"):
        cut -= 1
    return "".join(lines[:cut]), "".join(lines[cut:])


def insert_key(mapping: CommentedMap, pos: int, key: str, value: Any) -> None:
    """``mapping.insert(pos, key, value)`` with the comment lines of the neighbours kept in place:
    appended at the end, the new key takes over the lines that followed the old last key; inserted
    between two keys, it takes the comment lines that stood right above the next key."""
    keys = list(mapping.keys())
    pos = max(0, min(pos, len(keys)))
    carried = ""
    if 0 < pos == len(keys):
        carried = _take_following(mapping, keys[-1])
    elif 0 < pos < len(keys):
        prev = keys[pos - 1]
        rest = _take_following(mapping, prev)
        standalone, carried = _attached_part(rest)
        _give_following(mapping, prev, standalone)
    mapping.insert(pos, key, value)
    _give_following(mapping, key, carried)


def delete_key(mapping: CommentedMap, key: str) -> None:
    """``del mapping[key]`` keeping the comment lines that followed it (they belong to the next
    key): they move to the end of the previous key's subtree."""
    keys = list(mapping.keys())
    pos = keys.index(key)
    following = _take_following(mapping, key) if pos > 0 else ""
    del mapping[key]
    mapping.ca.items.pop(key, None)
    if following:
        _give_following(mapping, keys[pos - 1], following)


def rename_key(mapping: CommentedMap, old: str, new: str, value: Any) -> None:
    """Replace ``old: ...`` with ``new: value`` at the same place, keeping the comments around it
    (those after a scalar ``old`` stay after ``new``; an end-of-line comment too)."""
    keys = list(mapping.keys())
    pos = keys.index(old)
    entry = mapping.ca.items.pop(old, None)
    if isinstance(mapping[old], CommentedMap | CommentedSeq) and len(mapping[old]):
        entry = None
        following = _take_following(mapping, old)
    else:
        following = ""
    del mapping[old]
    mapping.insert(pos, new, value)
    if entry is not None:
        mapping.ca.items[new] = entry
    _give_following(mapping, new, following)


# --------------------------------------------------------------------------- writing


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def check_writable(path: Path) -> None:
    """A read-only stack file (mode without write bits, or not writable by this user) or a
    folder where no temporary file can be made is refused before anything is printed."""
    try:
        st = path.stat()
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {_reason(exc)}") from exc
    if not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(path, os.W_OK):
        raise CommandError(
            f"{path} is read-only (mode {stat.S_IMODE(st.st_mode):04o}): nothing written; "
            "make it writable (chmod u+w) or use --dry-run"
        )
    folder = Path(os.path.realpath(path)).parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CommandError(f"cannot write in {folder} (the new file is written beside the old one): nothing written")


@contextlib.contextmanager
def locked(path: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside the (real) stack file: concurrent edits of one file run one
    after the other. The lock file is removed on release; a waiter that locked a lock file which
    was removed meanwhile locks the new one instead."""
    real = Path(os.path.realpath(path))
    lock_path = real.parent / f".{real.name}.lock"
    deadline = time.monotonic() + (LOCK_TIMEOUT_SECONDS if timeout is None else timeout)
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CommandError(f"cannot create the lock file {lock_path}: {_reason(exc)}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise CommandError(f"cannot lock {lock_path}: {_reason(exc)}") from exc
            if time.monotonic() >= deadline:
                holder = _lock_holder(lock_path)
                raise CommandError(
                    f"{path} is being edited by another modelctl{holder} (lock {lock_path}); "
                    "nothing written: try again when it is done"
                ) from exc
            time.sleep(0.05)
            continue
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # locked a lock file its holder removed: take the current one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        os.close(fd)


def _lock_holder(lock_path: Path) -> str:
    try:
        pid = lock_path.read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


def atomic_write(path: Path, text: str, expected: str) -> None:
    """Replace ``path`` with ``text`` in one rename, keeping its mode; refused when the file no
    longer holds ``expected`` (someone changed it since it was read)."""
    real = Path(os.path.realpath(path))
    st = real.stat()
    fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        with contextlib.suppress(OSError):
            os.chown(tmp, st.st_uid, st.st_gid)
        if digest(real.read_text(encoding="utf-8")) != digest(expected):
            raise CommandError(f"{path} changed while modelctl was editing it: nothing written; run the command again")
        os.replace(tmp, real)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dfd = os.open(real.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
