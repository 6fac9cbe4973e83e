"""Composition root: the `faceaudit` command line, its settings and the local broker."""
