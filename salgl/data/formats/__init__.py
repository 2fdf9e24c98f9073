"""Readers for users' own multi-label collections: annotation files in, labels and samples out.

Each reader is a pure function returning a ``Collection``; preparing, image decoding and the
pipeline wiring happen elsewhere.
"""
