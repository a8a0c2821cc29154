"""``python -m elope``: the same command line as the ``elope`` script."""

from elope.cli import main

if __name__ == "__main__":
    main()
