import subprocess
import sys

import kmeans_imagery


def test_public_names_resolve():
    for name in kmeans_imagery.__all__:
        assert getattr(kmeans_imagery, name) is not None


def test_import_is_light():
    code = ("import sys, kmeans_imagery; "
            "print(any(m.startswith(('sklearn', 'matplotlib')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
