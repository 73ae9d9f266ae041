"""Import examples from CSV, TSV and JSONL files: streaming, in bulk, all or nothing.

One ImportBatch row is the job's truth. `import_run` reads its file like this:

    binary stream -> counted (bytes read, for progress)
      -> decoded per row: CSV/TSV through a TextIOWrapper with errors="surrogateescape", so a
         byte that is not valid UTF-8 marks its own row (a lone surrogate) instead of failing
         the file; JSONL line by line with a strict decode and a cap on the line length
      -> records -> (text, gold label, meta) or a reason to skip the row
      -> chunks of TALLY_IMPORT_CHUNK_ROWS rows -> de-duplicated by text_hash with one query per
         chunk (the query also sees this import's own, not yet committed, rows: that is how
         duplicates within the file are found without keeping every hash in memory)
      -> COPY (PostgreSQL) or one prepared INSERT per row (SQLite), bypassing the model layer.

Memory stays flat whatever the file's size: one chunk of rows, the capped per-row report and
the project's label names. The whole insert runs in one transaction, so a failure (a database
error, an exception, a killed process) leaves no examples behind; progress is published to the
Django cache (Redis) because the rows are invisible to others until the commit.
"""

import codecs
import csv
import io
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import PurePath
from typing import IO, Any

from django.conf import settings
from django.core.cache import cache
from django.core.files import File
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from core.errors import Conflict, TallyError, ValidationFailed

from . import services
from .models import Example, ImportBatch, Label, Project
from .text_escapes import unescape_backslashes

logger = logging.getLogger(__name__)

FINISHED = (ImportBatch.Status.SUCCEEDED, ImportBatch.Status.FAILED)
FORMAT_BY_SUFFIX = {
    ".csv": ImportBatch.Format.CSV,
    ".tsv": ImportBatch.Format.TSV,
    ".tab": ImportBatch.Format.TSV,
    ".jsonl": ImportBatch.Format.JSONL,
    ".ndjson": ImportBatch.Format.JSONL,
}
READ_BUFFER_BYTES = 1 << 16
SQLITE_CACHE_KIB = 64 * 1024


class ImportFailed(TallyError):
    """The file as a whole cannot be imported (bad header, broken CSV structure...)."""

    code = "import_failed"


class Skip:
    """Why a row was not imported. The codes are stable (API, stats); reasons are for people."""

    EMPTY_TEXT = "empty_text"
    UNDECODABLE = "undecodable"
    NUL_CHARACTER = "nul_character"
    TOO_LONG = "too_long"
    UNKNOWN_LABEL = "unknown_label"
    INVALID_VALUE = "invalid_value"
    MISSING_COLUMN = "missing_column"
    MALFORMED_JSON = "malformed_json"
    LINE_TOO_LONG = "line_too_long"
    DUPLICATE_IN_FILE = "duplicate_in_file"
    DUPLICATE_IN_PROJECT = "duplicate_in_project"

    DUPLICATES = (DUPLICATE_IN_FILE, DUPLICATE_IN_PROJECT)


class _RowSkipped(Exception):  # noqa: N818 -- control flow inside the row loop, never escapes it
    def __init__(self, code: str, reason: str):
        self.code = code
        self.reason = reason


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

    def to_json(self) -> dict:
        data = asdict(self)
        data["text_columns"] = list(self.text_columns)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "ImportOptions":
        data = dict(data)
        data["text_columns"] = tuple(data.get("text_columns") or ("text",))
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
) -> ImportOptions:
    """Validate what a user asked for (command line, API, admin form) into ImportOptions."""
    file_format = (file_format or guess_format(source_name)).lower()
    if file_format not in ImportBatch.Format.values:
        raise ValidationFailed(f"Unknown format {file_format!r}; use csv, tsv or jsonl.", code="unknown_format")
    text_columns = tuple(token.strip() for token in (text_column or "").split(",") if token.strip())
    if not text_columns:
        raise ValidationFailed("Name the text column (or columns, joined by commas).", code="invalid_columns")
    label_column = (label_column or "").strip()
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
        codec = codecs.lookup(encoding)
    except LookupError:
        raise ValidationFailed(f"Unknown encoding {encoding!r}.", code="invalid_encoding") from None
    if ',\t\n"'.encode(codec.name, errors="replace") != b',\t\n"':
        raise ValidationFailed(
            f"The encoding {encoding!r} is not ASCII-compatible (UTF-16?); save the file as UTF-8.",
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
    )


# --- reading: bytes -> records ---------------------------------------------------------------


class _CountingReader(io.RawIOBase):
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


_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


def _encoding_label(options: ImportOptions) -> str:
    return "UTF-8" if options.encoding == "utf-8" else options.encoding


def _bad_chars(value: str, where: str, encoding: str) -> _RowSkipped:
    """Why a value with a NUL or a lone surrogate (an undecodable byte) cannot be stored."""
    if "\x00" in value:
        return _RowSkipped(Skip.NUL_CHARACTER, f"{where} contains a NUL character, which cannot be stored")
    return _RowSkipped(Skip.UNDECODABLE, f"{where} contains bytes that are not valid {encoding}")


def _check_chars(value: str, where: str, encoding: str) -> None:
    if _BAD_CHARS.search(value) is not None:
        raise _bad_chars(value, where, encoding)


def _check_json_value(value: Any, where: str, encoding: str) -> None:
    if isinstance(value, str):
        _check_chars(value, where, encoding)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_chars(key, where, encoding)
            _check_json_value(item, where, encoding)
    elif isinstance(value, list):
        for item in value:
            _check_json_value(item, where, encoding)


@dataclass
class _Record:
    row: int  # 1-based data row (header and blank lines not counted)
    line: int  # 1-based physical line where the record starts
    fields: list[str] | dict | None = None
    skip: _RowSkipped | None = None


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
        if any(_BAD_CHARS.search(name) for name in header):
            raise ImportFailed(f"The header line is not valid {_encoding_label(options)} or contains NUL characters.")

    def records() -> Iterator[_Record]:
        row = 0
        previous_line = reader.line_num
        while (fields := next_record()) is not None:
            line, previous_line = previous_line + 1, reader.line_num
            if not fields:
                continue  # a blank line is not a row
            row += 1
            yield _Record(row=row, line=line, fields=fields)

    return header, records()


def _jsonl_records(buffered: io.BufferedReader, options: ImportOptions) -> Iterator[_Record]:
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
            yield _Record(
                row, line_no, skip=_RowSkipped(Skip.LINE_TOO_LONG, f"the line is longer than {max_bytes:,} bytes")
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
            yield _Record(
                row,
                line_no,
                skip=_RowSkipped(
                    Skip.UNDECODABLE, f"byte {exc.start + 1} of the line is not valid {_encoding_label(options)}"
                ),
            )
            continue
        try:
            obj = json.loads(decoded)
        except ValueError as exc:
            yield _Record(row, line_no, skip=_RowSkipped(Skip.MALFORMED_JSON, f"not valid JSON: {exc}"))
            continue
        if not isinstance(obj, dict):
            yield _Record(
                row,
                line_no,
                skip=_RowSkipped(Skip.MALFORMED_JSON, f"a line must hold a JSON object, not {type(obj).__name__}"),
            )
            continue
        yield _Record(row, line_no, fields=obj)


# --- records -> rows -------------------------------------------------------------------------


@dataclass
class _Row:
    row: int
    line: int
    text: str
    text_hash: str
    label_id: int | None
    meta: dict


class _Labels:
    """The project's labels by name (exact, then case-insensitive), created on demand if asked."""

    def __init__(self, project: Project, options: ImportOptions):
        self.project = project
        self.options = options
        self.by_name: dict[str, int] = {}
        self.by_folded: dict[str, int] = {}
        self.created: list[str] = []
        for label in Label.objects.filter(project=project):
            self._remember(label)

    def _remember(self, label: Label) -> None:
        self.by_name[label.name] = label.pk
        self.by_folded.setdefault(label.name.casefold(), label.pk)

    def resolve(self, raw: str) -> int | None:
        value = raw.strip()
        if not value:
            return None  # no gold label for this row
        name = self.options.label_map.get(value, value)
        label_id = self.by_name.get(name) or self.by_folded.get(name.casefold())
        if label_id is not None:
            return label_id
        if self.options.create_labels:
            try:
                label = services.label_create(project=self.project, name=name)
            except TallyError as exc:
                raise _RowSkipped(Skip.UNKNOWN_LABEL, f"cannot create the label {name!r}: {exc.message}") from exc
            self._remember(label)
            self.created.append(label.name)
            return label.pk
        known = ", ".join(list(self.by_name)[:10]) + (", ..." if len(self.by_name) > 10 else "")
        shown = name if name == value else f"{value!r} -> {name}"
        raise _RowSkipped(Skip.UNKNOWN_LABEL, f"unknown label {shown!r} (this project has: {known or 'no labels'})")


class _RowBuilder:
    def __init__(self, options: ImportOptions, header: list[str] | None, labels: _Labels):
        self.options = options
        self.labels = labels
        self.max_length = settings.TALLY_MAX_TEXT_LENGTH
        self.encoding = _encoding_label(options)
        if options.file_format == ImportBatch.Format.JSONL:
            return
        self.header = header
        self.text_idx = [self._index(c, "text") for c in options.text_columns]
        self.label_idx = self._index(options.label_column, "label") if options.label_column else None
        used = set(self.text_idx) | ({self.label_idx} if self.label_idx is not None else set())
        self.needed = max(used) + 1
        self.meta_keys = self._meta_keys(header or [])
        self.meta_idx = [(i, key) for i, key in enumerate(self.meta_keys) if i not in used]
        self.used = used
        self.column_names = [
            self.meta_keys[i] if i < len(self.meta_keys) else f"column {i + 1}" for i in range(self.needed)
        ]

    def _index(self, column: str, role: str) -> int:
        if self.header is not None:
            if column in self.header:
                return self.header.index(column)
            if column.isdigit() and int(column) >= 1:
                return int(column) - 1
            raise ImportFailed(
                f"The {role} column {column!r} is not in the header; the columns are: "
                + ", ".join(repr(name) for name in self.header)
                + ". Give a name from the header, a position (1 is the first), "
                "or say the file has no header if the first line is data."
            )
        return int(column) - 1

    @staticmethod
    def _meta_keys(header: list[str]) -> list[str]:
        keys: list[str] = []
        for i, name in enumerate(header):
            key = name.strip() or f"column_{i + 1}"
            if key in keys:
                key = f"{key}_{i + 1}"
            keys.append(key)
        return keys

    def build(self, record: _Record) -> _Row:
        if self.options.file_format == ImportBatch.Format.JSONL:
            text, raw_label, meta = self._from_object(record.fields)
        else:
            text, raw_label, meta = self._from_fields(record.fields)
        if self.options.unescape_backslashes:
            text = unescape_backslashes(text)
        text = text.strip()
        if not text:
            raise _RowSkipped(Skip.EMPTY_TEXT, "the text is empty")
        if len(text) > self.max_length:
            raise _RowSkipped(Skip.TOO_LONG, f"the text has {len(text):,} characters; the limit is {self.max_length:,}")
        label_id = self.labels.resolve(raw_label) if raw_label is not None else None
        return _Row(record.row, record.line, text, services.text_hash(text), label_id, meta)

    def _from_fields(self, fields: list[str]) -> tuple[str, str | None, dict]:
        if len(fields) < self.needed:
            missing = [self.column_names[i] for i in sorted(self.used) if i >= len(fields)]
            raise _RowSkipped(
                Skip.MISSING_COLUMN,
                f"the row has {len(fields)} field(s); missing: {', '.join(repr(m) for m in missing)}",
            )
        for i, value in enumerate(fields):
            if _BAD_CHARS.search(value) is not None:
                raise _bad_chars(value, f"column {i + 1}", self.encoding)
        parts = [fields[i].strip() for i in self.text_idx]
        text = self.options.text_separator.join(p for p in parts if p) if len(parts) > 1 else parts[0]
        raw_label = fields[self.label_idx] if self.label_idx is not None else None
        meta = {key: fields[i] for i, key in self.meta_idx if i < len(fields)}
        for i in range(len(self.meta_keys), len(fields)):  # more fields than the header names
            if i not in self.used:
                meta[f"column_{i + 1}"] = fields[i]
        return text, raw_label, meta

    def _from_object(self, obj: dict) -> tuple[str, str | None, dict]:
        parts = []
        for key in self.options.text_columns:
            if key not in obj:
                raise _RowSkipped(Skip.MISSING_COLUMN, f"the object has no {key!r} key")
            value = obj[key]
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise _RowSkipped(Skip.INVALID_VALUE, f"{key!r} must be a string, not {type(value).__name__}")
            _check_chars(value, repr(key), self.encoding)
            parts.append(value.strip())
        text = self.options.text_separator.join(p for p in parts if p)
        raw_label = None
        label_key = self.options.label_column
        if label_key:
            if label_key not in obj:
                raise _RowSkipped(Skip.MISSING_COLUMN, f"the object has no {label_key!r} key")
            value = obj[label_key]
            if value is None:
                value = ""
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise _RowSkipped(
                    Skip.INVALID_VALUE, f"{label_key!r} must be a string or an integer, not {type(value).__name__}"
                )
            raw_label = str(value)
            _check_chars(raw_label, repr(label_key), self.encoding)
        used = {*self.options.text_columns, label_key}
        meta = {key: value for key, value in obj.items() if key not in used}
        _check_json_value(meta, "an extra field", self.encoding)
        return text, raw_label, meta


# --- the import ------------------------------------------------------------------------------


def _progress_key(batch_id: int) -> str:
    return f"import-progress:{batch_id}"


@dataclass
class ImportProgress:
    batch_id: int
    status: str
    rows_read: int = 0
    rows_imported: int = 0  # inserted so far, not yet committed
    rows_duplicate: int = 0
    rows_skipped: int = 0
    bytes_read: int = 0
    bytes_total: int | None = None
    updated_at: str = ""

    @property
    def fraction(self) -> float | None:
        if not self.bytes_total:
            return None
        return min(self.bytes_read / self.bytes_total, 1.0)


ProgressCallback = Callable[[ImportProgress], None]


class _Run:
    """The counters and the capped report of one running import."""

    def __init__(self, batch: ImportBatch, bytes_total: int | None, on_progress: ProgressCallback | None):
        self.batch = batch
        self.progress = ImportProgress(batch_id=batch.pk, status=ImportBatch.Status.RUNNING, bytes_total=bytes_total)
        self.on_progress = on_progress
        self.report: list[dict] = []
        self.reasons: Counter[str] = Counter()
        self.report_limit = settings.TALLY_IMPORT_REPORT_LIMIT
        self.counter: _CountingReader | None = None
        self.started = time.monotonic()
        self.labels_created: list[str] = []

    def note(self, row: int, line: int, code: str, reason: str, **extra) -> None:
        self.reasons[code] += 1
        if code in Skip.DUPLICATES:
            self.progress.rows_duplicate += 1
        else:
            self.progress.rows_skipped += 1
        if len(self.report) < self.report_limit:
            self.report.append({"row": row, "line": line, "code": code, "reason": reason, **extra})

    def publish(self, status: str | None = None) -> None:
        progress = self.progress
        if status:
            progress.status = status
        if self.counter is not None:
            progress.bytes_read = self.counter.bytes_read
        progress.updated_at = timezone.now().isoformat()
        try:
            cache.set(_progress_key(progress.batch_id), asdict(progress), settings.TALLY_IMPORT_PROGRESS_TTL_SECONDS)
        except Exception:  # progress is best effort: a cache outage must not fail the import
            logger.warning("Could not publish progress of import %s", progress.batch_id, exc_info=True)
        if self.on_progress is not None:
            self.on_progress(progress)

    def stats(self) -> dict:
        seconds = time.monotonic() - self.started
        return {
            "reasons": dict(sorted(self.reasons.items())),
            "report_omitted": max(sum(self.reasons.values()) - len(self.report), 0),
            "bytes_read": self.counter.bytes_read if self.counter is not None else self.progress.bytes_read,
            "bytes_total": self.progress.bytes_total,
            "seconds": round(seconds, 3),
            "rows_per_second": round(self.progress.rows_read / seconds, 1) if seconds > 0 else None,
            "labels_created": self.labels_created,
        }


# Example fields the importer fills itself; any other column gets its model default.
_FILLED = {"id", "project", "text", "text_hash", "gold_label", "meta", "import_batch", "created_at"}


def _insert_chunk(*, project: Project, batch_id: int, rows: list[_Row]) -> None:
    """Insert one chunk of new examples: COPY on PostgreSQL (several times faster than a
    multi-row INSERT), elsewhere one prepared INSERT run for every row (SQLite's executemany
    beats bulk_create's 999-parameter statements by far). Like bulk_create, this bypasses
    save(); the columns, and the defaults of fields the import does not fill, come from the model."""
    opts = Example._meta
    others = [f for f in opts.concrete_fields if f.name not in _FILLED]
    defaults = tuple(f.get_db_prep_save(f.get_default(), connection) for f in others)
    columns = ["project_id", "text", "text_hash", "gold_label_id", "meta", "import_batch_id", "created_at"]
    columns += [f.column for f in others]
    quote = connection.ops.quote_name
    table, names = quote(opts.db_table), ", ".join(map(quote, columns))
    now = timezone.now()
    if connection.vendor == "postgresql":
        dumps = json.dumps
        with connection.cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for r in rows:
                meta = dumps(r.meta) if r.meta else "{}"
                copy.write_row((project.pk, r.text, r.text_hash, r.label_id, meta, batch_id, now, *defaults))
        return
    created_at = connection.ops.adapt_datetimefield_value(now)
    adapt_json = connection.ops.adapt_json_value
    placeholders = ", ".join(["%s"] * len(columns))
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} ({names}) VALUES ({placeholders})",  # noqa: S608 -- names from the model
            [
                (
                    project.pk,
                    r.text,
                    r.text_hash,
                    r.label_id,
                    adapt_json(r.meta, None) if r.meta else "{}",
                    batch_id,
                    created_at,
                    *defaults,
                )
                for r in rows
            ],
        )


def _existing_hashes(project_id: int, hashes: set[str]) -> dict[str, tuple[int, int | None]]:
    """text_hash -> (example id, import batch id) of the chunk's hashes already in the project:
    one query on the unique (project, text_hash) index. Raw SQL: the ORM would prepare each of
    the chunk's thousands of parameters one by one."""
    opts = Example._meta
    quote = connection.ops.quote_name
    select = (
        f"SELECT {quote('text_hash')}, {quote('id')}, {quote('import_batch_id')} "  # noqa: S608 -- model names
        f"FROM {quote(opts.db_table)} WHERE {quote('project_id')} = %s AND {quote('text_hash')} "
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One text parameter split by the server: cheaper than adapting a 2,000-item array.
            cursor.execute(select + "= ANY(string_to_array(%s, ','))", [project_id, ",".join(hashes)])
        else:
            cursor.execute(select + f"IN ({', '.join(['%s'] * len(hashes))})", [project_id, *hashes])
        return {text_hash: (pk, batch_id) for text_hash, pk, batch_id in cursor.fetchall()}


def _flush(run: _Run, project: Project, rows: list[_Row]) -> None:
    if not rows:
        return
    batch_id = run.batch.pk
    existing = _existing_hashes(project.pk, {r.text_hash for r in rows})
    first_row: dict[str, int] = {}
    new: list[_Row] = []
    for r in rows:
        if r.text_hash in existing:
            pk, from_batch = existing[r.text_hash]
            if from_batch == batch_id:
                run.note(r.row, r.line, Skip.DUPLICATE_IN_FILE, "same text as an earlier row of this file", example=pk)
            else:
                run.note(
                    r.row,
                    r.line,
                    Skip.DUPLICATE_IN_PROJECT,
                    f"same text as example {pk}, already in the project",
                    example=pk,
                )
        elif r.text_hash in first_row:
            run.note(r.row, r.line, Skip.DUPLICATE_IN_FILE, f"same text as row {first_row[r.text_hash]} of this file")
        else:
            first_row[r.text_hash] = r.row
            new.append(r)
    if new:
        _insert_chunk(project=project, batch_id=batch_id, rows=new)
        run.progress.rows_imported += len(new)


def _records(buffered: io.BufferedReader, options: ImportOptions) -> tuple[list[str] | None, Iterator[_Record]]:
    _refuse_utf16(buffered)
    if options.file_format == ImportBatch.Format.JSONL:
        return None, _jsonl_records(buffered, options)
    return _delimited_records(buffered, options)


def _import_rows(run: _Run, project: Project, stream: IO[bytes], options: ImportOptions) -> None:
    run.counter = _CountingReader(stream)
    buffered = io.BufferedReader(run.counter, buffer_size=READ_BUFFER_BYTES)
    header, records = _records(buffered, options)
    labels = _Labels(project, options)
    builder = _RowBuilder(options, header, labels)
    chunk_rows = settings.TALLY_IMPORT_CHUNK_ROWS
    pending: list[_Row] = []
    progress = run.progress
    next_publish = chunk_rows
    for record in records:
        progress.rows_read += 1
        try:
            if record.skip is not None:
                raise record.skip
            pending.append(builder.build(record))
        except _RowSkipped as skipped:
            run.note(record.row, record.line, skipped.code, skipped.reason)
        if len(pending) >= chunk_rows:
            _flush(run, project, pending)
            pending = []
        if progress.rows_read >= next_publish:
            next_publish += chunk_rows
            run.publish()
    _flush(run, project, pending)
    run.labels_created = labels.created


class _AlreadyRunning(Exception):  # noqa: N818
    pass


def import_run(
    *,
    batch: ImportBatch,
    stream: IO[bytes],
    bytes_total: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> ImportBatch:
    """Import the batch's file from `stream`, all or nothing. Returns the batch, SUCCEEDED or
    FAILED (with `error`); never half-written. A finished batch is returned as it is, and a
    batch another process is importing right now is left to it."""
    now = timezone.now()
    claimed = ImportBatch.objects.filter(pk=batch.pk, status=ImportBatch.Status.PENDING).update(
        status=ImportBatch.Status.RUNNING, started_at=now
    )
    batch.refresh_from_db()
    if not claimed and batch.status != ImportBatch.Status.RUNNING:
        return batch  # already finished
    # RUNNING without our claim: a redelivered task whose worker died (its transaction was
    # rolled back) -- or a live import, which the row lock below tells apart.
    run = _Run(batch, bytes_total, on_progress)
    try:
        options = ImportOptions.from_json(batch.options or {"file_format": batch.file_format})
        with transaction.atomic():
            try:
                ImportBatch.objects.select_for_update(nowait=True).filter(pk=batch.pk).get()
            except DatabaseError as exc:
                raise _AlreadyRunning from exc
            run.publish(ImportBatch.Status.RUNNING)  # only now: a live import's progress is not reset
            # One import per project at a time, so "one query per chunk" sees every duplicate.
            # NO KEY UPDATE: annotators' claims (rows pointing at the project) are not blocked.
            project = Project.objects.select_for_update(no_key=True).get(pk=batch.project_id)
            if connection.vendor == "sqlite":
                # SQLite's default page cache (2 MiB) is far smaller than a large project's
                # (project, text_hash) index: probing and growing it would read pages all day.
                with connection.cursor() as cursor:
                    cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
            _import_rows(run, project, stream, options)
            batch.status = ImportBatch.Status.SUCCEEDED
            batch.rows_read = run.progress.rows_read
            batch.rows_imported = run.progress.rows_imported
            batch.rows_duplicate = run.progress.rows_duplicate
            batch.rows_skipped = run.progress.rows_skipped
            batch.report = run.report
            batch.stats = run.stats()
            batch.error = ""
            batch.finished_at = timezone.now()
            batch.save(
                update_fields=[
                    "status",
                    "rows_read",
                    "rows_imported",
                    "rows_duplicate",
                    "rows_skipped",
                    "report",
                    "stats",
                    "error",
                    "finished_at",
                ]
            )
    except _AlreadyRunning:
        logger.info("Import %s is running in another process; leaving it there", batch.pk)
        return batch
    except BaseException as exc:  # noqa: B036 -- record any failure (Ctrl-C included), then decide
        _mark_failed(batch, run, exc)
        if not isinstance(exc, Exception):
            raise
        return batch
    run.publish(ImportBatch.Status.SUCCEEDED)
    _discard_upload(batch)
    return batch


def _mark_failed(batch: ImportBatch, run: _Run, exc: BaseException) -> None:
    """After the rollback: the batch says what happened, and that nothing was imported."""
    if isinstance(exc, TallyError):
        error = exc.message
    elif isinstance(exc, KeyboardInterrupt):
        error = "Interrupted."
    else:
        logger.exception("Import %s failed", batch.pk)
        error = f"{type(exc).__name__}: {exc}".strip()[:2000]
    batch.status = ImportBatch.Status.FAILED
    batch.error = f"{error} Nothing was imported."
    batch.rows_read = run.progress.rows_read
    batch.rows_imported = 0
    batch.rows_duplicate = run.progress.rows_duplicate
    batch.rows_skipped = run.progress.rows_skipped
    batch.report = run.report
    batch.stats = run.stats()
    batch.finished_at = timezone.now()
    batch.save(
        update_fields=[
            "status",
            "error",
            "rows_read",
            "rows_imported",
            "rows_duplicate",
            "rows_skipped",
            "report",
            "stats",
            "finished_at",
        ]
    )
    run.progress.rows_imported = 0
    run.publish(ImportBatch.Status.FAILED)
    _discard_upload(batch)


def _discard_upload(batch: ImportBatch) -> None:
    if batch.upload:
        try:
            batch.upload.delete(save=False)
        except OSError:
            logger.warning("Could not delete the upload of import %s", batch.pk, exc_info=True)
        ImportBatch.objects.filter(pk=batch.pk).update(upload="")


# --- creating batches (command line, API, admin) ----------------------------------------------


def check_columns(*, stream: IO[bytes], options: ImportOptions) -> list[str] | None:
    """Read only the header and check the named columns exist: refuse a wrong column name
    at upload time rather than in the worker. Returns the header (None for JSONL / no header)."""
    if options.file_format == ImportBatch.Format.JSONL or not options.has_header:
        return None
    buffered = io.BufferedReader(_CountingReader(stream), buffer_size=READ_BUFFER_BYTES)
    try:
        header, _ = _records(buffered, options)
        _RowBuilder(options, header, labels=None)
    except ImportFailed as exc:
        raise ValidationFailed(exc.message, code="invalid_columns") from exc
    return header


@transaction.atomic
def import_batch_create(
    *,
    project: Project,
    created_by,
    source_name: str,
    options: ImportOptions,
    upload: File | None = None,
    idempotency_key: str | None = None,
) -> tuple[ImportBatch, bool]:
    """A PENDING batch (with its uploaded file saved to storage). With an idempotency key that
    was used before in this project, the earlier batch instead: returns (batch, created)."""
    source_name = PurePath(source_name).name[:255] or "upload"
    if idempotency_key:
        earlier = ImportBatch.objects.filter(project=project, idempotency_key=idempotency_key).first()
        if earlier is not None:
            return _same_upload(earlier, source_name), False
    batch = ImportBatch(
        project=project,
        created_by=created_by,
        source_name=source_name,
        file_format=options.file_format,
        text_column=",".join(options.text_columns),
        label_column=options.label_column,
        options=options.to_json(),
        idempotency_key=idempotency_key or None,
    )
    batch.full_clean(exclude=["upload", "created_by", "idempotency_key"])
    try:
        with transaction.atomic():
            batch.save()
    except IntegrityError:  # the same key, at the same moment, from a retry in flight
        earlier = ImportBatch.objects.get(project=project, idempotency_key=idempotency_key)
        return _same_upload(earlier, source_name), False
    if upload is not None:
        batch.upload.save(source_name, upload, save=False)
        batch.save(update_fields=["upload"])
    return batch, True


def _same_upload(earlier: ImportBatch, source_name: str) -> ImportBatch:
    if earlier.source_name != source_name:
        raise Conflict(
            f"This Idempotency-Key was already used for {earlier.source_name!r} (import {earlier.pk}).",
            code="key_reused",
        )
    return earlier


def import_upload(
    *,
    project: Project,
    created_by,
    upload: File,
    options: ImportOptions,
    idempotency_key: str | None = None,
) -> tuple[ImportBatch, bool]:
    """Web and API uploads: check the header, store the file, queue the import after commit."""
    from .tasks import import_batch_task

    if idempotency_key:
        earlier = ImportBatch.objects.filter(project=project, idempotency_key=idempotency_key).first()
        if earlier is not None:
            return _same_upload(earlier, PurePath(upload.name or "").name[:255] or "upload"), False
    max_bytes = settings.TALLY_MAX_UPLOAD_BYTES
    if upload.size is not None and upload.size > max_bytes:
        raise ValidationFailed(
            f"The file has {upload.size:,} bytes; the limit is {max_bytes:,} (TALLY_MAX_UPLOAD_BYTES).",
            code="file_too_large",
        )
    upload.seek(0)
    check_columns(stream=upload, options=options)
    upload.seek(0)
    with transaction.atomic():
        batch, created = import_batch_create(
            project=project,
            created_by=created_by,
            source_name=upload.name or "upload",
            options=options,
            upload=upload,
            idempotency_key=idempotency_key,
        )
        if created:
            transaction.on_commit(lambda: import_batch_task.delay(batch.pk))
    return batch, created


def import_batch_run(*, batch_id: int) -> ImportBatch | None:
    """The worker's entry point: import an uploaded batch from storage."""
    batch = ImportBatch.objects.filter(pk=batch_id).first()
    if batch is None or batch.status in FINISHED:
        return batch
    if not batch.upload:
        run = _Run(batch, None, None)
        _mark_failed(batch, run, ImportFailed("The uploaded file is missing from storage."))
        return batch
    try:
        stream = batch.upload.open("rb")
    except OSError as exc:
        run = _Run(batch, None, None)
        _mark_failed(batch, run, ImportFailed(f"Cannot open the uploaded file: {exc}."))
        return batch
    with stream:
        return import_run(batch=batch, stream=stream, bytes_total=batch.upload.size)


# --- reading progress ------------------------------------------------------------------------


def import_progress(*, batch: ImportBatch) -> dict | None:
    """Live progress of a PENDING/RUNNING batch from the cache (the DB row has only its final
    counts): rows and bytes read, fraction done, and whether it has stalled."""
    if batch.status in FINISHED:
        return None
    try:
        data = cache.get(_progress_key(batch.pk))
    except Exception:
        logger.warning("Could not read progress of import %s", batch.pk, exc_info=True)
        data = None
    if not data:
        return None
    progress = ImportProgress(**data)
    updated = datetime.fromisoformat(progress.updated_at) if progress.updated_at else None
    stalled = bool(updated and (timezone.now() - updated).total_seconds() > settings.TALLY_IMPORT_STALL_SECONDS)
    return {**data, "fraction": progress.fraction, "stalled": stalled}
