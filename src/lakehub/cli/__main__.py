"""``python -m lakehub.cli``: the same as the ``lakehub`` command."""

from lakehub.cli import main

if __name__ == "__main__":
    main()
