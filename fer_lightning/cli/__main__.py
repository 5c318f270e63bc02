"""``python -m fer_lightning.cli`` runs the ``fer-lightning`` command."""

import sys

from fer_lightning.cli.main import main

sys.exit(main())
