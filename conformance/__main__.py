"""``python -m conformance --registry URL ...``"""

import sys

from .cli import main

sys.exit(main())
