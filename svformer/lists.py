"""List files: reading and validation, sample keys, class-name files.

A list has one video per line: `<path> <label>`. The label is the last whitespace-separated token,
so paths may contain spaces. Blank lines and `#` comments are skipped; CRLF is accepted; a UTF-8
BOM is ignored. Relative paths are joined to `data_root` when given, else to the list file's own
directory (so `all.txt` written next to the videos works as is).

Unlabeled lists may omit the label: a line whose last token is not an integer, and whose whole
text names an existing file, is that file with label -1. Any other line whose last token is not an
integer is a bad-label failure. Bad labels, out-of-range labels and duplicates are recorded as
`Failure(line, source, reason)` rather than raised; a list that cannot be read at all (missing,
binary, not UTF-8, no entries) raises `UserError`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from svformer.errors import UserError

_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+", re.ASCII)
KEY_STEM_CHARS = 56  # 7 digits + "_" + 56 = the 64-character key limit of docs/architecture.md


@dataclass(frozen=True)
class Entry:
    """One valid list line."""

    line: int
    """1-based line number in the list file."""
    source: str
    """The path exactly as written in the list (recorded in the shard JSON)."""
    path: str
    """The path prep opens: `source` joined to the data root (absolute or relative to the cwd)."""
    label: int
    """Class index, or -1 when the list gives none."""

    @property
    def key(self) -> str:
        """Sample key `{line:07d}_{safe stem}`: [A-Za-z0-9_-] only, at most 64 characters."""
        return sample_key(self.line, self.source)


@dataclass(frozen=True)
class Failure:
    """A list line or video that was skipped, and why (one line of failures.tsv)."""

    line: int
    source: str
    reason: str


@dataclass
class ParsedList:
    """A parsed list: the valid entries in list order and the failed lines."""

    path: Path
    entries: list[Entry] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Number of entry lines (valid + failed); blank and comment lines are not counted."""
        return len(self.entries) + len(self.failures)


def sample_key(line: int, source: str) -> str:
    """The sample key for list line `line` (1-based) naming `source`; unique within a list.

    No dots (webdataset splits keys at the first dot) and no path separators.
    """
    stem = os.path.splitext(os.path.basename(source.replace("\\", "/")))[0]
    stem = _UNSAFE.sub("_", stem).strip("_")[:KEY_STEM_CHARS] or "video"
    return f"{line:07d}_{stem}"


def read_text_lines(path: Path) -> list[str]:
    """The lines of a text list file (CRLF and a BOM tolerated); UserError if it is not readable text."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: list file not found; pass an existing '<path> <label>' list") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read list file ({err.strerror or err})") from None
    if b"\0" in raw:
        raise UserError(f"{path}: binary file, not a list; a list has one '<path> <label>' per line")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (bad byte at offset {err.start}); save the list as UTF-8") from None
    # split('\n') rather than splitlines(): the latter also breaks on \x0c, \x1c, U+2028... inside paths.
    return [line.rstrip("\r") for line in text.split("\n")]


def read_class_names(path: str | Path, num_classes: int | None = None) -> list[str]:
    """Class names from a classes file: one name per line, the first naming label 0.

    Trailing blank lines are ignored; CRLF and a BOM are fine; a name may contain spaces.
    Raises: UserError for an unreadable file, a blank line between names, a duplicate name, or a
    count that disagrees with `num_classes`.
    """
    path = Path(path)
    lines = read_text_lines(path)
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.strip() for line in lines]
    if not names:
        raise UserError(f"{path}: no class names; a classes file has one name per line, the first naming label 0")
    seen: dict[str, int] = {}
    for number, name in enumerate(names, start=1):
        if not name:
            raise UserError(
                f"{path}:{number}: blank line between class names (the first line names label 0); "
                "remove the line or write the class name"
            )
        if name in seen:
            raise UserError(f"{path}:{number}: class name {name!r} repeats line {seen[name]}; names must be unique")
        seen[name] = number
    if num_classes is not None and len(names) != num_classes:
        raise UserError(f"{path}: {len(names)} class names but --num-classes {num_classes}; give one name per class")
    return names


def resolve(source: str, base: Path) -> str:
    """The path to open for `source`: unchanged when absolute, else joined to `base`."""
    return source if os.path.isabs(source) else os.path.normpath(os.path.join(base, source))


def read_list(
    path: str | Path,
    data_root: str | Path | None = None,
    num_classes: int | None = None,
    require_labels: bool = False,
) -> ParsedList:
    """Parse and validate a list file.

    Args:
        path: the list file.
        data_root: base for relative paths (default: the list file's directory).
        num_classes: when given, labels must lie in [0, num_classes) (or be -1 = unknown).
        require_labels: reject lines without a label (and explicit -1), as `split` needs.

    Returns: ParsedList with entries in list order and failures (file:line + reason) for bad lines.
    Raises: UserError when the file is missing, unreadable, binary or has no entry lines.
    """
    path = Path(path)
    base = Path(data_root) if data_root is not None else path.parent
    if data_root is not None and not base.is_dir():
        raise UserError(f"--data-root {data_root}: not a directory")
    result = ParsedList(path=path)
    first_line_of: dict[str, int] = {}
    for number, raw in enumerate(read_text_lines(path), start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        parsed = _parse_line(text, number, base, num_classes, require_labels)
        if isinstance(parsed, Failure):
            result.failures.append(parsed)
            continue
        ident = os.path.normcase(os.path.abspath(parsed.path))
        if ident in first_line_of:
            result.failures.append(Failure(number, parsed.source, f"duplicate of line {first_line_of[ident]}"))
            continue
        first_line_of[ident] = number
        result.entries.append(parsed)
    if result.total == 0:
        raise UserError(f"{path}: no entries (only blank or comment lines); a list has one '<path> <label>' per line")
    return result


def _parse_line(text: str, number: int, base: Path, num_classes: int | None, require_labels: bool) -> Entry | Failure:
    """One stripped, non-comment line -> Entry, or Failure with the reason."""
    parts = text.rsplit(None, 1)
    last = parts[-1]
    if not _INT.fullmatch(last):
        # No integer label: an unlabeled line iff the whole line names an existing file.
        whole = resolve(text, base)
        if not require_labels and os.path.isfile(whole):
            return Entry(number, text, whole, -1)
        if len(parts) == 1:
            return Failure(number, text, f"no label, and no file {whole} exists for an unlabeled line")
        return Failure(number, parts[0], f"label {last!r} is not an integer")
    if len(parts) == 1:
        return Failure(number, "", f"line has only the label {last!r}, no path")
    source, label = parts[0], int(last)
    if label == -1 and require_labels:
        return Failure(number, source, "label -1 (unknown) where a class label is required")
    if label < -1 or (num_classes is not None and label >= num_classes):
        valid = f"[0, {num_classes})" if num_classes is not None else "0 or more"
        return Failure(number, source, f"label {label} out of range (valid: {valid}, or -1 for unknown)")
    return Entry(number, source, resolve(source, base), label)
