"""The fixed held-out slice: a row belongs to it when a stable hash of its key falls below
``holdout_percent``. The key is the row id, or the use case's grouping key (a query, say) so that a
group is held out or trained on as a whole. Held-out rows never enter teacher or student training,
on any night.
"""
from __future__ import annotations

import hashlib


def is_holdout(key: str, percent: int) -> bool:
    return int(hashlib.sha1(str(key).encode()).hexdigest()[:8], 16) % 100 < percent
