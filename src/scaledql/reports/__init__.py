"""Reports: what evaluations add up to, as Markdown, JSON and plots drawn by rliable.

Data flows evaluation → reports: ``evaluate`` writes each run's evaluation reports (where they
lie: ``run_folder``); ``stats`` turns score matrices into rliable's estimates; here

- ``runs``: run folders → labelled methods → ``[seeds, games]`` score matrices;
- ``over_runs``: ``report_runs`` — the report over any runs (``scaledql report RUN...``);
- ``demo``: ``write_report`` — a demo folder's own report (``scaledql report DEMO``);
- ``plots``: every aggregate plot, by rliable's ``plot_utils``.
"""

from scaledql.reports.demo_report import write_report
from scaledql.reports.over_runs import report_runs

__all__ = ["report_runs", "write_report"]
