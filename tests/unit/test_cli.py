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


def test_gold_fraction_reproduces_the_scarce_label_case_on_ones_own_file(kd_home, tmp_path, capsys):
    """``load-catalogue --gold-fraction`` keeps the category on a stable share of the rows (the same rows
    on every load) and takes it off the others, even where an earlier full load stored it."""
    f = tmp_path / "shop.csv"
    f.write_text("sku,name,cat\n" + "".join(f"{i},Item number {i},{'ABC'[i % 3]}\n" for i in range(400)))
    args = ["load-catalogue", str(f), "--text-column", "name", "--label-column", "cat", "--id-column", "sku"]
    assert main(args) == 0
    assert capsys.readouterr().out.strip().endswith("the products table now holds 400 rows (400 with a gold label)")
    assert main(args + ["--gold-fraction", "0.1"]) == 0
    out = capsys.readouterr().out.strip()
    labelled = int(out.rsplit("(", 1)[1].split()[0])
    assert "categories kept on 10% of them" in out and 25 <= labelled <= 55, out
    assert main(args + ["--gold-fraction", "0.1"]) == 0  # stable: the same rows keep their category
    assert capsys.readouterr().out.strip().endswith(f"holds 400 rows ({labelled} with a gold label)")
    with pytest.raises(SystemExit) as exc:
        main(args + ["--gold-fraction", "10"])
    assert exc.value.code == 2 and "not a share from 0 to 1" in capsys.readouterr().err
