"""The lab directory: one member list for every node of a lab, as a log of sealed entries that converge."""
