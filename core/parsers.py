"""Request body parsers for the API (REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]).

A JSON body nested deeper than MAX_JSON_DEPTH is a 400 before any view sees it: Python's json
recurses once per level (a 50,000-deep `[[[...]]]` is a RecursionError, a 5xx), and so does
every later walk over the data (serializers, `check_json_value`). No Tally request needs more
than a handful of levels.
"""

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_JSON_DEPTH = 64


def json_depth_exceeds(data, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `data` (parsed JSON) nests deeper than `limit` containers; iterative, no recursion."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def too_deep() -> ParseError:
    return ParseError(f"JSON parse error - the body is nested deeper than {MAX_JSON_DEPTH} levels.")


class DepthLimitedJSONParser(parsers.JSONParser):
    """DRF's JSONParser, refusing bodies nested deeper than MAX_JSON_DEPTH with a 400."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise too_deep() from None
        if json_depth_exceeds(data):
            raise too_deep()
        return data
