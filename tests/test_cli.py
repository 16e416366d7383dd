import subprocess
import sys

from paincontrol_lib.cli import main


def test_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "paincontrol_lib.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "synthesize" in out


def test_synthesize_tiny(tmp_path, capsys):
    assert (
        main(
            [
                "synthesize",
                "--profile",
                "tiny",
                "--identities",
                "2",
                "--out",
                str(tmp_path / "sp"),
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert (tmp_path / "sp" / "synthpain.parquet").is_file()
    assert "wrote 8 images of 2 people" in capsys.readouterr().out


def test_bad_profile_is_a_clear_error(tmp_path, capsys):
    assert main(["synthesize", "--profile", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "nope.yaml not found" in capsys.readouterr().err
