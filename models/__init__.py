"""Network definitions, their training and evaluation, and the shipped weights (weights/)."""
