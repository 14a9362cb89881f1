"""suanwang (算网): an open platform for a national integrated computing power network."""

__version__ = "0.1.0"
