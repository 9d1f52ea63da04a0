"""A synthetic product catalogue for the demo: realistic titles, deterministic for a seed.

Titles are built like real marketplace titles: ``<brand> <gender> <style> <colour> <article>``:

- the article word is one of the category's common synonyms, or (``rare_article_prob``) one of its
  long-tail words, which scarce gold rows rarely contain;
- it is sometimes dropped (``drop_article_prob``): then only the style word and the brand hint at the
  category, and several styles are shared between categories, so such titles are genuinely ambiguous;
- big brands sell across categories (``cross_brand_prob``: the brand is drawn from every brand);
- bundles name a second product after the one sold (``bundle_prob``: "... Kurta with Handbag" is a
  kurta): a bag of words sees two categories, a model that reads the title's structure sees one;
- a little marketplace noise, and a small share of wrong human labels (``label_noise``).

On these titles a linear model on word and character n-grams trained on the scarce gold rows is not
enough, as on real catalogues: the demo's MiniLM teacher beats TF-IDF + LR on validation with a
tie-excluding interval (the teacher gate). Listings are spread over ``days`` days ending at
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
# category -> rarer article words of the same meaning (the catalogue's long tail): few of them, if any,
# appear among the scarce gold rows, so a model must know what they mean, not just which rows they were in
RARE_ARTICLES: dict[str, list[str]] = {
    "Tshirts": ["Henley", "Crew Neck Top", "Jersey Top", "Tank Top", "Muscle Tee", "Raglan", "Longsleeve Top",
                "Cotton Top"],
    "Shirts": ["Oxford", "Button-Down", "Linen Overshirt", "Flannel", "Dress Shirt", "Chambray", "Mandarin Collar",
               "Cuban Collar"],
    "Jeans": ["Denims", "Bootcut Pants", "Jeggings", "Five-Pocket Trousers", "Distressed Denim", "Boyfriend Fit",
              "Mom Fit", "Selvedge"],
    "Kurtas": ["Anarkali", "Tunic", "Salwar Top", "Pathani", "Kaftan", "Angrakha", "Chikankari", "Ethnic Top"],
    "Dresses": ["Gown", "Sundress", "Frock", "Midi", "Bodycon", "Wrap Dress", "Skater Dress", "Slip Dress"],
    "Casual Shoes": ["Moccasins", "Slip-Ons", "Espadrilles", "Boat Shoes", "Derby Shoes", "Brogues", "Chukka Boots",
                     "Plimsolls"],
    "Sports Shoes": ["Trainers", "Jogging Footwear", "Cleats", "Spikes", "Football Boots", "Tennis Shoes",
                     "Basketball Shoes", "Gym Footwear"],
    "Watches": ["Wristwatch", "Timepiece", "Smartwatch", "Chronometer", "Fitness Band", "Dial", "Automatic",
                "Strap Watch"],
    "Handbags": ["Purse", "Clutch", "Satchel", "Shoulder Bag", "Hobo Bag", "Wallet", "Crossbody", "Baguette Bag"],
    "Sunglasses": ["Shades", "Eyewear", "Sun Goggles", "Cat-Eye Frames", "Round Frames", "Clubmasters",
                   "Sport Glasses", "Tinted Lenses"],
    "Backpacks": ["Knapsack", "Daypack", "School Bag", "Hiking Pack", "Duffle Backpack", "Trekking Bag",
                  "Bookbag", "Rolltop"],
    "Perfumes": ["Cologne", "Fragrance", "Eau de Toilette", "Attar", "Body Spray", "Scent", "Parfum", "Musk"],
}
GENDERS = ["Men", "Women", "Unisex", "Boys", "Girls"]
COLOURS = ["Black", "White", "Navy Blue", "Blue", "Red", "Green", "Grey", "Brown", "Pink", "Olive",
           "Maroon", "Beige", "Yellow", "Purple", "Silver", "Gold"]


def generate_catalogue(n_rows: int = 3000, days: int = 10, end_date: str = "2024-01-10",
                       gold_fraction: float = 0.3, seed: int = 0, drop_article_prob: float = 0.15,
                       label_noise: float = 0.03, rare_article_prob: float = 0.4,
                       cross_brand_prob: float = 0.7, bundle_prob: float = 0.3) -> list[dict[str, Any]]:
    """Warehouse ``products`` rows; the same arguments always give the same rows."""
    if n_rows < 1 or days < 1 or not 0 < gold_fraction <= 1:
        raise ValueError(
            f"need n_rows >= 1, days >= 1 and 0 < gold_fraction <= 1; got {n_rows}, {days}, {gold_fraction}"
        )
    rng = random.Random(seed)
    end = dt.date.fromisoformat(end_date)
    categories = sorted(CATALOGUE)
    all_brands = sorted({b for _, _, bs in CATALOGUE.values() for b in bs})
    rows = []
    for i in range(n_rows):
        category = rng.choice(categories)
        articles, styles, brands = CATALOGUE[category]
        words = [rng.choice(all_brands if rng.random() < cross_brand_prob else brands), rng.choice(GENDERS)]
        if rng.random() < 0.7:
            words.append(rng.choice(styles))
        words.append(rng.choice(COLOURS))
        if rng.random() >= drop_article_prob:
            words.append(rng.choice(RARE_ARTICLES[category] if rng.random() < rare_article_prob else articles))
        elif len(words) == 3:  # no style and no article: keep at least one hint
            words.append(rng.choice(styles))
        if rng.random() < bundle_prob and words[-1] in articles + RARE_ARTICLES[category]:  # a bundle
            other = rng.choice([c for c in categories if c != category])
            words += ["with", rng.choice(CATALOGUE[other][0])]
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
