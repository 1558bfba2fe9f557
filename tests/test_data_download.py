"""Downloaders through ``file://`` URLs (no internet) and the converters' exact output and errors.

Complements tests/test_download.py (conversion content on the fixtures in tests/fixtures/raw/).
"""

from __future__ import annotations

import gzip
import json
import logging
import zipfile
from pathlib import Path

import pytest

from genrec.data import DataError, load_dataset
from genrec.data.download import download, main, preprocess_amazon, preprocess_movielens_100k

RAW = Path(__file__).parent / "fixtures" / "raw"


def ml_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.write(RAW / "u.data", "ml-100k/u.data")
        z.write(RAW / "u.item", "ml-100k/u.item")
    return path


def test_download_fetches_once_through_a_url(tmp_path):
    mirror = RAW.as_uri() + "/"
    target = download("amazon-beauty", tmp_path / "data", raw_dir=tmp_path / "raw", base_url=mirror)
    assert target == tmp_path / "data" / "amazon_beauty"
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["meta_Beauty.json.gz", "reviews_Beauty_5.json.gz"]
    assert (tmp_path / "raw" / "reviews_Beauty_5.json.gz").read_bytes() == (RAW / "reviews_Beauty_5.json.gz").read_bytes()
    assert load_dataset(target).item_ids == ["B1", "B2", "B3"]
    # Present raw files are not fetched again: an unreachable mirror does not matter now.
    assert download("amazon-beauty", tmp_path / "data", raw_dir=tmp_path / "raw", base_url="file:///nonexistent/") == target
    with pytest.raises(OSError):
        download("amazon-toys", tmp_path / "data", raw_dir=tmp_path / "raw", base_url="file:///nonexistent/")
    assert not list((tmp_path / "raw").glob("*.part"))  # a failed download leaves nothing behind


def test_movielens_download_and_exact_files(tmp_path):
    (tmp_path / "mirror").mkdir()
    archive = ml_zip(tmp_path / "mirror" / "ml-100k.zip")
    target = download("ml-100k", tmp_path / "data", base_url=archive.as_uri())
    assert target == tmp_path / "data" / "ml_100k" and (tmp_path / "data" / "raw" / "ml-100k.zip").is_file()
    with gzip.open(target / "interactions.csv.gz", "rb") as f:  # csv module line ends, as in the shared data
        assert f.read().decode() == "user_id,item_id,timestamp\r\n1,10,878887116\r\n1,20,891717742\r\n2,10,881250949\r\n2,30,881250949\r\n"
    with gzip.open(target / "items.jsonl.gz", "rt") as f:
        assert [json.loads(line) for line in f] == [
            {"item_id": "10", "title": "Toy Story", "year": 1995, "genres": ["Animation", "Children's", "Comedy"]},
            {"item_id": "20", "title": "Café Society", "year": 1995, "genres": ["Drama"]},
            {"item_id": "30", "title": None, "year": None, "genres": []},
        ]
    # The extracted folder works as well as the zip, and the bytes are reproducible (gzip mtime 0).
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "extracted")
    preprocess_movielens_100k(tmp_path / "extracted", tmp_path / "again")
    assert (tmp_path / "again" / "interactions.csv.gz").read_bytes() == (target / "interactions.csv.gz").read_bytes()


def write_gz(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    return path


def test_amazon_titles_unescaped_and_missing_metadata_counted(tmp_path, caplog):
    reviews = write_gz(tmp_path / "reviews.json.gz", [
        json.dumps({"reviewerID": "U", "asin": a, "unixReviewTime": t}) for a, t in [("X1", 3), ("X2", 1), ("X3", 2)]])
    meta = write_gz(tmp_path / "meta.json.gz", [
        "{'asin': 'X1', 'title': 'Salt &amp; Pepper  Scrub', 'brand': ' Dove ', "
        "'categories': [['Beauty', 'Bath & Body', 'Scrubs'], ['Beauty', 'Bath & Body']]}",
        "{'asin': 'X2', 'categories': [['Beauty']]}",
    ])
    with caplog.at_level(logging.WARNING, logger="genrec.data.download"):
        stats = preprocess_amazon(reviews, meta, tmp_path / "out", min_category_count=1)
    assert stats == {"users": 1, "items": 3, "interactions": 3, "items_without_metadata": 1}
    assert "1 reviewed item(s) have no metadata line" in caplog.text and "X3" in caplog.text
    ds = load_dataset(tmp_path / "out")
    assert ds.item_ids == ["X2", "X3", "X1"]  # by time
    assert ds.items.to_dict("records") == [
        {"item_id": "X2", "title": None, "brand": None, "categories": []},
        {"item_id": "X3", "title": None, "brand": None, "categories": []},
        {"item_id": "X1", "title": "Salt & Pepper Scrub", "brand": "Dove", "categories": ["Bath & Body", "Scrubs"]},
    ]


def test_bad_raw_lines_name_file_and_line(tmp_path):
    meta = RAW / "meta_Beauty.json.gz"
    reviews = write_gz(tmp_path / "reviews_bad.json.gz", ['{"reviewerID": "U", "asin": "B1", "unixReviewTime": 1}',
                                                          '{"reviewerID": "U", "asin": "B2"}'])
    with pytest.raises(DataError, match=r"reviews_bad.json.gz, line 2: not a review record \(KeyError: 'unixReviewTime'\)"):
        preprocess_amazon(reviews, meta, tmp_path / "out")
    bad_meta = write_gz(tmp_path / "meta_bad.json.gz", ["{'asin': 'B1'}", "{'title': 'no asin'}"])
    with pytest.raises(DataError, match=r"meta_bad.json.gz, line 2: not a metadata record \(KeyError"):
        preprocess_amazon(RAW / "reviews_Beauty_5.json.gz", bad_meta, tmp_path / "out")
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "u.item").write_bytes((RAW / "u.item").read_bytes())
    (folder / "u.data").write_text("1\t10\t5\t878887116\n1\t20\t3\tlate\n")
    with pytest.raises(DataError, match=r"u.data, line 2: timestamp 'late' is not an integer"):
        preprocess_movielens_100k(folder, tmp_path / "out")
    (folder / "u.data").write_text("1\t10\t5\n")
    with pytest.raises(DataError, match=r"u.data, line 1: expected 4 tab-separated fields, got 3"):
        preprocess_movielens_100k(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing is written from bad input


def test_cli_help_and_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "python -m genrec.data.download amazon-beauty --out" in capsys.readouterr().out
    main(["amazon-beauty", "--out", str(tmp_path), "--base-url", RAW.as_uri() + "/"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "amazon_beauty")
    assert load_dataset("amazon_beauty", tmp_path).num_users == 2
