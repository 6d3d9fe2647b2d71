"""Reading a library's legacy file for `nlr import`: CSV with a header line, or JSON as a list of
objects, with the columns of gateway.register.legacy.COLUMNS. An unknown column, a malformed file or
a value that is not text is refused before any row is imported (``LegacyFileError``: exit status 2).

CSV: UTF-8 (a byte-order mark is allowed), the delimiter sniffed among , ; and tab; a row with more
values than the header has columns is refused. Rows are numbered 1, 2, … from the first after the
header (a JSON file: its objects, from 1).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gateway.register.legacy import COLUMNS, ImportRow

FORMATS = ("csv", "json")


class LegacyFileError(Exception):
    """The file cannot be imported as it is; the message names the column, row or problem."""


@dataclass
class LegacyFile:
    path: Path
    format: str
    columns: list[str]
    rows: int  # how many records it holds

    def __iter__(self) -> Iterator[ImportRow]:
        if self.format == "json":
            for i, obj in enumerate(_json_objects(self.path), start=1):
                yield ImportRow(i, {k: _text(v, k, i) for k, v in obj.items()})
            return
        with self.path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, _dialect(self.path))
            next(reader, None)
            for i, values in enumerate(reader, start=1):
                if not values:
                    continue
                if len(values) > len(self.columns):
                    raise LegacyFileError(f"row {i} has {len(values)} values, the header {len(self.columns)} columns")
                yield ImportRow(i, dict(zip(self.columns, values, strict=False)))


def open_legacy_file(path: Path, fmt: str | None = None) -> LegacyFile:
    """Check the file's columns (every record's, for JSON) and count its rows; nothing is imported yet."""
    fmt = fmt or ("json" if path.suffix.lower() == ".json" else "csv")
    if fmt not in FORMATS:
        raise LegacyFileError(f"unknown format {fmt!r} (csv or json)")
    try:
        if fmt == "json":
            objects = _json_objects(path)
            columns: list[str] = []
            for i, obj in enumerate(objects, start=1):
                for key in obj:
                    if key not in COLUMNS:
                        raise LegacyFileError(f"unknown column {key!r} (in row {i}); the columns are "
                                              f"{', '.join(COLUMNS)}")
                    if key not in columns:
                        columns.append(key)
                    _text(obj[key], key, i)
            return LegacyFile(path, fmt, columns, len(objects))
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, _dialect(path))
            header = [name.strip() for name in next(reader, [])]
            if not header:
                raise LegacyFileError(f"{path}: no header line")
            for name in header:
                if name not in COLUMNS:
                    raise LegacyFileError(f"unknown column {name!r}; the columns are {', '.join(COLUMNS)}")
            if len(set(header)) != len(header):
                raise LegacyFileError("a column is named twice in the header")
            rows = sum(1 for values in reader if values)
        return LegacyFile(path, fmt, header, rows)
    except UnicodeDecodeError:
        raise LegacyFileError(f"{path}: not UTF-8 text") from None
    except csv.Error as exc:
        raise LegacyFileError(f"{path}: not CSV ({exc})") from None


def _dialect(path: Path) -> type[csv.Dialect] | csv.Dialect:
    with path.open(encoding="utf-8-sig", newline="") as f:
        head = f.readline()
    try:
        return csv.Sniffer().sniff(head, delimiters=",;\t")
    except csv.Error:
        return csv.excel


def _json_objects(path: Path) -> list[dict[str, object]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise LegacyFileError(f"{path}: not JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, list) or not all(isinstance(obj, dict) for obj in data):
        raise LegacyFileError(f"{path}: expected a JSON list of objects")
    return data


def _text(value: object, column: str, row: int) -> str | None:
    """A JSON value as the register takes it: text (numbers as written); null for nothing."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise LegacyFileError(f"row {row}: {column} must be text, not {type(value).__name__}")


__all__ = ["FORMATS", "LegacyFile", "LegacyFileError", "open_legacy_file"]
