"""``python -m grelu_caduceus.cli COMMAND ...``: the same as the ``grelu-caduceus`` command."""

import sys

from . import main

sys.exit(main())
