"""Writing a benchmark's Markdown file without losing what people wrote below it."""

from pathlib import Path


def write_keeping_notes(path: Path | str, generated: str) -> None:
    """Write `generated` to `path`, keeping every hand-written section (from the first "## "
    heading on) of the file already there: a re-run replaces the figures, not their analysis."""
    path = Path(path)
    kept = ""
    if path.exists():
        previous = path.read_text()
        at = previous.find("\n## ")
        kept = previous[at:] if at >= 0 else ""
    path.write_text(generated.rstrip("\n") + "\n" + kept if kept else generated)
