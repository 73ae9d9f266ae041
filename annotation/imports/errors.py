"""Why a file or a row is not imported: the file-level error and the stable per-row codes.

Raised by formats and rows while reading; counted by progress, written by copy (duplicates);
the codes are what the API, the admin and the command show."""

from core.errors import TallyError


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
    TOO_DEEP = "too_deep"
    LINE_TOO_LONG = "line_too_long"
    DUPLICATE_IN_FILE = "duplicate_in_file"
    DUPLICATE_IN_PROJECT = "duplicate_in_project"

    DUPLICATES = (DUPLICATE_IN_FILE, DUPLICATE_IN_PROJECT)


class RowSkipped(Exception):  # noqa: N818 -- control flow inside the row loop, never escapes it
    def __init__(self, code: str, reason: str):
        self.code = code
        self.reason = reason
