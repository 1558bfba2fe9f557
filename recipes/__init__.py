"""The recipes, installed as ``genrec.recipes`` for the ``genrec`` command line.

Each recipe is a runnable script (``python recipes/train_tokenizer.py``, ``accelerate launch
recipes/train_genrec.py``) with a ``main(argv)`` that ``genrec train-tokenizer`` / ``train`` /
``evaluate`` call; their YAML configs are package data in ``configs/``. Nothing is imported here.
"""
