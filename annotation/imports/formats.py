"""Reading a file: the import's options, and its bytes decoded into records.

`import_options` turns what a user asked for (command line, API, admin form) into ImportOptions;
`read_records` turns a binary stream into a header and an iterator of Records (fields, or the
reason the record cannot be read). The encoding checks used on every value live here too.
Called by the API, the admin and the command (options), by rows (records, character checks)
and by runs (the counted stream).
"""

import codecs
import csv
import io
import json
import math
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import PurePath
from typing import IO, Any

from django.conf import settings

from annotation.models import ImportBatch
from core.errors import ValidationFailed
from core.parsers import MAX_JSON_DEPTH, json_depth_exceeds

from .errors import ImportFailed, RowSkipped, Skip

FORMAT_BY_SUFFIX = {
    ".csv": ImportBatch.Format.CSV,
    ".tsv": ImportBatch.Format.TSV,
    ".tab": ImportBatch.Format.TSV,
    ".jsonl": ImportBatch.Format.JSONL,
    ".ndjson": ImportBatch.Format.JSONL,
}
READ_BUFFER_BYTES = 1 << 16
# --- options -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportOptions:
    """How to read one file. Stored on ImportBatch.options so a worker can run it later."""

    file_format: str
    # Column names (files with a header, JSONL keys) or 1-based positions; several are joined.
    text_columns: tuple[str, ...] = ("text",)
    label_column: str = ""
    has_header: bool = True
    text_separator: str = " "
    # Raw label value -> label name, e.g. {"1": "World"}; applied before matching names.
    label_map: dict[str, str] = field(default_factory=dict)
    create_labels: bool = False
    unescape_backslashes: bool = False
    encoding: str = "utf-8"
    # Extra columns annotators may see (added to Project.annotator_meta_columns); default none.
    visible_columns: tuple[str, ...] = ()

    def to_json(self) -> dict:
        data = asdict(self)
        data["text_columns"] = list(self.text_columns)
        data["visible_columns"] = list(self.visible_columns)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "ImportOptions":
        data = dict(data)
        data["text_columns"] = tuple(data.get("text_columns") or ("text",))
        data["visible_columns"] = tuple(data.get("visible_columns") or ())
        return cls(**data)


def parse_label_map(spec: str | dict | None) -> dict[str, str]:
    """`"1=World,2=Sports"` (or a dict) -> {"1": "World", "2": "Sports"}."""
    if not spec:
        return {}
    pairs = spec.items() if isinstance(spec, dict) else (item.split("=", 1) for item in str(spec).split(","))
    mapping: dict[str, str] = {}
    for pair in pairs:
        pair = list(pair)
        if len(pair) != 2 or not str(pair[0]).strip() or not str(pair[1]).strip():
            raise ValidationFailed(
                f"Cannot read the label map {spec!r}: write it as value=Label pairs joined by commas, "
                "e.g. 1=World,2=Sports.",
                code="invalid_label_map",
            )
        mapping[str(pair[0]).strip()] = str(pair[1]).strip()
    return mapping


def guess_format(source_name: str) -> str:
    suffix = PurePath(source_name).suffix.lower()
    if suffix not in FORMAT_BY_SUFFIX:
        raise ValidationFailed(
            f"Cannot tell the format of {source_name!r} from its name: give the format (csv, tsv or jsonl).",
            code="unknown_format",
        )
    return FORMAT_BY_SUFFIX[suffix]


# Encodings a text file may be read in (codecs.lookup(...).name): UTF-8 and the common
# ASCII-compatible single- and multi-byte ones, where a comma, tab, newline or quote byte is
# always that character. Anything else codecs knows is refused (issue 15).
TEXT_ENCODINGS = frozenset(
    {
        "utf-8",
        "utf-8-sig",
        "ascii",
        *(f"iso8859-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15, 16)),
        *(f"cp{n}" for n in range(1250, 1259)),
        "koi8-r",
        "koi8-u",
        "mac-roman",
        "shift_jis",
        "cp932",
        "euc_jp",
        "gb2312",
        "gbk",
        "gb18030",
        "big5",
        "euc_kr",
    }
)
_NOT_ASCII_COMPATIBLE = frozenset({"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"})


def import_options(
    *,
    source_name: str = "",
    file_format: str = "",
    text_column: str = "text",
    label_column: str = "",
    has_header: bool = True,
    text_separator: str = " ",
    label_map: str | dict | None = None,
    create_labels: bool = False,
    unescape_backslashes: bool = False,
    encoding: str = "utf-8",
    visible_columns: str = "",
) -> ImportOptions:
    """Validate what a user asked for (command line, API, admin form) into ImportOptions."""
    file_format = (file_format or guess_format(source_name)).lower()
    if file_format not in ImportBatch.Format.values:
        raise ValidationFailed(f"Unknown format {file_format!r}; use csv, tsv or jsonl.", code="unknown_format")
    text_columns = tuple(token.strip() for token in (text_column or "").split(",") if token.strip())
    if not text_columns:
        raise ValidationFailed("Name the text column (or columns, joined by commas).", code="invalid_columns")
    label_column = (label_column or "").strip()
    shown = tuple(dict.fromkeys(token.strip() for token in (visible_columns or "").split(",") if token.strip()))
    if len(",".join(shown)) > 500:
        raise ValidationFailed(
            "The visible columns' names are at most 500 characters together.", code="invalid_columns"
        )
    if set(shown) & {*text_columns, label_column}:
        raise ValidationFailed("The text and label columns are not extra columns; name others.", code="invalid_columns")
    if len(",".join(text_columns)) > 100 or len(label_column) > 100:
        raise ValidationFailed("Column names are at most 100 characters.", code="invalid_columns")
    if file_format == ImportBatch.Format.JSONL:
        has_header = True  # JSONL keys name the fields; there is no header line
    elif not has_header:
        for token in (*text_columns, *([label_column] if label_column else [])):
            if not token.isdigit() or int(token) < 1:
                raise ValidationFailed(
                    f"Without a header, columns are given by position (1 is the first), not {token!r}: "
                    "e.g. --text-column 2,3 --label-column 1.",
                    code="invalid_columns",
                )
    try:
        codec = codecs.lookup(str(encoding or "utf-8"))
    except (LookupError, ValueError, TypeError):
        raise ValidationFailed(f"Unknown encoding {encoding!r}.", code="invalid_encoding") from None
    if codec.name in _NOT_ASCII_COMPATIBLE:
        raise ValidationFailed(
            f"The encoding {encoding!r} is not ASCII-compatible (UTF-16?); save the file as UTF-8.",
            code="invalid_encoding",
        )
    if codec.name not in TEXT_ENCODINGS:
        # rot13, zlib, base64, idna, ...: codecs.lookup knows them, but they are transforms or
        # special-purpose codecs, not the encoding of a text file (they raised 5xx further on).
        raise ValidationFailed(
            f"The encoding {encoding!r} is not supported; use one of {', '.join(sorted(TEXT_ENCODINGS))}.",
            code="invalid_encoding",
        )
    return ImportOptions(
        file_format=file_format,
        text_columns=text_columns,
        label_column=label_column,
        has_header=has_header,
        text_separator=text_separator,
        label_map=parse_label_map(label_map),
        create_labels=bool(create_labels),
        unescape_backslashes=bool(unescape_backslashes),
        encoding=codec.name,
        visible_columns=shown,
    )


# --- reading: bytes -> records ---------------------------------------------------------------


class CountingReader(io.RawIOBase):
    """Counts the bytes pulled from any binary stream (file, upload, pipe): progress."""

    def __init__(self, stream: IO[bytes]):
        self._stream = stream
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._stream.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.bytes_read += n
        return n


BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


def encoding_label(options: ImportOptions) -> str:
    return "UTF-8" if options.encoding == "utf-8" else options.encoding


def bad_chars(value: str, where: str, encoding: str) -> RowSkipped:
    """Why a value with a NUL or a lone surrogate (an undecodable byte) cannot be stored."""
    if "\x00" in value:
        return RowSkipped(Skip.NUL_CHARACTER, f"{where} contains a NUL character, which cannot be stored")
    return RowSkipped(Skip.UNDECODABLE, f"{where} contains bytes that are not valid {encoding}")


def check_chars(value: str, where: str, encoding: str) -> None:
    if BAD_CHARS.search(value) is not None:
        raise bad_chars(value, where, encoding)


def check_json_value(value: Any, where: str, encoding: str) -> None:
    if isinstance(value, str):
        check_chars(value, where, encoding)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_chars(key, where, encoding)
            check_json_value(item, where, encoding)
    elif isinstance(value, list):
        for item in value:
            check_json_value(item, where, encoding)


@dataclass
class Record:
    """One record as read from the file: its fields (a list, or a JSON object), or why it cannot be read."""

    row: int  # 1-based data row (header and blank lines not counted)
    line: int  # 1-based physical line where the record starts
    fields: list[str] | dict | None = None
    skip: RowSkipped | None = None


def _refuse_utf16(buffered: io.BufferedReader) -> None:
    head = buffered.peek(4)[:4]
    if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        raise ImportFailed("The file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8.")


def _capped_lines(text: io.TextIOWrapper, limit: int) -> Iterator[str]:
    """The file's lines, refusing one longer than `limit` characters before holding it whole
    (a file without line breaks would otherwise be read into memory at once)."""
    line_no = 0
    while line := text.readline(limit + 1):
        line_no += 1
        if len(line) > limit and not line.endswith(("\n", "\r")):
            raise ImportFailed(
                f"Line {line_no} is longer than {limit:,} characters: this is not a CSV/TSV file the importer "
                "can read (or raise TALLY_IMPORT_MAX_LINE_BYTES)."
            )
        yield line


def _delimited_records(buffered: io.BufferedReader, options: ImportOptions) -> tuple[list[str] | None, Iterator]:
    encoding = "utf-8-sig" if options.encoding == "utf-8" else options.encoding
    # A field longer than this is a broken file (an unclosed quote swallowing lines), not a row.
    if csv.field_size_limit() < 4 * settings.TALLY_MAX_TEXT_LENGTH:
        csv.field_size_limit(4 * settings.TALLY_MAX_TEXT_LENGTH)
    text = io.TextIOWrapper(buffered, encoding=encoding, errors="surrogateescape", newline="")
    lines = _capped_lines(text, settings.TALLY_IMPORT_MAX_LINE_BYTES)
    if options.file_format == ImportBatch.Format.TSV:
        # IANA text/tab-separated-values, as GLUE writes it: no quoting, one record per line.
        reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(lines)  # RFC 4180: "double quotes", "" inside, newlines inside quotes

    def next_record() -> list[str] | None:
        try:
            return next(reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            raise ImportFailed(
                f"Line {reader.line_num}: {exc}. The file's CSV structure is broken there (an unclosed quote?)."
            ) from exc

    header = None
    if options.has_header:
        header = next_record()
        while header == []:  # blank lines before the header
            header = next_record()
        if header is None:
            raise ImportFailed("The file is empty: it has no header line.")
        if any(BAD_CHARS.search(name) for name in header):
            raise ImportFailed(f"The header line is not valid {encoding_label(options)} or contains NUL characters.")

    def records() -> Iterator[Record]:
        row = 0
        previous_line = reader.line_num
        while (fields := next_record()) is not None:
            line, previous_line = previous_line + 1, reader.line_num
            if not fields:
                continue  # a blank line is not a row
            row += 1
            yield Record(row=row, line=line, fields=fields)

    return header, records()


def _jsonl_records(buffered: io.BufferedReader, options: ImportOptions) -> Iterator[Record]:
    max_bytes = settings.TALLY_IMPORT_MAX_LINE_BYTES
    line_no = row = 0
    while True:
        line = buffered.readline(max_bytes + 1)
        if not line:
            return
        line_no += 1
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while True:  # drop the rest of the line without holding it
                more = buffered.readline(READ_BUFFER_BYTES)
                if not more or more.endswith(b"\n"):
                    break
            row += 1
            yield Record(
                row, line_no, skip=RowSkipped(Skip.LINE_TOO_LONG, f"the line is longer than {max_bytes:,} bytes")
            )
            continue
        if line_no == 1 and line.startswith(codecs.BOM_UTF8):
            line = line[len(codecs.BOM_UTF8) :]
        line = line.strip()
        if not line:
            continue
        row += 1
        try:
            decoded = line.decode(options.encoding)
        except UnicodeDecodeError as exc:
            yield Record(
                row,
                line_no,
                skip=RowSkipped(
                    Skip.UNDECODABLE, f"byte {exc.start + 1} of the line is not valid {encoding_label(options)}"
                ),
            )
            continue
        try:
            obj = json.loads(decoded, parse_constant=_no_constant, parse_float=_finite_float)
        except RecursionError:
            yield Record(row, line_no, skip=_too_deep())
            continue
        except ValueError as exc:
            yield Record(row, line_no, skip=RowSkipped(Skip.MALFORMED_JSON, f"not valid JSON: {exc}"))
            continue
        if json_depth_exceeds(obj):
            yield Record(row, line_no, skip=_too_deep())
            continue
        if not isinstance(obj, dict):
            yield Record(
                row,
                line_no,
                skip=RowSkipped(Skip.MALFORMED_JSON, f"a line must hold a JSON object, not {type(obj).__name__}"),
            )
            continue
        yield Record(row, line_no, fields=obj)


def _no_constant(name: str):
    """NaN and Infinity are not JSON (Python reads them; PostgreSQL's jsonb refuses them)."""
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]}... is out of range")
    return value


def _too_deep() -> RowSkipped:
    return RowSkipped(Skip.TOO_DEEP, f"the line is nested deeper than {MAX_JSON_DEPTH} levels")


def read_records(buffered: io.BufferedReader, options: ImportOptions) -> tuple[list[str] | None, Iterator[Record]]:
    """The file's header (None for JSONL) and its records, read lazily from `buffered`."""
    _refuse_utf16(buffered)
    if options.file_format == ImportBatch.Format.JSONL:
        return None, _jsonl_records(buffered, options)
    return _delimited_records(buffered, options)
