from __future__ import annotations

import sys

from devstack.commands import main

sys.exit(main(sys.argv[1:]))
