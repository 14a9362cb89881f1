"""``python -m suanwang.cli``: the ``suanwang`` command."""

from suanwang.cli.main import main

main()
