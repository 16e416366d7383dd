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


def test_check_says_what_is_missing_and_where(tmp_path, capsys):
    """`paincontrol check`: the default needs no external weights; the sd15 profile names each
    missing folder and file; a complete SD-1.5-shaped folder passes."""
    from sd15_fakes import fake_sd15

    assert main(["check"]) == 0
    assert "needs no external weights" in capsys.readouterr().out
    assert main(["check", "--profile", "sd15"]) == 1
    out = capsys.readouterr().out
    assert "MISSING  Stable Diffusion 1.5" in out and "weights/stable-diffusion-v1-5" in out
    assert "w600k_r50.onnx" in out  # the sd15 profile's ArcFace identity
    sd = fake_sd15(tmp_path / "sd15")
    assert main(["check", "--sd15", str(sd)]) == 0
    assert "ok       Stable Diffusion 1.5" in capsys.readouterr().out
    next((sd / "vae").glob("diffusion_pytorch_model.*")).unlink()
    assert main(["check", "--sd15", str(sd), "--controlnet", str(tmp_path / "cn")]) == 1
    out = capsys.readouterr().out
    assert f"{sd / 'vae'}/ one of diffusion_pytorch_model.safetensors" in out
    assert f"{tmp_path / 'cn'}/ (no such folder)" in out and "0 of 2 ok" in out
