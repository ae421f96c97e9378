"""``python -m <worker package> (--fd N | --stdio | --connect HOST:PORT)``.

Executors copy this package under a private name and start it with the
interpreter of the agent's environment; see :mod:`.server`.
"""

from __future__ import annotations

import sys

from .server import main

if __name__ == "__main__":
    sys.exit(main())
