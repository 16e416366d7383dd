"""Ctrl-C in the middle of a ``paincontrol`` command ends it with one line and exit code 130,
not a KeyboardInterrupt traceback."""

from __future__ import annotations

import signal
import subprocess
import sys

# The CLI with `synthesize` replaced by a command that says it is busy, then waits.
BUSY_CLI = """
import sys, time
from paincontrol_lib import cli

def busy(args):
    print("busy", flush=True)
    time.sleep(120)

cli._synthesize = busy
sys.exit(cli.main(["synthesize"]))
"""


def test_ctrl_c_ends_the_cli_with_one_line_and_exit_code_130():
    proc = subprocess.Popen([sys.executable, "-c", BUSY_CLI], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline() == "busy\n"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err == "interrupted: paincontrol synthesize; nothing half-written was kept\n"
