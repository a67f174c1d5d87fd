"""``python -m lightning_unlearn.cli``: the ``lightning-unlearn`` command."""

from lightning_unlearn.cli import main

if __name__ == "__main__":
    main()
