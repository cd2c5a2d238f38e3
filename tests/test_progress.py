"""Progress: plain lines at each tenth of the work when the output is not a terminal (no bar flood in a log)."""

import io

from ddpm.progress import Progress


def test_a_log_gets_one_line_per_tenth_with_the_time_left():
    log = io.StringIO()
    progress = Progress(250, "sampling", stream=log)
    assert list(progress.wrap(range(250))) == list(range(250))
    lines = log.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("sampling: 25/250 steps, ") and lines[0].endswith(" s left")
    assert lines[-1].startswith("sampling: 250/250 steps, ") and lines[-1].endswith("about 0 s left")


def test_fewer_units_than_tenths_report_each_unit_once():
    log = io.StringIO()
    progress = Progress(3, "bits/dim", unit="batch", stream=log)
    for _ in range(3):
        progress.update()
    assert [line.split(",")[0] for line in log.getvalue().splitlines()] == [
        "bits/dim: 1/3 batches", "bits/dim: 2/3 batches", "bits/dim: 3/3 batches"]
