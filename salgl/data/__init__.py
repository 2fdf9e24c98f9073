"""Datasets in and out of the prepared format.

- ``prepared``: the prepared format (labels.txt, train/val/test.tsv, meta.json), read and
  written; ``split``: stratified splits; ``images``: checking images before training;
- ``dataset``: the torch Dataset and transforms; ``decode``: safe image decoding;
  ``randaugment``: the authors' RandAugment policy;
- ``fashion_scenes`` (from ``fashion_mnist``): the embedded dataset; ``coco``, ``voc``,
  ``nuswide`` (through ``real``): the paper's benchmarks; ``own`` and ``formats/``: your own
  images as COCO exports, tag tables or one-hot tables.
"""
