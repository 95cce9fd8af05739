"""``python -m transferlab COMMAND ...`` (the same as the ``transferlab`` command)."""

from transferlab.commands import main

if __name__ == "__main__":
    raise SystemExit(main())
