"""Privacy tasks: the right to erasure (`erasure`) and retention periods (`housekeeping`)."""
