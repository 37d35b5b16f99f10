"""``python -m gaunt.train [flags]`` trains; ``python -m gaunt.train evaluate [flags]`` evaluates a model."""

import sys

from .cli import main

sys.exit(main())
