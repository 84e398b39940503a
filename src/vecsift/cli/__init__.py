"""The ``vecsift`` command line: ``entry.main`` is the command, ``main.main`` its body."""
