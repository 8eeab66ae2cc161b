"""Shapeless export's pure parts: fitting the numbers of a graph to its sizes (``fit``)."""
