"""``python -m kmeans_imagery`` runs the ``kmi`` command line."""

import sys

from .cli import main

sys.exit(main())
