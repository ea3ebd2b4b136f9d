"""agf: music genre classification with Artist Group Factors (Kim et al., WWW 2018) and beyond."""

__version__ = "0.1.0"
