"""The package as a user installs it: one version, and a wheel that installs
in a fresh virtual environment and runs."""
import os
import shutil
import subprocess
import sys
import venv

import pytest

import tfdeblur
from tests.helpers import REPO


def test_version_is_defined_once_and_printed(capsys):
    from setuptools.config.setupcfg import read_configuration

    from tfdeblur.cli import main

    # setup.cfg resolves `attr: tfdeblur.__version__` itself: an independent read.
    assert read_configuration(str(REPO / "setup.cfg"))["metadata"]["version"] == tfdeblur.__version__
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"tfdeblur {tfdeblur.__version__}\n"


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_venv_and_lists(tmp_path):
    src = tmp_path / "src"  # a copy: the build writes build/ and *.egg-info beside the sources
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    for folder in ("tfdeblur", "models", "datasets"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    # Without build isolation pip needs no network: the build backend is the
    # one installed here (CI, with network, installs everything from scratch).
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--no-index", "-w", str(tmp_path / "dist"), str(src)],
                           capture_output=True, text=True, timeout=600)
    if built.returncode != 0 and "No module named" in built.stderr + built.stdout:
        pytest.skip(f"pip cannot build the wheel offline here (setuptools/wheel missing): {built.stderr.strip()[-200:]}")
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("tfdeblur-*.whl")

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies (TensorFlow, ...) come from this interpreter's
    # site-packages, added as plain paths: their .pth files (this checkout's
    # editable install among them) are not run, so only the wheel provides tfdeblur.
    deps = [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]
    with open(os.path.join(site, "zz_test_deps.pth"), "w") as f:
        f.write("\n".join(deps) + "\n")
    # pip >= 22.3 installs into another environment with --python.
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                                "--no-index", str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run([str(python), "-c", "import tfdeblur; print(tfdeblur.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert where.stdout.strip().startswith(site), where.stdout + where.stderr
    listed = subprocess.run([str(env_dir / "bin" / "tfdeblur"), "list"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=600)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert "mtwdn" in listed.stdout and "mtwdn-photos" in listed.stdout  # networks and the packaged weights
    assert listed.stderr == ""
