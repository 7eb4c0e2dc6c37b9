"""The ``krakenflow`` command line: one module per command."""
