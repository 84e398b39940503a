import sys

from vecsift.cli.entry import main

sys.exit(main())
