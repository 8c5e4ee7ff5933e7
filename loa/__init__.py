"""loa: the broadcast relay of a commune IP radio system (Circular 39/2020/TT-BTTTT)."""

__version__ = "0.1.0"
