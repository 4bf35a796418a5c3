"""``eocube train`` beside the other commands (issue 22 item 4): their one-line errors, its old module path warns."""

from __future__ import annotations

import subprocess
import sys
import warnings

from click.testing import CliRunner

from eocube.cli import COMMANDS, main


def test_train_lives_in_the_cli_package():
    assert COMMANDS["train"][0] == "eocube.cli.train:train_command"
    assert main.get_command(None, "train").name == "train"


def test_a_bad_train_option_is_one_line_and_exit_2():
    """Before, click's usage block (Usage:, Try ..., Error: ...) as train did not use OneLineCommand."""
    result = CliRunner().invoke(main, ["train", "--until-epoch", "0"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--until-epoch" in lines[0], result.output


def test_two_configs_are_one_line_and_exit_2(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    result = CliRunner().invoke(main, ["train", str(a), "--config", str(b), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: two configs given ({a} and --config {b}): give one", result.output
    assert not (tmp_path / "run").exists()


def test_the_old_module_path_still_runs_train_and_warns():
    proc = subprocess.run([sys.executable, "-m", "eocube.learn.cli", "--help"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: eocube train" in proc.stdout and "--until-epoch" in proc.stdout
    warning = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(warning) == 1 and warning[0].startswith("warning: ") and "python -m eocube train" in warning[0]


def test_the_old_import_gives_the_command_with_a_deprecation_warning():
    from eocube.cli.train import train_command

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from eocube.learn.cli import train_command as old
    assert old is train_command
    assert any(issubclass(w.category, DeprecationWarning) and "eocube.cli.train" in str(w.message) for w in caught)
