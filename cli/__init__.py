"""The command line: the top of the import graph (it imports flows; nothing imports it)."""
