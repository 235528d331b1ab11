"""The installed package lives under one `widthnas` namespace and never shadows a user's own packages."""
import subprocess
import sys


def test_import_beside_users_own_models_package(tmp_path):
    # a user's project with its own `models` and `nas` packages, as the working directory
    for name in ("models", "nas"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("USERS_OWN = True\n")
    code = ("import models, nas, widthnas\n"
            "from widthnas.models import mobilenet_v1_small\n"
            "from widthnas.mrf import GraphMRF\n"
            "from widthnas.nas.cli import main\n"
            "assert models.USERS_OWN and nas.USERS_OWN, 'the user packages were shadowed'\n"
            "assert len(mobilenet_v1_small().free_groups) == 14\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_the_demos_options_are_valid_run_options():
    """`make demo`'s command line (make -n) parses, and its settings pass the run's checks: a demo that
    refuses its own options would fail only at the user's first command."""
    import argparse
    import shlex
    import shutil
    from pathlib import Path

    import pytest

    if shutil.which("make") is None:
        pytest.skip("no make here")
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run(["make", "-n", "demo"], cwd=root, capture_output=True, text=True,
                       timeout=60)
    line = next(l for l in r.stdout.splitlines() if "widthnas run" in l)
    argv = shlex.split(line)
    argv = argv[argv.index("run"):]
    from widthnas.nas.commands import run as run_cmd
    from widthnas.nas.run_config import RunConfig, check_run_config

    p = argparse.ArgumentParser()
    run_cmd.add_parser(p.add_subparsers())
    args = p.parse_args(argv)
    assert args.profile_networks == 200 and args.heldout_networks == 50 and args.remeasure_networks == 20
    cfg = RunConfig(profile_networks=args.profile_networks, heldout_networks=args.heldout_networks,
                    remeasure_networks=args.remeasure_networks)
    check_run_config(cfg)
