"""The test suite is a package so that its shared modules import cleanly, without ``sys.path`` edits:
``from tests.helpers import ...`` (plain builders), ``from tests._genrec_tiny import ...`` (tiny recipe runs),
``from tests.hub_server import HubServer``; fixtures live in ``tests/conftest.py``.

pytest (default "prepend" import mode) puts the folder above this package, the repository root, on
``sys.path``, so this works for ``python -m pytest`` and ``pytest tests/test_x.py`` alike.
"""
