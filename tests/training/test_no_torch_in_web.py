"""The web process never loads torch: importing everything it serves must leave it out."""

import subprocess
import sys

from tests.support.processes import ROOT, subprocess_env

PROBE = """
import sys, django
django.setup()
import config.urls, training.services, training.selectors, training.apis, training.tasks, training.models
import training.urls, annotation.services, annotation.apis
from django.urls import reverse
reverse("training:prediction-list", kwargs={"slug": "x"})
heavy = sorted(m for m in ("torch", "transformers", "sentence_transformers", "safetensors.torch") if m in sys.modules)
print("HEAVY:" + ",".join(heavy))
"""


def test_web_imports_do_not_load_torch():
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "HEAVY:\n" in out.stdout or out.stdout.strip().endswith("HEAVY:"), out.stdout


def test_the_probe_would_notice_torch():
    """The check above can fail: importing the worker's pipeline does load torch on use."""
    probe = PROBE.replace(
        "import config.urls", "import training.ml.device; training.ml.device.configure_threads(1)\nimport config.urls"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120
    )
    assert "torch" in out.stdout.split("HEAVY:")[-1]
