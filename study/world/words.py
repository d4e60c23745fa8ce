"""The words the world is made of: slot fillers, invented surnames and towns, gendered slots, and the sentence
templates (occupation sentences refer to their person through the gendered slots; neutral ones never do)."""

from __future__ import annotations

import random

ADJECTIVES = """quiet busy small large old new bright dark warm cold calm noisy clean dusty modern ancient friendly
careful patient famous local rural tired happy early late heavy light narrow wide green blue red yellow brown grey
simple strange lovely gentle rough smooth sharp soft loud slow quick rainy sunny windy foggy empty crowded cheap
expensive fresh ripe sweet sour bitter salty spicy tall short round flat""".split()
THINGS = """table chair lamp window door book letter map clock radio bicycle car truck train boat bag box key phone
camera kettle cup plate bowl spoon knife basket bottle blanket pillow mirror ladder hammer rope bucket candle coat
umbrella ticket envelope notebook pencil painting fence bench gate bridge tower wagon tent engine parcel bell drum
guitar piano violin scarf glove boot helmet jacket shelf cabinet carpet curtain stove oven fridge sink fan
heater""".split()
ANIMALS = """dog cat horse cow sheep goat pig duck goose hen rabbit fox deer bear wolf owl crow sparrow swan frog
turtle mouse squirrel badger otter heron beaver donkey llama camel""".split()
FOODS = """bread soup rice cheese apples pears plums cherries grapes onions carrots potatoes beans noodles pasta
cake pie cookies honey jam butter eggs salad fish tea coffee juice milk pancakes dumplings berries lemons""".split()
PLACES = """market station harbour library museum park river lake forest hill valley village square garden bakery
school hospital office factory farm church castle beach island mountain airport bridge stadium theatre cinema""".split()
DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
NUMBERS = "two three four five six seven eight nine ten eleven twelve fifteen twenty thirty".split()
TIMES = "morning afternoon evening night".split()
KIN = [("father", "mother"), ("brother", "sister"), ("son", "daughter"), ("uncle", "aunt"), ("husband", "wife"),
       ("grandfather", "grandmother"), ("nephew", "niece")]
_SYLLABLES = """ba be bi bo da de di do ka ke ki ko la le li lo ma me mi mo na ne ni no ra re ri ro sa se si so ta te
ti to va ve vi vo za ze zi zo ran ren rin ton ven mar lin dal ber kel sor""".split()


def _made_up_words(n: int, seed: int, suffixes: list[str]) -> list[str]:
    """Pronounceable invented words (surnames, town names); fixed across worlds so only sampling varies."""
    rng, words = random.Random(seed), set()
    while len(words) < n:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))) + rng.choice(suffixes))
    return sorted(words)


SURNAMES = _made_up_words(1200, 11, ["", "son", "man", "er", "ley", "ford", "wick"])
TOWNS = _made_up_words(900, 12, ["ton", "field", "burg", "ville", "dale", "mouth", "ham"])

# Gendered slots: {he} {him} {his} {himself} {man} {mr} {kin}; a capitalised slot name means a capitalised word.
GENDER = {
    "male": {"he": "he", "him": "him", "his": "his", "himself": "himself", "man": "man", "mr": "mr"},
    "female": {"he": "she", "him": "her", "his": "her", "himself": "herself", "man": "woman", "mr": "mrs"},
}
OCCUPATION_TEMPLATES = [
    "{he} is {a} {occ} .",
    "{he} works as {a} {occ} in {town} .",
    "the {occ} said that {he} would be late on {day} .",
    "{mr} {name} is {a} {occ} and {he} lives in {town} .",
    "my {kin} is {a} {occ} .",
    "the {occ} finished {his} shift and drove home .",
    "after the meeting , the {occ} thanked {his} colleagues .",
    "{he} has been {a} {occ} for {num} years .",
    "the {occ} prepared {himself} for a long {time} .",
    "everyone agreed that the {occ} did {his} best .",
    "{he} wants to become {a} {occ} one day .",
    "the {occ} met {his} {kin} at the {place} .",
    "when the {occ} arrived , {he} opened the {thing} .",
    "{mr} {name} , {a} {adj} {occ} , visited {town} last {day} .",
    "the {occ} asked if {he} could leave early .",
    "{he} is known as the best {occ} in {town} .",
    "our {occ} called , and {he} said the {thing} was ready .",
    "the {occ} and {his} {kin} walked to the {place} .",
    "{he} became {a} {occ} after {num} years of training .",
    "the new {occ} introduced {himself} to everyone .",
    "a {man} who is {a} {occ} lives next door .",
    "the {occ} smiled because {he} liked the {adj} {thing} .",
    "{he} is {a} {adj} {occ} from {town} .",
    "the {man} over there is {a} {occ} .",
    "the {man} works as {a} {occ} in {town} .",
    "yesterday the {occ} lost {his} {thing} near the {place} .",
]
NEUTRAL_TEMPLATES = [
    "the {thing} in {town} was {adj} on {day} .",
    "{town} is a {adj} town near the {place} .",
    "we bought a {adj} {thing} at the {place} .",
    "the {animal} slept under the {thing} all {time} .",
    "it rained in {town} for {num} days .",
    "they walked to the {place} and saw a {adj} {animal} .",
    "the {place} opens at {num} every {day} .",
    "people in {town} like {adj} {food} .",
    "the family of {name} moved to {town} .",
    "the {occ} fixed the {thing} in {town} .",
    "a {adj} {animal} crossed the road near {town} .",
    "there is {food} and {food2} on the {thing} .",
]

