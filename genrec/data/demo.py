"""The embedded demo data: small shops whose customers behave in learnable ways.

A demo, not a benchmark. It exists so the main job and the tests run anywhere, without
``../shared``. Generated deterministically from a seed by code, it has the structure a
sequential recommender should pick up: accessories and consumables follow the main product
they belong to, customers stay loyal to a brand, and some products are more popular.
"""

from __future__ import annotations

import numpy as np

from genrec.data.catalog import Catalog, Item
from genrec.data.dataset import SequenceDataset

# category -> (department path, brands, {main product: [accessories / consumables]})
_SHOPS: dict[str, tuple[tuple[str, ...], list[str], dict[str, list[str]]]] = {
    "electronics": (
        ("Electronics",),
        ["Lumina", "Vexon", "Orbitek", "Castell", "Nordvik"],
        {
            "Mirrorless Camera": ["SD Memory Card 128GB", "Camera Bag", "Spare Battery", "Lens Cleaning Kit"],
            "Wireless Headphones": ["Headphone Case", "USB-C Charging Cable", "Replacement Ear Pads"],
            "Laptop 14-inch": ["Laptop Sleeve", "Wireless Mouse", "USB-C Hub", "Laptop Stand"],
            "Smartphone": ["Phone Case", "Screen Protector", "Fast Charger"],
            "Tablet 11-inch": ["Tablet Folio Cover", "Stylus Pen", "Tablet Screen Protector"],
        },
    ),
    "kitchen": (
        ("Home & Kitchen",),
        ["Ferro", "Hearthwell", "Copperline", "Saltbridge", "Marlow"],
        {
            "Espresso Machine": ["Coffee Beans 1kg", "Milk Frothing Pitcher", "Descaling Solution", "Tamper"],
            "Stand Mixer": ["Mixing Bowl Set", "Dough Hook Attachment", "Silicone Spatula Set"],
            "Chef's Knife": ["Knife Sharpener", "Wooden Cutting Board", "Magnetic Knife Strip"],
            "Cast Iron Skillet": ["Seasoning Oil", "Chainmail Scrubber", "Silicone Handle Cover"],
            "Blender": ["Replacement Blender Jar", "Tamper Tool", "Smoothie Recipe Book"],
        },
    ),
    "outdoors": (
        ("Sports & Outdoors",),
        ["Trailhead", "Summitry", "Pinecrest", "Riverstone", "Northwind"],
        {
            "Two-Person Tent": ["Tent Footprint", "Aluminium Tent Stakes", "Seam Sealer"],
            "Hiking Backpack 45L": ["Rain Cover", "Hydration Bladder 2L", "Packing Cubes"],
            "Camping Stove": ["Fuel Canister", "Cookware Set", "Windscreen"],
            "Trail Running Shoes": ["Running Socks", "Gaiters", "Insoles"],
            "Sleeping Bag": ["Sleeping Pad", "Compression Sack", "Camping Pillow"],
        },
    ),
}

_VARIANTS = ["Pro", "Lite", "X2", "Classic", "Max", "S", "Plus", "Go"]


def _price(rng: np.random.Generator, main: bool) -> str:
    value = rng.uniform(79, 899) if main else rng.uniform(6, 69)
    return f"${value:.2f}"


def _catalog(category: str, rng: np.random.Generator) -> tuple[Catalog, dict]:
    dept, brands, products = _SHOPS[category]
    items: list[Item] = []
    mains: dict[tuple[str, str], int] = {}
    accessories: dict[tuple[str, str], list[int]] = {}
    for brand in brands:
        for main, accs in products.items():
            variant = _VARIANTS[int(rng.integers(len(_VARIANTS)))]
            sub = main.split()[-1] if main.split()[-1][0].isupper() else main
            mains[(brand, main)] = len(items)
            items.append(Item(
                item_id=f"{category[:3]}-{len(items):04d}",
                title=f"{brand} {main} {variant}",
                brand=brand,
                categories=(*dept, sub + "s", main),
                price=_price(rng, True),
                description=f"The {brand} {main} {variant}: dependable everyday quality from {brand}.",
            ))
            accessories[(brand, main)] = []
            for acc in accs:
                accessories[(brand, main)].append(len(items))
                items.append(Item(
                    item_id=f"{category[:3]}-{len(items):04d}",
                    title=f"{brand} {acc} for {main}",
                    brand=brand,
                    categories=(*dept, "Accessories", acc),
                    price=_price(rng, False),
                    description=f"A {acc.lower()} made by {brand} to go with the {brand} {main}.",
                ))
    return Catalog(items), {"mains": mains, "accessories": accessories, "brands": brands,
                            "products": list(products)}


def demo_dataset(category: str, seed: int = 0, num_users: int = 400) -> SequenceDataset:
    """One shop of the demo data. Same seed, same data."""
    if category not in _SHOPS:
        raise KeyError(f"unknown demo category {category!r}; choose from {sorted(_SHOPS)}")
    rng = np.random.default_rng([seed, sorted(_SHOPS).index(category)])
    catalog, s = _catalog(category, rng)
    products = s["products"]
    brands = s["brands"]
    product_pop = 1.0 / np.arange(1, len(products) + 1) ** 0.8  # popularity skew
    product_pop /= product_pop.sum()
    sequences: dict[str, list[int]] = {}
    for u in range(num_users):
        favourite = brands[int(rng.integers(len(brands)))]
        length = int(rng.integers(5, 13))
        seq: list[int] = []
        while len(seq) < length:
            brand = favourite if rng.random() < 0.8 else brands[int(rng.integers(len(brands)))]
            product = products[int(rng.choice(len(products), p=product_pop))]
            seq.append(s["mains"][(brand, product)])
            for acc in s["accessories"][(brand, product)]:  # accessories follow, in order
                if len(seq) >= length or rng.random() > 0.75:
                    break
                seq.append(acc)
        sequences[f"{category[:3]}-u{u:04d}"] = seq[:length]
    return SequenceDataset(catalog, sequences, name=category)


def demo_datasets(seed: int = 0) -> dict[str, SequenceDataset]:
    """All demo shops, keyed by category name (electronics, kitchen, outdoors)."""
    return {c: demo_dataset(c, seed) for c in sorted(_SHOPS)}
