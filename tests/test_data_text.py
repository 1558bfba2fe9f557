"""Item text templates: default choice, segment omission, value rendering, empty items and errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from genrec.data import DEFAULT_TEMPLATES, DataError, default_template, item_texts


def test_default_template_follows_the_columns():
    assert default_template(pd.DataFrame(columns=["item_id", "title", "brand", "categories"])) == DEFAULT_TEMPLATES["amazon"]
    assert default_template(pd.DataFrame(columns=["item_id", "title", "year", "genres"])) == DEFAULT_TEMPLATES["movielens"]
    assert default_template(pd.DataFrame(columns=["item_id", "title"])) == DEFAULT_TEMPLATES["title"]
    with pytest.raises(DataError, match=r"no default text template fits the item columns \['item_id', 'price'\]"):
        default_template(pd.DataFrame(columns=["item_id", "price"]))


def test_amazon_segments_are_left_out_when_missing():
    items = pd.DataFrame({
        "item_id": ["1", "2", "3", "4"],
        "title": ["  Red Lipstick ", "Shampoo", None, "Soap"],
        "brand": ["ACME", None, "  ", "Dove"],
        "categories": [["Makeup", "Lips"], ["Hair"], ["Bath"], []],
    })
    assert item_texts(items) == [
        "Title: Red Lipstick. Brand: ACME. Categories: Makeup, Lips.",
        "Title: Shampoo. Categories: Hair.",
        "Categories: Bath.",
        "Title: Soap. Brand: Dove.",
    ]


def test_movielens_values_render_as_text():
    # A year column with a null is float in pandas: 1995.0 must print as 1995; NaN is missing.
    items = pd.DataFrame({"item_id": ["1", "2"], "title": ["Toy Story", "Heat"], "year": [1995.0, math.nan],
                          "genres": [np.array(["Animation", "Comedy"]), [["Action"], ["Crime", "Thriller"]]]})
    assert item_texts(items) == ["Title: Toy Story. Year: 1995. Genres: Animation, Comedy.",
                                 "Title: Heat. Genres: Action, Crime, Thriller."]


def test_custom_template_segments():
    items = pd.DataFrame({"item_id": ["1", "2"], "title": ["Heat", "Up"], "year": [1995, None], "rating": [4.5, 3.0]})
    # Both fields in one segment: the whole segment goes when either is missing; literal segments stay.
    assert item_texts(items, "{title} ({year}). A film. Rated {rating}.") == ["Heat (1995). A film. Rated 4.5.", "A film. Rated 3."]
    # Without ". " the template is one segment: "Up" has no year, so nothing is left of its text.
    texts, empty = item_texts(items, "{title}, {year}", on_empty="item_id", return_empty=True)
    assert texts == ["Heat, 1995", "Item 2"] and empty == ["2"]


def test_empty_items_error_or_fall_back_to_their_id(caplog):
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(13)], "title": ["Soap"] + [None] * 12,
                          "brand": [None] * 13, "categories": [[]] * 13})
    with pytest.raises(DataError, match=r"12 item\(s\) have no text .*\['i1', 'i2', .*'i10'\] \.\.\.; pass on_empty='item_id'"):
        item_texts(items)
    texts, empty = item_texts(items, on_empty="item_id", return_empty=True)
    assert texts[:3] == ["Title: Soap.", "Item i1", "Item i2"] and len(empty) == 12
    assert "12 of 13 item(s) have no text" in caplog.text
    with pytest.raises(ValueError, match="on_empty must be one of"):
        item_texts(items, on_empty="skip")


def test_template_errors_name_fields_and_columns():
    items = pd.DataFrame({"item_id": ["1"], "title": ["Soap"]})
    with pytest.raises(DataError, match=r"uses field\(s\) \['color', 'price'\] that are not item columns; columns: \['item_id', 'title'\]"):
        item_texts(items, "Title: {title}. Price: {price}. Color: {color}.")
    with pytest.raises(DataError, match="names no item field"):
        item_texts(items, "A product.")
    with pytest.raises(DataError, match="positional"):
        item_texts(items, "Title: {}.")
    with pytest.raises(DataError, match="malformed"):
        item_texts(items, "Title: {title.")
    with pytest.raises(DataError, match="no 'item_id' column"):
        item_texts(items.rename(columns={"item_id": "asin"}), "{title}")
