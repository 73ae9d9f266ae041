"""bench/report_files.py: a benchmark's re-run replaces its generated table and keeps the
sections people wrote below it (the import and pool-write benches used to erase them)."""

from bench.report_files import write_keeping_notes


def test_a_rerun_replaces_the_figures_and_keeps_the_notes(tmp_path):
    path = tmp_path / "BENCHMARKS-x.md"
    write_keeping_notes(path, "# X\n\n| a | 1 |\n")
    assert path.read_text() == "# X\n\n| a | 1 |\n"

    path.write_text(path.read_text() + "\n## Why it is slow\n\nmeasured: the index.\n")
    write_keeping_notes(path, "# X\n\n| a | 2 |\n")
    assert path.read_text() == "# X\n\n| a | 2 |\n\n## Why it is slow\n\nmeasured: the index.\n"
