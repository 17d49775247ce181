"""Report: a study directory → a self-contained ``report.html`` and PNG figures.

matplotlib is imported only when figures are drawn.
"""

from loratune.report.load import StudyData, load_study

__all__ = ["StudyData", "load_study", "write_report"]


def write_report(data: StudyData, out_dir):  # type: ignore[no-untyped-def]
    from loratune.report.html import write_report as _write

    return _write(data, out_dir)
