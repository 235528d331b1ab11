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
