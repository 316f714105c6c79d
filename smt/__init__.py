"""smt: Synthetic Mixed Training as a declarative, data-centric build."""

__version__ = "0.1.0"
