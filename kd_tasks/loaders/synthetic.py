"""A synthetic product catalogue for the demo: realistic titles, deterministic for a seed.

Titles are built like real marketplace titles: ``<brand> <gender> <style> <colour> <article>``, with
the article word drawn from the category's synonyms, sometimes dropped (then only the style word and
brand hint at the category; several styles and brands are shared between categories, so such titles
are genuinely ambiguous), a little marketplace noise, and a small share of wrong human labels. Listings are spread over ``days`` days ending at
``end_date``; only ``gold_fraction`` of them carry a human category label.
"""
from __future__ import annotations

import datetime as dt
import random
from typing import Any, Iterator

# category -> (article synonyms, style words that hint at it, brands that sell it)
CATALOGUE: dict[str, tuple[list[str], list[str], list[str]]] = {
    "Tshirts": (["Tshirt", "T-shirt", "Tee", "Polo Tshirt"], ["Printed", "Round Neck", "Graphic", "Slim Fit", "Sports"],
                ["Nike", "Puma", "Roadster", "United Colors of Benetton", "Adidas"]),
    "Shirts": (["Shirt", "Casual Shirt", "Formal Shirt"], ["Checked", "Slim Fit", "Striped", "Printed", "Formal"],
               ["Peter England", "Van Heusen", "Arrow", "Roadster", "Allen Solly"]),
    "Jeans": (["Jeans", "Denim Jeans"], ["Skinny Fit", "Washed", "Slim Fit", "Casual"],
              ["Levis", "Wrangler", "Lee", "Roadster", "Spykar"]),
    "Kurtas": (["Kurta", "Kurti", "Straight Kurta"], ["Embroidered", "Printed", "Ethnic", "Casual"],
               ["Fabindia", "Biba", "W", "Global Desi", "Anouk"]),
    "Dresses": (["Dress", "Maxi Dress", "Shift Dress"], ["Floral", "Printed", "A-Line", "Casual"],
                ["Mango", "Vero Moda", "Only", "Forever New", "Zara"]),
    "Casual Shoes": (["Casual Shoes", "Sneakers", "Loafers"], ["Canvas", "Leather", "Lace-Up", "Casual"],
                     ["Converse", "Vans", "Nike", "Puma", "Red Tape"]),
    "Sports Shoes": (["Sports Shoes", "Running Shoes", "Training Shoes"], ["Running", "Mesh", "Sports", "Lace-Up"],
                     ["Nike", "Adidas", "Reebok", "Asics", "Puma"]),
    "Watches": (["Watch", "Analog Watch", "Digital Watch"], ["Chronograph", "Leather", "Formal", "Sports"],
                ["Titan", "Fastrack", "Casio", "Timex", "Fossil"]),
    "Handbags": (["Handbag", "Tote Bag", "Sling Bag"], ["Quilted", "Leather", "Printed", "Casual"],
                 ["Lavie", "Baggit", "Caprese", "Hidesign", "Mango"]),
    "Sunglasses": (["Sunglasses", "Aviators", "Wayfarers"], ["Polarised", "UV Protected", "Sports", "Casual"],
                   ["Ray-Ban", "Fastrack", "Oakley", "Vincent Chase", "Carrera"]),
    "Backpacks": (["Backpack", "Laptop Backpack", "Rucksack"], ["Padded", "Travel", "Sports", "Printed"],
                  ["Wildcraft", "American Tourister", "Skybags", "Nike", "Puma"]),
    "Perfumes": (["Perfume", "Eau de Parfum", "Deodorant", "Body Mist"], ["Fresh", "Woody", "Floral", "Sports"],
                 ["Davidoff", "Calvin Klein", "Nivea", "Engage", "Park Avenue"]),
}
GENDERS = ["Men", "Women", "Unisex", "Boys", "Girls"]
COLOURS = ["Black", "White", "Navy Blue", "Blue", "Red", "Green", "Grey", "Brown", "Pink", "Olive",
           "Maroon", "Beige", "Yellow", "Purple", "Silver", "Gold"]


def generate_catalogue(n_rows: int = 3000, days: int = 10, end_date: str = "2024-01-10",
                       gold_fraction: float = 0.3, seed: int = 0, drop_article_prob: float = 0.35,
                       label_noise: float = 0.03) -> list[dict[str, Any]]:
    """Warehouse ``products`` rows; the same arguments always give the same rows."""
    if n_rows < 1 or days < 1 or not 0 < gold_fraction <= 1:
        raise ValueError(
            f"need n_rows >= 1, days >= 1 and 0 < gold_fraction <= 1; got {n_rows}, {days}, {gold_fraction}"
        )
    rng = random.Random(seed)
    end = dt.date.fromisoformat(end_date)
    categories = sorted(CATALOGUE)
    rows = []
    for i in range(n_rows):
        category = rng.choice(categories)
        articles, styles, brands = CATALOGUE[category]
        words = [rng.choice(brands), rng.choice(GENDERS)]
        if rng.random() < 0.7:
            words.append(rng.choice(styles))
        words.append(rng.choice(COLOURS))
        if rng.random() >= drop_article_prob:
            words.append(rng.choice(articles))
        elif len(words) == 3:  # no style and no article: keep at least one hint
            words.append(rng.choice(styles))
        if rng.random() < 0.1:  # marketplace noise: pack sizes, a random other colour
            words.append(rng.choice(["Pack of 2", "Combo", rng.choice(COLOURS)]))
        gold = None
        if rng.random() < gold_fraction:
            gold = rng.choice(categories) if rng.random() < label_noise else category
        rows.append({
            "product_id": f"syn-{seed}-{i:06d}",
            "title": " ".join(words),
            "category": gold,
            "listed_on": (end - dt.timedelta(days=rng.randrange(days))).isoformat(),
            "source": "synthetic",
        })
    return rows


# Behaviour shares of the Taobao UserBehavior sample (84,440 events): pv 89.8%, cart 5.3%, fav 2.8%, buy 2.1%.
BEHAVIOR_SHARES = {"pv": 0.898, "cart": 0.053, "fav": 0.028, "buy": 0.021}


def generate_events(days: int, events_per_day: int, end_date: str = "2017-12-03", seed: int = 0,
                    chunk: int = 100_000) -> Iterator[dict[str, Any]]:
    """Behaviour events shaped like the Taobao sample, yielded a chunk at a time (bounded memory).

    Per day ``events_per_day`` events from about ``events_per_day / 11`` active users (Taobao: ~11
    events per user and day), over an item pool that grows with the log (~0.04 items per event, ~19
    items per category, popular items drawn more often); half of a user's events return to the items
    that user keeps coming back to (across days), which is what makes candidates and repeat purchases;
    the behaviour mix is ``BEHAVIOR_SHARES``. The same arguments always give the same events.
    """
    import numpy as np

    from ..loaders.events import _event

    if days < 1 or events_per_day < 1:
        raise ValueError(f"need days >= 1 and events_per_day >= 1, got {days}, {events_per_day}")
    users = max(10, events_per_day // 11)
    items = max(100, int(0.04 * events_per_day * days))
    per_category = 19
    behaviors = np.array(list(BEHAVIOR_SHARES))
    shares = np.array(list(BEHAVIOR_SHARES.values()))
    end = dt.date.fromisoformat(end_date)
    for d in range(days):
        day = end - dt.timedelta(days=days - 1 - d)
        start = dt.datetime(day.year, day.month, day.day)
        rng = np.random.default_rng([seed, d])
        for first in range(0, events_per_day, chunk):
            n = min(chunk, events_per_day - first)
            user = rng.zipf(1.3, n) % users
            popular = rng.zipf(1.2, n) % items
            own = (user * 7919 + rng.integers(0, 12, n)) % items  # the items a user returns to
            item = np.where(rng.random(n) < 0.5, own, popular)
            behavior = behaviors[rng.choice(len(shares), n, p=shares / shares.sum())]
            seconds = np.sort(rng.integers(0, 86_400, n))
            for u, i, b, s in zip(user.tolist(), item.tolist(), behavior.tolist(), seconds.tolist()):
                yield _event(f"u{u}", f"i{i}", f"c{i // per_category}", b, start + dt.timedelta(seconds=s),
                             "synthetic")
