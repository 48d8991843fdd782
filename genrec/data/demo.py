"""The embedded demo data: three small shops whose customers behave in learnable ways.

**A demo, not a benchmark.** It exists so the main job, the examples and the tests run
anywhere, without ``../shared``; numbers measured on it say nothing about real data.
It is generated deterministically by this code from a seed (no data files): the same seed
gives identical catalogs and sequences on every machine, a different seed different ones.

Shops (keys of :func:`demo_datasets`): ``electronics``, ``kitchen``, ``outdoors``, with
about 110-190 items and 300-500 users each (different sizes, so category mixing ∝ n^0.3 has
something to do). Item text looks like a store's: a title with brand, model, product type and
a variant, the brand, a 3-level category path, a price such as ``"$24.99"`` and a short
description. Item ids are unique across shops (``ele-0007``, ``kit-0012``, ...).

The structure a sequential recommender should pick up:

* **accessories and consumables follow their main product**, in a typical order (camera →
  memory card → camera bag → ...), each step taken with probability 0.75;
* **brand loyalty**: a customer has a favourite brand and buys from it 85% of the time;
* **consumables are bought again** later (coffee beans, fuel canisters, ...);
* **popularity skew**: product types and brands follow Zipf-like weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genrec.data.catalog import Catalog, Item
from genrec.data.dataset import SequenceDataset


@dataclass(frozen=True)
class _Accessory:
    name: str          # "SD Memory Card 128GB"
    leaf: str          # its category leaf, "Memory Cards"
    note: str          # what the description says it does
    consumable: bool = False


@dataclass(frozen=True)
class _Line:
    """A main product type and what customers buy after it."""

    product: str                  # "Mirrorless Camera"
    subcategory: str              # level 2 of the category path, "Camera & Photo"
    leaf: str                     # level 3, "Mirrorless Cameras"
    variants: tuple[str, ...]     # title suffixes: "24MP, 4K Video"
    price: tuple[float, float]
    accessories: tuple[_Accessory, ...]


@dataclass(frozen=True)
class _Shop:
    department: str
    prefix: str
    users: int
    brands: tuple[str, ...]
    lines: tuple[_Line, ...]
    praise: tuple[str, ...]       # description sentences for main products


A = _Accessory
_SHOPS: dict[str, _Shop] = {
    "electronics": _Shop("Electronics", "ele", 500, ("Lumina", "Vexon", "Orbitek", "Castell", "Nordvik", "Kairo"), (
        _Line("Mirrorless Camera", "Camera & Photo", "Mirrorless Cameras",
              ("24MP, 4K Video", "33MP, In-Body Stabilisation", "20MP, Flip Screen"), (449, 1899), (
                  A("SD Memory Card 128GB", "Memory Cards", "fast enough for 4K video"),
                  A("Camera Bag", "Bags & Cases", "padded dividers for a body and two lenses"),
                  A("Spare Battery", "Batteries", "a full day of shooting on one charge"),
                  A("Lens Cleaning Kit", "Cleaning", "blower, brush and microfibre cloths", True))),
        _Line("Wireless Headphones", "Audio", "Over-Ear Headphones",
              ("Noise Cancelling", "40h Battery", "Hi-Res Audio"), (79, 399), (
                  A("Headphone Case", "Headphone Accessories", "a hard shell that fits folded headphones"),
                  A("USB-C Charging Cable 2m", "Cables", "braided and long enough for the sofa"),
                  A("Replacement Ear Pads", "Headphone Accessories", "memory foam, easy to swap", True))),
        _Line("Laptop 14-inch", "Computers", "Laptops",
              ("16GB RAM, 512GB SSD", "32GB RAM, 1TB SSD", "8GB RAM, 256GB SSD"), (599, 2199), (
                  A("Laptop Sleeve 14-inch", "Laptop Bags", "water-resistant with a soft lining"),
                  A("Wireless Mouse", "Mice", "silent clicks and a two-year battery"),
                  A("USB-C Hub 7-in-1", "Hubs & Docks", "HDMI, SD card and three USB ports"),
                  A("Laptop Stand", "Laptop Accessories", "aluminium, raises the screen to eye level"))),
        _Line("Smartphone", "Cell Phones", "Unlocked Phones",
              ("128GB, Dual SIM", "256GB, Triple Camera", "64GB, 5G"), (199, 1099), (
                  A("Phone Case", "Cases", "slim, drop-tested protection"),
                  A("Tempered Glass Screen Protector", "Screen Protectors", "bubble-free fitting", True),
                  A("Fast Charger 30W", "Chargers", "charges to 50% in thirty minutes"))),
        _Line("Tablet 11-inch", "Computers", "Tablets",
              ("64GB, Wi-Fi", "128GB, Wi-Fi + Cellular", "256GB, Wi-Fi"), (249, 899), (
                  A("Tablet Folio Cover", "Tablet Accessories", "stands at two viewing angles"),
                  A("Stylus Pen", "Tablet Accessories", "pressure-sensitive with palm rejection"),
                  A("Paper-Feel Screen Protector", "Screen Protectors", "matte finish for writing", True))),
    ), ("Built for everyday use with a clean, simple setup.", "Light, fast and well reviewed.",
        "Comes with a two-year warranty.", "A favourite for travel and work.")),
    "kitchen": _Shop("Home & Kitchen", "kit", 400, ("Ferro", "Hearthwell", "Copperline", "Saltbridge", "Marlow"), (
        _Line("Espresso Machine", "Coffee, Tea & Espresso", "Espresso Machines",
              ("15 Bar, Steam Wand", "Dual Boiler", "Compact, 1.2L Tank"), (149, 899), (
                  A("Espresso Coffee Beans 1kg", "Coffee Beans", "a medium roast with notes of cocoa", True),
                  A("Milk Frothing Pitcher 350ml", "Coffee Accessories", "stainless steel with a pour spout"),
                  A("Descaling Solution", "Cleaning Supplies", "keeps the boiler free of limescale", True),
                  A("Espresso Tamper 58mm", "Coffee Accessories", "a flat, weighted base"))),
        _Line("Stand Mixer", "Small Appliances", "Stand Mixers",
              ("5.5 Quart, 10 Speeds", "4.5 Quart, Tilt Head", "6 Quart, Bowl Lift"), (199, 649), (
                  A("Mixing Bowl Set", "Bakeware", "three nesting stainless bowls"),
                  A("Dough Hook Attachment", "Mixer Attachments", "for bread and pizza dough"),
                  A("Silicone Spatula Set", "Kitchen Utensils", "heat-resistant to 230 C"))),
        _Line("Chef's Knife 8-inch", "Cutlery", "Chef's Knives",
              ("German Steel", "Damascus Pattern", "Japanese VG-10"), (39, 249), (
                  A("Knife Sharpener", "Sharpeners", "two-stage, coarse and fine"),
                  A("End-Grain Cutting Board", "Cutting Boards", "acacia wood, gentle on edges"),
                  A("Magnetic Knife Strip", "Knife Storage", "holds six knives on the wall"))),
        _Line("Cast Iron Skillet 12-inch", "Cookware", "Skillets",
              ("Pre-Seasoned", "Enamelled", "Double Handle"), (29, 199), (
                  A("Seasoning Oil", "Cookware Care", "plant-based, for a non-stick surface", True),
                  A("Chainmail Scrubber", "Cookware Care", "cleans without stripping seasoning"),
                  A("Silicone Handle Cover", "Cookware Accessories", "protects hands up to 250 C"))),
        _Line("Blender", "Small Appliances", "Countertop Blenders",
              ("1200W, 2L Jar", "1500W, Vacuum", "900W, Personal Cups"), (59, 449), (
                  A("Replacement Blender Jar", "Blender Parts", "BPA-free with measurement marks"),
                  A("Tamper Tool", "Blender Parts", "pushes thick mixtures onto the blades"),
                  A("Smoothie Recipe Book", "Cookbooks", "a hundred recipes for every season"))),
    ), ("Designed for home cooks who use it every day.", "Easy to clean and built to last.",
        "A well-loved choice in our kitchen range.", "Solid construction with a lifetime guarantee.")),
    "outdoors": _Shop("Sports & Outdoors", "out", 300, ("Trailhead", "Summitry", "Pinecrest", "Riverstone",
                                                         "Northwind"), (
        _Line("Two-Person Tent", "Camping & Hiking", "Backpacking Tents",
              ("Freestanding, 1.9kg", "Ultralight, 1.2kg", "4-Season"), (129, 549), (
                  A("Tent Footprint", "Tent Accessories", "protects the floor from rocks"),
                  A("Aluminium Tent Stakes 10-Pack", "Tent Accessories", "light and hard to bend"),
                  A("Seam Sealer", "Tent Accessories", "keeps seams waterproof", True))),
        _Line("Hiking Backpack 45L", "Camping & Hiking", "Hiking Daypacks",
              ("Ventilated Back", "Ultralight", "Adjustable Torso"), (89, 299), (
                  A("Backpack Rain Cover", "Backpack Accessories", "fits 35 to 55 litre packs"),
                  A("Hydration Bladder 2L", "Hydration", "a wide opening for ice and cleaning"),
                  A("Packing Cubes Set", "Travel Accessories", "three sizes with mesh tops"))),
        _Line("Camping Stove", "Camping & Hiking", "Camp Stoves",
              ("Piezo Ignition", "Integrated Pot", "Two Burner"), (39, 189), (
                  A("Isobutane Fuel Canister 230g", "Stove Fuel", "for about an hour of cooking", True),
                  A("Camping Cookware Set", "Camp Kitchen", "nesting pots and a pan"),
                  A("Stove Windscreen", "Camp Kitchen", "folds flat, aluminium"))),
        _Line("Trail Running Shoes", "Running", "Trail Running Shoes",
              ("Gore-Tex", "Wide Fit", "Lightweight Racer"), (99, 199), (
                  A("Merino Running Socks", "Running Socks", "cushioned and blister-resistant", True),
                  A("Trail Gaiters", "Running Accessories", "keep grit out of the shoes"),
                  A("Cushioned Insoles", "Shoe Care", "arch support for long runs", True))),
        _Line("Down Sleeping Bag", "Camping & Hiking", "Sleeping Bags",
              ("-5 C Comfort", "3-Season, 800g", "Summer, 500g"), (119, 459), (
                  A("Insulated Sleeping Pad", "Sleeping Pads", "R-value 4, packs small"),
                  A("Compression Sack", "Camping Accessories", "shrinks the bag to half its size"),
                  A("Inflatable Camping Pillow", "Camping Accessories", "weighs 80 grams"))),
    ), ("Field-tested on long trips.", "Light to carry and quick to set up.",
        "Made with recycled materials.", "Backed by our repair-for-life promise.")),
}
del A

_MODEL_LETTERS = "ABCDEFGHJKLMNPRSTVXZ"


def _zipf(n: int, a: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** a
    return w / w.sum()


def _price(rng: np.random.Generator, low: float, high: float) -> str:
    return f"${np.floor(rng.uniform(low, high)) + 0.99:.2f}"


def _build_catalog(shop: _Shop, rng: np.random.Generator) -> tuple[Catalog, list[list[list[int]]], list[list[int]],
                                                                      set[int]]:
    """Items, plus [brand][line] -> main item indices (1-2 models), [brand][line] -> accessory
    indices in their usual buying order, and the set of consumables."""
    items: list[Item] = []
    mains: list[list[list[int]]] = []
    accessories: list[list[int]] = []  # flat: brand * len(lines) + line
    consumables: set[int] = set()

    def add(**kw) -> int:
        items.append(Item(item_id=f"{shop.prefix}-{len(items):04d}", **kw))
        return len(items) - 1

    for brand in shop.brands:
        mains.append([])
        for line in shop.lines:
            models = []
            n_models = 2 if rng.random() < 0.5 else 1
            for variant in rng.choice(len(line.variants), size=n_models, replace=False):
                spec = line.variants[int(variant)]
                model = f"{_MODEL_LETTERS[int(rng.integers(len(_MODEL_LETTERS)))]}{int(rng.integers(1, 10)) * 10}"
                models.append(add(
                    title=f"{brand} {model} {line.product}, {spec}",
                    brand=brand,
                    categories=(shop.department, line.subcategory, line.leaf),
                    price=_price(rng, *line.price),
                    description=f"The {brand} {model} {line.product.lower()} ({spec}). "
                                f"{shop.praise[int(rng.integers(len(shop.praise)))]}",
                ))
            mains[-1].append(models)
            accs = []
            for acc in line.accessories:
                i = add(
                    title=f"{brand} {acc.name} for {line.product}",
                    brand=brand,
                    categories=(shop.department, line.subcategory, acc.leaf),
                    price=_price(rng, 6, 69),
                    description=f"Made by {brand} for its {line.product.lower()} range: {acc.note}.",
                )
                accs.append(i)
                if acc.consumable:
                    consumables.add(i)
            accessories.append(accs)
    return Catalog(items), mains, accessories, consumables


def _sequence(rng: np.random.Generator, shop: _Shop, mains, accessories, consumables: set[int],
              brand_pop: np.ndarray, line_pop: np.ndarray) -> list[int]:
    n_brands, n_lines = len(shop.brands), len(shop.lines)
    favourite = int(rng.choice(n_brands, p=brand_pop))
    length = int(rng.integers(5, 16))
    seq: list[int] = []
    bought: list[int] = []  # consumables this customer owns, to buy again later
    while len(seq) < length:
        if bought and rng.random() < 0.25:  # a refill of something bought before
            refill = bought[int(rng.integers(len(bought)))]
            if refill != seq[-1]:  # never a consecutive repeat (CALRec dedup would drop it)
                seq.append(refill)
                continue
        brand = favourite if rng.random() < 0.85 else int(rng.integers(n_brands))
        line = int(rng.choice(n_lines, p=line_pop))
        models = mains[brand][line]
        main = models[0] if len(models) == 1 or rng.random() < 0.7 else models[1]
        if seq and main == seq[-1]:
            continue
        seq.append(main)
        for acc in accessories[brand * n_lines + line]:  # accessories follow, in their usual order
            if len(seq) >= length or rng.random() > 0.75:
                break
            seq.append(acc)
            if acc in consumables:
                bought.append(acc)
    return seq[:length]


def demo_dataset(category: str, seed: int = 0, num_users: int | None = None) -> SequenceDataset:
    """One shop of the demo data (``electronics``, ``kitchen`` or ``outdoors``). Same seed, same data.

    ``num_users`` overrides the shop's default number of customers (500 / 400 / 300).
    """
    if category not in _SHOPS:
        raise KeyError(f"unknown demo category {category!r}; choose from {sorted(_SHOPS)}")
    shop = _SHOPS[category]
    rng = np.random.default_rng([seed, sorted(_SHOPS).index(category)])
    catalog, mains, accessories, consumables = _build_catalog(shop, rng)
    brand_pop = _zipf(len(shop.brands), 0.6)
    line_pop = _zipf(len(shop.lines), 0.8)
    n = shop.users if num_users is None else num_users
    sequences = {f"{shop.prefix}-u{u:04d}": _sequence(rng, shop, mains, accessories, consumables, brand_pop, line_pop)
                 for u in range(n)}
    return SequenceDataset(catalog, sequences, name=category)


def demo_datasets(seed: int = 0) -> dict[str, SequenceDataset]:
    """All demo shops, keyed by category name: ``electronics``, ``kitchen``, ``outdoors``."""
    return {c: demo_dataset(c, seed) for c in sorted(_SHOPS)}
