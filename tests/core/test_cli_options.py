"""One command-line style (issue 22 item 4): ``--source``, ``--out``, ``--model`` and ``--quicklook`` mean the
same in every command, and the old spellings still work with a one-line deprecation warning on stderr.

Old spellings: ``eocube evaluate --plot`` (now ``--quicklook``, as in gapfill and apply) and
``eocube apply MODEL`` (the model as first argument; now ``--model``, as in gapfill and evaluate).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from eocube.cli import main
from eocube.cli._common import respell


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("command", ["gapfill", "evaluate", "apply"])
def test_every_command_that_draws_or_reads_a_model_spells_it_the_same(command):
    help_text = _run(command, "--help").output
    assert "--quicklook" in help_text and "--model" in help_text and "--source" in help_text


@pytest.mark.parametrize("spelling", [["--plot", "{png}"], ["--plot={png}"]])
def test_evaluate_plot_still_names_the_quicklook_and_warns(tmp_path, spelling):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    png = str(blocker / "p.png")  # under a file: refused before anything is read
    result = _run("evaluate", *[s.format(png=png) for s in spelling])
    assert result.exit_code == 2, result.output
    assert _lines(result.stderr) == [
        "warning: eocube evaluate --plot is deprecated: use --quicklook (same meaning)",
        (f"error: cannot write the quicklook (--quicklook) {png}: {blocker} is a file, not a folder; "
         "choose a path in a folder"),
    ], result.stderr


def test_evaluate_quicklook_is_the_new_spelling(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = _run("evaluate", "--quicklook", str(blocker / "p.png"))
    assert result.exit_code == 2
    assert len(_lines(result.stderr)) == 1 and "cannot write the quicklook (--quicklook)" in result.stderr


def test_apply_model_as_first_argument_still_works_and_warns(tmp_path):
    missing = tmp_path / "nope.pt2"
    result = _run("apply", str(missing), "--source", "sentinel2", "--out", str(tmp_path / "o.zarr"))
    assert result.exit_code == 2
    warning, error = _lines(result.stderr)
    assert warning == (f"warning: eocube apply MODEL (the model as first argument) is deprecated: use --model "
                       f"{missing} (same meaning)")
    assert error.startswith(f"error: model {missing}: no such file")  # read as the model, as before


def test_apply_takes_the_model_as_an_option(tmp_path):
    missing = tmp_path / "nope.pt2"
    result = _run("apply", "--model", str(missing), "--source", "sentinel2", "--out", str(tmp_path / "o.zarr"))
    assert result.exit_code == 2
    assert _lines(result.stderr) == [(f"error: model {missing}: no such file; give a torch.export program (.pt2), "
                                      "a TorchScript file, a state_dict file with --factory, or a training folder "
                                      "of eocube train")]


def test_apply_refuses_two_models_and_none_in_one_line(tmp_path):
    out = str(tmp_path / "o.zarr")
    twice = _run("apply", "a.pt2", "--model", "b.pt2", "--source", "sentinel2", "--out", out)
    assert twice.exit_code == 2
    assert _lines(twice.stderr) == [("error: the model is given twice (a.pt2 and --model b.pt2): give it once, "
                                     "as --model")]
    none = _run("apply", "--source", "sentinel2", "--out", out)
    assert none.exit_code == 2 and len(_lines(none.stderr)) == 1 and "Missing option '--model'" in none.stderr


def test_apply_reads_a_training_folder_as_its_exported_model(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pt2").write_bytes(b"")  # no card beside it: the message shows which file was taken
    result = _run("apply", "--model", str(run), "--source", "sentinel2", "--out", str(tmp_path / "o.zarr"))
    assert result.exit_code == 2
    assert f"no model card beside {run / 'model.pt2'}" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run("apply", "--model", str(empty), "--source", "sentinel2", "--out", str(tmp_path / "o.zarr"))
    assert result.exit_code == 2 and "a folder without model.pt2" in result.stderr


def test_respell_replaces_only_option_spellings_before_a_double_dash(capsys):
    args = ["--plot", "a.png", "--plot=b.png", "--plotting", "--", "--plot"]
    assert respell(args, {"--plot": "--quicklook"}, "eocube x") == [
        "--quicklook", "a.png", "--quicklook=b.png", "--plotting", "--", "--plot"]
    assert capsys.readouterr().err.count("deprecated") == 1  # one warning per old spelling
    assert respell(["--quicklook", "c.png"], {"--plot": "--quicklook"}, "eocube x") == ["--quicklook", "c.png"]
    assert capsys.readouterr().err == ""


def test_the_readme_lists_the_shared_options():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    for spelling in ("`--source`", "`--out`", "`--model`", "`--quicklook`", "`--plot`"):
        assert spelling in section, spelling
