"""The ``elope`` sub-commands: thin click layers (parse, call, print), assembled by :mod:`elope.cli`."""
