"""Words the simulator builds product titles, descriptions, names and review texts from."""

NOUNS = {
    "electronics": ["headphones", "speaker", "charger", "keyboard", "monitor", "camera", "tablet"],
    "books": ["novel", "cookbook", "travel guide", "biography", "thriller", "atlas", "poetry book"],
    "fashion": ["jacket", "sneakers", "scarf", "dress", "jeans", "backpack", "sunglasses"],
    "home": ["lamp", "cushion", "kettle", "vase", "blanket", "frying pan", "shelf"],
    "beauty": ["face cream", "shampoo", "perfume", "lip balm", "serum", "hair dryer", "soap"],
    "sports": ["yoga mat", "running shoes", "dumbbells", "water bottle", "tennis racket", "helmet"],
    "toys": ["puzzle", "board game", "building set", "doll", "toy car", "kite", "plush bear"],
}
GENERIC_NOUNS = ["item", "gadget", "accessory", "set", "kit"]
ADJECTIVES = [
    "classic",
    "compact",
    "premium",
    "eco",
    "smart",
    "vintage",
    "ultra",
    "everyday",
    "deluxe",
    "light",
    "pro",
    "family",
]
USES = ["everyday use", "travel", "gifts", "the whole family", "beginners", "professionals"]

FIRST_NAMES = [
    "anna",
    "ben",
    "chloe",
    "david",
    "emma",
    "felix",
    "greta",
    "hugo",
    "ines",
    "jan",
    "karla",
    "luca",
    "mia",
    "noah",
    "olga",
    "paul",
    "rosa",
    "sami",
    "tara",
    "yusuf",
]
LAST_NAMES = [
    "meyer",
    "dubois",
    "smith",
    "jansen",
    "garcia",
    "rossi",
    "novak",
    "berg",
    "costa",
    "klein",
    "martin",
    "evans",
    "bakker",
    "lopez",
    "conti",
    "weber",
]
EMAIL_DOMAINS = ["example.com", "example.org", "example.net"]  # reserved for documentation

# Review phrases by tone; the simulator mixes tone from latent satisfaction, not from the rating,
# so text carries information the star rating does not.
REVIEW_OPENINGS = {
    "negative": [
        "Very disappointed with this {noun}.",
        "Would not buy this {noun} again.",
        "The {noun} broke after a week.",
        "Poor quality {noun}, sadly.",
    ],
    "neutral": [
        "The {noun} is okay.",
        "Decent {noun} for the price.",
        "This {noun} does the job.",
        "An average {noun}, nothing special.",
    ],
    "positive": [
        "Love this {noun}!",
        "Excellent {noun}, highly recommended.",
        "Great {noun}, exactly as described.",
        "Best {noun} I have bought.",
    ],
}
REVIEW_CLOSINGS = {
    "negative": [
        "Delivery was late and support never answered.",
        "I am returning it.",
        "Not worth the money.",
        "I expected much better from this shop.",
    ],
    "neutral": [
        "Delivery was on time.",
        "Packaging could be better.",
        "It works as expected.",
        "Maybe I will order again.",
    ],
    "positive": [
        "Fast delivery too.",
        "I will definitely order again.",
        "Great service from this shop.",
        "Already recommended it to friends.",
    ],
}
TONES = ("negative", "neutral", "positive")
