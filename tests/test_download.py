"""Raw-format converters on tiny hand-made fixtures (no internet): Amazon 2014 and MovieLens-100k."""

import gzip
import shutil
import zipfile
from pathlib import Path

import pytest

from genrec.data import DataError, load_dataset
from genrec.data.download import download, preprocess_amazon, preprocess_movielens_100k

RAW = Path(__file__).parent / "fixtures" / "raw"


def test_amazon_conversion_exact(tmp_path):
    stats = preprocess_amazon(RAW / "reviews_Beauty_5.json.gz", RAW / "meta_Beauty.json.gz", tmp_path / "beauty", min_category_count=1)
    assert stats == {"users": 2, "interactions": 5, "items": 3, "items_without_metadata": 0}
    ds = load_dataset(tmp_path / "beauty")
    # U1 first (first in file), rows by time, tie at 1300000000 keeps file order (B2 before B3).
    assert list(ds.interactions.itertuples(index=False, name=None)) == [
        ("U1", "B1", 1100000000), ("U1", "B2", 1300000000), ("U1", "B3", 1300000000),
        ("U2", "B3", 1100000000), ("U2", "B1", 1200000000)]
    items = ds.items.set_index("item_id")
    assert ds.item_ids == ["B1", "B2", "B3"]  # order of first appearance; never-reviewed B9 dropped
    assert items.loc["B1", "title"] == "Red Lipstick" and items.loc["B1", "brand"] == "ACME"
    assert list(items.loc["B1", "categories"]) == ["Makeup", "Lips"]  # root dropped, deduplicated
    assert items.loc["B3", "title"] is None and items.loc["B2", "brand"] is None
    # S3Rec-style filter: categories used by fewer than 2 items disappear.
    preprocess_amazon(RAW / "reviews_Beauty_5.json.gz", RAW / "meta_Beauty.json.gz", tmp_path / "b2", min_category_count=2)
    assert list(load_dataset(tmp_path / "b2").items.set_index("item_id").loc["B1", "categories"]) == ["Makeup"]


def test_amazon_bad_meta_line_names_file_and_line(tmp_path):
    bad = tmp_path / "meta_bad.json.gz"
    with gzip.open(RAW / "meta_Beauty.json.gz", "rt") as f:
        lines = f.read().splitlines()
    with gzip.open(bad, "wt") as f:
        f.write("\n".join(lines[:2] + ["{'asin': 'B3', 'title': __import__('os')}"] + lines[3:]) + "\n")
    with pytest.raises(DataError, match=r"meta_bad.json.gz, line 3"):
        preprocess_amazon(RAW / "reviews_Beauty_5.json.gz", bad, tmp_path / "out")


def test_movielens_conversion_from_zip(tmp_path):
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(RAW / "u.data", "ml-100k/u.data")
        z.write(RAW / "u.item", "ml-100k/u.item")
    stats = preprocess_movielens_100k(archive, tmp_path / "ml")
    assert stats == {"users": 2, "items": 3, "interactions": 4}
    ds = load_dataset(tmp_path / "ml")
    assert list(ds.interactions.itertuples(index=False, name=None)) == [
        ("1", "10", 878887116), ("1", "20", 891717742), ("2", "10", 881250949), ("2", "30", 881250949)]
    rows = ds.items.set_index("item_id")
    assert rows.loc["10", "title"] == "Toy Story" and rows.loc["10", "year"] == 1995
    assert list(rows.loc["10", "genres"]) == ["Animation", "Children's", "Comedy"]
    assert rows.loc["20", "title"] == "Café Society"  # latin-1 decoded
    assert rows.loc["30", "title"] is None and list(rows.loc["30", "genres"]) == []


def test_download_uses_existing_raw_files_and_rejects_unknown(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("reviews_Beauty_5.json.gz", "meta_Beauty.json.gz"):
        shutil.copy(RAW / name, raw / name)
    # Present raw files are not downloaded again (no network needed).
    target = download("amazon-beauty", tmp_path / "data", raw_dir=raw)
    assert target.name == "amazon_beauty" and load_dataset(target).item_ids == ["B1", "B2", "B3"]
    with pytest.raises(ValueError, match="unknown dataset"):
        download("netflix", tmp_path)
