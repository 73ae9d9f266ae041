"""Records into rows: the text (joined columns), the gold label and the meta of each record,
or the reason the row is skipped.

`RowBuilder` checks the named columns against the header and builds a Row from each Record;
`Labels` resolves gold labels by name (creating them if asked). Called by runs (the row loop)
and, through `check_columns`, by jobs and the command when a file arrives.
"""

import io
from dataclasses import dataclass
from typing import IO

from django.conf import settings

from annotation import services
from annotation.models import ImportBatch, Label, Project
from annotation.text_escapes import unescape_backslashes
from core.errors import TallyError, ValidationFailed

from .errors import ImportFailed, RowSkipped, Skip
from .formats import (
    BAD_CHARS,
    READ_BUFFER_BYTES,
    CountingReader,
    ImportOptions,
    Record,
    bad_chars,
    check_chars,
    check_json_value,
    encoding_label,
    read_records,
)


@dataclass
class Row:
    """One row ready to insert, with where it came from in the file (for the report)."""

    row: int
    line: int
    text: str
    text_hash: str
    label_id: int | None
    meta: dict


class Labels:
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
                raise RowSkipped(Skip.UNKNOWN_LABEL, f"cannot create the label {name!r}: {exc.message}") from exc
            self._remember(label)
            self.created.append(label.name)
            return label.pk
        known = ", ".join(list(self.by_name)[:10]) + (", ..." if len(self.by_name) > 10 else "")
        shown = name if name == value else f"{value!r} -> {name}"
        raise RowSkipped(Skip.UNKNOWN_LABEL, f"unknown label {shown!r} (this project has: {known or 'no labels'})")


class RowBuilder:
    """The file's columns resolved once (refusing a column the header lacks), then one Row per Record."""

    def __init__(self, options: ImportOptions, header: list[str] | None, labels: Labels):
        self.options = options
        self.labels = labels
        self.max_length = settings.TALLY_MAX_TEXT_LENGTH
        self.encoding = encoding_label(options)
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

    def build(self, record: Record) -> Row:
        if self.options.file_format == ImportBatch.Format.JSONL:
            text, raw_label, meta = self._from_object(record.fields)
        else:
            text, raw_label, meta = self._from_fields(record.fields)
        if self.options.unescape_backslashes:
            text = unescape_backslashes(text)
        text = text.strip()
        if not text:
            raise RowSkipped(Skip.EMPTY_TEXT, "the text is empty")
        if len(text) > self.max_length:
            raise RowSkipped(Skip.TOO_LONG, f"the text has {len(text):,} characters; the limit is {self.max_length:,}")
        label_id = self.labels.resolve(raw_label) if raw_label is not None else None
        return Row(record.row, record.line, text, services.text_hash(text), label_id, meta)

    def _from_fields(self, fields: list[str]) -> tuple[str, str | None, dict]:
        if len(fields) < self.needed:
            missing = [self.column_names[i] for i in sorted(self.used) if i >= len(fields)]
            raise RowSkipped(
                Skip.MISSING_COLUMN,
                f"the row has {len(fields)} field(s); missing: {', '.join(repr(m) for m in missing)}",
            )
        for i, value in enumerate(fields):
            if BAD_CHARS.search(value) is not None:
                raise bad_chars(value, f"column {i + 1}", self.encoding)
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
                raise RowSkipped(Skip.MISSING_COLUMN, f"the object has no {key!r} key")
            value = obj[key]
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise RowSkipped(Skip.INVALID_VALUE, f"{key!r} must be a string, not {type(value).__name__}")
            check_chars(value, repr(key), self.encoding)
            parts.append(value.strip())
        text = self.options.text_separator.join(p for p in parts if p)
        raw_label = None
        label_key = self.options.label_column
        if label_key:
            if label_key not in obj:
                raise RowSkipped(Skip.MISSING_COLUMN, f"the object has no {label_key!r} key")
            value = obj[label_key]
            if value is None:
                value = ""
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise RowSkipped(
                    Skip.INVALID_VALUE, f"{label_key!r} must be a string or an integer, not {type(value).__name__}"
                )
            raw_label = str(value)
            check_chars(raw_label, repr(label_key), self.encoding)
        used = {*self.options.text_columns, label_key}
        meta = {key: value for key, value in obj.items() if key not in used}
        check_json_value(meta, "an extra field", self.encoding)
        return text, raw_label, meta


# --- checking a file's columns when it arrives (command line, API, admin) ---------------------


def check_columns(*, stream: IO[bytes], options: ImportOptions) -> list[str] | None:
    """Read only the header and check the named columns exist: refuse a wrong column name
    at upload time rather than in the worker. Returns the header (None for JSONL / no header)."""
    if options.file_format == ImportBatch.Format.JSONL or not options.has_header:
        return None
    buffered = io.BufferedReader(CountingReader(stream), buffer_size=READ_BUFFER_BYTES)
    try:
        header, _ = read_records(buffered, options)
        RowBuilder(options, header, labels=None)
    except ImportFailed as exc:
        raise ValidationFailed(exc.message, code="invalid_columns") from exc
    return header
