"""Reading a library's legacy file for `nlr import`: CSV with a header line, or JSON as a list of
objects, with the columns of gateway.register.legacy.COLUMNS. An unknown column, a malformed file or
a value that is not text is refused before any row is imported (``LegacyFileError``: exit status 2).

CSV: UTF-8 (a byte-order mark is allowed), RFC 4180 quoting (``""`` inside a quoted value is one
quote), the delimiter taken from the header line among , ; and tab. The whole file is read once
before anything is imported, so a row with more values than the header has columns is refused then,
not after earlier batches were committed. Rows are the records after the header, numbered 1, 2, …
(a blank line is no record and takes no number; a JSON file: its objects, from 1).

An error never repeats a value of the file (a file without its header line has a national id where a
column name should be): a column that is not one is named by its place, and by its name only when
that is close to a column's name (a typo, no personal data).
"""

from __future__ import annotations

import csv
import difflib
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
            reader = csv.reader(f, csv.excel, delimiter=_dialect(self.path))
            next(reader, None)
            for i, values in enumerate(_records(reader, len(self.columns)), start=1):
                yield ImportRow(i, dict(zip(self.columns, values, strict=False)))


def _records(reader: Iterator[list[str]], columns: int) -> Iterator[list[str]]:
    """The records of a CSV reader after its header: blank lines skipped; a record with more values
    than the header has columns refused (its number, counted as the import numbers rows)."""
    number = 0
    for values in reader:
        if not values:
            continue
        number += 1
        if len(values) > columns:
            raise LegacyFileError(f"row {number} has {len(values)} values, the header {columns} columns; "
                                  "mend that row (a value with the delimiter in it goes in double quotes)")
        yield values


def _unknown_column(name: str, place: int) -> LegacyFileError:
    """The error for a header name that is no column, without repeating a value of the file."""
    close = difflib.get_close_matches(name.lower(), COLUMNS, n=1, cutoff=0.75)
    what = f"column {place} of the header ({name!r}: did you mean {close[0]!r}?)" if close else \
        f"column {place} of the header is not a column name (is the header line missing?)"
    return LegacyFileError(f"unknown {what}; the columns are {', '.join(COLUMNS)}")


def open_legacy_file(path: Path, fmt: str | None = None) -> LegacyFile:
    """Check the whole file (its columns, and every record's shape) and count its rows; nothing is
    imported yet. Raises LegacyFileError, also for a file that cannot be read."""
    fmt = fmt or ("json" if path.suffix.lower() == ".json" else "csv")
    if fmt not in FORMATS:
        raise LegacyFileError(f"unknown format {fmt!r} (csv or json)")
    try:
        if fmt == "json":
            objects = _json_objects(path)
            columns: list[str] = []
            for i, obj in enumerate(objects, start=1):
                for place, key in enumerate(obj, start=1):
                    if key not in COLUMNS:
                        close = difflib.get_close_matches(key.lower(), COLUMNS, n=1, cutoff=0.75)
                        what = f"{key!r} (did you mean {close[0]!r}?)" if close else f"number {place}"
                        raise LegacyFileError(f"unknown key {what} in object {i}; the keys are {', '.join(COLUMNS)}")
                    if key not in columns:
                        columns.append(key)
                    _text(obj[key], key, i)
            return LegacyFile(path, fmt, columns, len(objects))
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, csv.excel, delimiter=_dialect(path))
            header = [name.strip() for name in next(reader, [])]
            if not header:
                raise LegacyFileError(f"{path}: no header line")
            for place, name in enumerate(header, start=1):
                if name not in COLUMNS:
                    raise _unknown_column(name, place)
            if len(set(header)) != len(header):
                raise LegacyFileError("a column is named twice in the header")
            rows = sum(1 for _ in _records(reader, len(header)))
        return LegacyFile(path, fmt, header, rows)
    except OSError as exc:
        raise LegacyFileError(f"cannot read {path}: {exc.strerror or type(exc).__name__}; give the path of "
                              "the library's legacy file") from None
    except UnicodeDecodeError:
        raise LegacyFileError(f"{path}: not UTF-8 text") from None
    except csv.Error as exc:
        raise LegacyFileError(f"{path}: not CSV ({exc})") from None


def _dialect(path: Path) -> str:
    """The delimiter of the header line (a comma when it names one column), for ``csv.excel``: RFC
    4180 as spreadsheets write it. Only the delimiter is taken from the header: sniffing its quoting
    too would read ``""`` wrongly whenever the header has no quotes."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        head = f.readline()
    try:
        return csv.Sniffer().sniff(head, delimiters=",;\t").delimiter
    except csv.Error:
        return ","


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
