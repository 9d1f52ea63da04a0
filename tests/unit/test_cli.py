"""The command line: every outside name is validated before it touches a path, errors are one line
naming the fix (the traceback behind --debug)."""
import subprocess
import sys

import pytest

from conftest import ROOT
from kd_tasks.cli import main


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "kd_tasks.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env)


@pytest.mark.parametrize("args", [
    ["rollback", "--use-case", "../../outside", "--version", "0123456789ab", "--reason", "x"],
    ["rollback", "--use-case", "purchase_intent/../product_category", "--version", "0123456789ab", "--reason", "x"],
    ["promotions", "--use-case", "../x"],
    ["report", "--use-case", "/etc", "--ds", "2024-01-10"],
])
def test_a_use_case_must_be_a_declared_one(kd_home, tmp_path, capsys, args):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert not kd_home.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("version", ["../versions/0123456789ab", "0123456789ab/..", ".0123456789ab.tmp-x", "v1"])
def test_a_version_must_be_a_content_hash(kd_home, capsys, version):
    assert main(["rollback", "--version", version, "--reason", "x"]) == 2
    err = capsys.readouterr().err
    assert f"error: version {version!r} is not valid: it must match" in err and len(err.strip().splitlines()) == 1
    assert not (kd_home / "registry" / "product_category" / "aliases").exists()


def test_errors_are_one_line_and_debug_shows_the_traceback(kd_home, tmp_path):
    missing = tmp_path / "shop.csv"
    missing.write_text("id,name\n1,Red Shirt\n")
    env = {"KD_HOME": str(kd_home), "PATH": "/usr/bin:/bin"}
    out = cli("load-catalogue", str(missing), "--text-column", "title", "--label-column", "cat", env=env)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: shop.csv: the title column 'title' is not in "
                                                         "the file") and "--text-column" in out.stderr
    assert "Traceback" not in out.stderr
    debug = cli("--debug", "load-catalogue", str(missing), "--text-column", "title", "--label-column", "cat", env=env)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_the_loader_prints_what_the_warehouse_holds(kd_home, tmp_path, capsys):
    f = tmp_path / "shop.csv"
    f.write_text("sku,name,cat\n1,Red Shirt,Shirts\n2,Blue Jeans,\n")
    assert main(["load-catalogue", str(f), "--text-column", "name", "--label-column", "cat", "--id-column", "sku"]) == 0
    f.write_text("sku,name,cat\n1,Red Shirt,\n3,Green Cap,Caps\n")
    assert main(["load-catalogue", str(f), "--text-column", "name", "--label-column", "cat", "--id-column", "sku"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith(
        "the products table now holds 3 rows (2 with a gold label)")
