"""`retention`: the command line, the top layer. Each command is a thin call into a package."""
