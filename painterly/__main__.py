"""``python -m painterly`` runs the command-line tool."""

import sys

from .cli.app import main

sys.exit(main())
