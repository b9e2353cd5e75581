"""photograde's command-line root: assembles the sub-commands of ``training`` and ``serve`` and
adds those that need both (demo mode, ``db seed``)."""
