import sys

from vecsift.cli.main import main

sys.exit(main())
