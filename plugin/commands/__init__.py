"""Sub-commands of the whyslow CLI, one module each."""
