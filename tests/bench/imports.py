"""What every start of `reactor serve` pays before it looks at a file: the interpreter
and the imports of the served application. `python -m tests.bench.imports` prints its
peak RSS as JSON; the driver times it from Popen to exit."""

from __future__ import annotations

import json
import sys

from tests.bench.scanfloor import peak_rss_bytes


def main() -> int:
    import reactor.cli
    import reactor.serve.app

    print(json.dumps({"maxrss_bytes": peak_rss_bytes(), "app": reactor.serve.app.__name__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
