"""``python -m nanoae.cli ...`` is the ``nanoae`` command."""

import sys

from nanoae.cli.main import main

sys.exit(main())
