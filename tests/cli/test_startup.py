"""``kmi --help`` and ``kmi --version`` start fast: they import neither numpy nor a command."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["fit", "--help"]])
def test_start_imports_only_what_the_command_uses(args):
    heavy = ["numpy", "sklearn", "matplotlib", "scipy"] if args[0].startswith("--") else ["sklearn"]
    code = (
        "import sys\n"
        "from kmeans_imagery.cli import main\n"
        f"assert main({args!r}) == 0\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_help_lists_every_command_with_its_summary(capsys):
    from kmeans_imagery.cli import COMMANDS, main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out
    for name in COMMANDS:
        assert main([name, "--help"]) == 0
        assert "Usage: kmi " + name in capsys.readouterr().out
