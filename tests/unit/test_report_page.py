"""What the api-server's report plugin reads: only a night's page under KD_HOME's runs/, by the path its
write_report task returned; anything else is refused by name, a missing page names the task to clear."""
from __future__ import annotations

import pytest

from kd_tasks.names import InputError
from kd_tasks.stages.html_report import read_page


@pytest.fixture
def night(tmp_path):
    run = tmp_path / "home" / "runs" / "product_category" / "manual__2024-01-10"
    run.mkdir(parents=True)
    (run / "report.json").write_text("{}")
    (run / "report.html").write_text("<html>the night</html>")
    (tmp_path / "report.json").write_text("{}")
    (tmp_path / "report.html").write_text("<html>not a night</html>")
    return tmp_path / "home", run / "report.json"


def test_the_page_beside_a_nights_report_is_read(night):
    home, report = night
    assert read_page(str(report), home) == "<html>the night</html>"


@pytest.mark.parametrize("path", ["{tmp}/report.json", "{home}/runs/product_category/../../../report.json",
                                  "{home}/runs/product_category/manual__2024-01-10/report.html",
                                  "{home}/runsx/report.json", "/etc/passwd"])
def test_anything_but_a_nights_report_under_the_runs_is_refused(night, path):
    home, _ = night
    with pytest.raises(InputError, match="is not a night's report.json under"):
        read_page(path.format(tmp=home.parent, home=home), home)


def test_a_missing_page_names_the_task_that_writes_it(night):
    home, report = night
    (report.parent / "report.html").unlink()
    with pytest.raises(FileNotFoundError, match="clear the run's write_report task"):
        read_page(str(report), home)
