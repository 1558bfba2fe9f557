"""Download the official raw files and convert them to genrec's format (needs internet).

    python -m genrec.data.download amazon-beauty --out data/      # -> data/amazon_beauty/
    python -m genrec.data.download ml-100k --out data/ --raw-dir raw/

Sources:
- Amazon 2014 5-core (McAuley lab, UCSD): ``reviews_<Category>_5.json.gz`` (one JSON object per line:
  reviewerID, asin, unixReviewTime, ...) and ``meta_<Category>.json.gz`` (one Python dict literal
  per line: asin, title, brand, categories = list of category paths), from
  ``http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/``.
- MovieLens-100k (GroupLens): ``ml-100k.zip`` with ``u.data`` (user, item, rating, unix time; tab
  separated) and ``u.item`` (pipe separated, latin-1: id, "Title (Year)", release date, video
  release date, URL, 19 genre flags).

Output (the shared-data format): ``interactions.csv.gz`` (``user_id,item_id,timestamp``; users in
order of first appearance, each user's rows sorted by time, ties in file order) and
``items.jsonl.gz``. Amazon items are ordered by first appearance in that walk (the P5/S3Rec order);
their categories are the flattened category paths without the root, deduplicated in order, keeping
categories used by at least ``min_category_count`` items (5 = S3Rec's filter). Ratings are dropped
(implicit feedback). Meta lines are parsed with ``ast.literal_eval``, never ``eval``.
"""

from __future__ import annotations

import argparse
import ast
import csv
import gzip
import html
import io
import json
import logging
import re
import urllib.request
import zipfile
from collections import Counter
from pathlib import Path

from genrec.data.io import DataError
from genrec.tokenizer.io import atomic_write_file

logger = logging.getLogger(__name__)

AMAZON_URL = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
MOVIELENS_100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
AMAZON_CATEGORIES = {"amazon-beauty": "Beauty", "amazon-sports": "Sports_and_Outdoors", "amazon-toys": "Toys_and_Games"}
ML_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
             "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]


def _open_text(path: Path, encoding: str = "utf-8"):
    return gzip.open(path, "rt", encoding=encoding) if str(path).endswith(".gz") else open(path, encoding=encoding)


def _write_outputs(out_dir: Path, interactions: list[tuple[str, str, int]], items: list[dict]) -> None:
    """Write both files atomically (temp file + rename), gzip with mtime 0 for reproducible bytes."""
    out_dir.mkdir(parents=True, exist_ok=True)

    def write(name: str, fill) -> None:
        def write_gzip(tmp: str) -> None:
            # The gzip header names the final file (not the temporary one) and has mtime 0: reproducible bytes.
            with open(tmp, "wb") as fh, gzip.GzipFile(filename=name, mode="wb", fileobj=fh, mtime=0) as raw, \
                    io.TextIOWrapper(raw, encoding="utf-8", newline="") as f:
                fill(f)

        atomic_write_file(out_dir / name, write_gzip, mode=0o644)

    def fill_inter(f):
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp"])
        w.writerows(interactions)

    write("interactions.csv.gz", fill_inter)
    write("items.jsonl.gz", lambda f: f.writelines(json.dumps(rec, ensure_ascii=False) + "\n" for rec in items))


def _chronological(rows: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """Users in order of first appearance; each user's rows by time, ties in file order."""
    first = {}
    for u, _, _ in rows:
        first.setdefault(u, len(first))
    order = sorted(range(len(rows)), key=lambda i: (first[rows[i][0]], rows[i][2], i))
    return [rows[i] for i in order]


def preprocess_amazon(reviews_path, meta_path, out_dir, min_category_count: int = 5) -> dict:
    """Amazon 2014 raw files -> ``out_dir`` in genrec format. Returns statistics."""
    reviews_path, meta_path, out_dir = Path(reviews_path), Path(meta_path), Path(out_dir)
    rows = []
    with _open_text(reviews_path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                rows.append((str(r["reviewerID"]), str(r["asin"]), int(r["unixReviewTime"])))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise DataError(f"{reviews_path}, line {line_no}: not a review record ({e.__class__.__name__}: {e})") from e
    interactions = _chronological(rows)
    item_order = list(dict.fromkeys(i for _, i, _ in interactions))
    wanted = set(item_order)
    meta = {}
    with _open_text(meta_path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = ast.literal_eval(line)
                asin = rec["asin"]
            except (ValueError, SyntaxError, KeyError, TypeError) as e:
                raise DataError(f"{meta_path}, line {line_no}: not a metadata record ({e.__class__.__name__}: {e})") from e
            if asin in wanted:
                meta[asin] = rec
    cats_of = {}
    for asin in item_order:
        cats = []
        for path in meta.get(asin, {}).get("categories", []) or []:
            for c in path[1:]:  # drop the root category (e.g. "Beauty")
                if c not in cats:
                    cats.append(c)
        cats_of[asin] = cats
    counts = Counter(c for cats in cats_of.values() for c in cats)
    items = []
    for asin in item_order:
        m = meta.get(asin, {})
        title = re.sub(r"\s+", " ", html.unescape(m.get("title") or "")).strip() or None  # raw titles hold "&amp;" etc.
        items.append({"item_id": asin, "title": title, "brand": (m.get("brand") or "").strip() or None,
                      "categories": [c for c in cats_of[asin] if counts[c] >= min_category_count]})
    without_meta = [a for a in item_order if a not in meta]
    if without_meta:
        logger.warning("%s: %d reviewed item(s) have no metadata line; they get no title/brand/categories (e.g. %s)",
                       meta_path, len(without_meta), without_meta[:3])
    _write_outputs(out_dir, interactions, items)
    return {"users": len({u for u, _, _ in interactions}), "items": len(items), "interactions": len(interactions),
            "items_without_metadata": sum(a not in meta for a in item_order)}


def preprocess_movielens_100k(source, out_dir) -> dict:
    """``ml-100k.zip`` (or its extracted folder) -> ``out_dir`` in genrec format. Returns statistics."""
    source, out_dir = Path(source), Path(out_dir)

    def read(name: str, encoding: str) -> list[str]:
        if source.is_dir():
            path = next(source.rglob(name), None)
            if path is None:
                raise DataError(f"{source}: no {name} inside")
            return path.read_text(encoding=encoding).splitlines()
        with zipfile.ZipFile(source) as z:
            member = next((n for n in z.namelist() if n.endswith("/" + name) or n == name), None)
            if member is None:
                raise DataError(f"{source}: no {name} inside the archive")
            return z.read(member).decode(encoding).splitlines()

    rows = []
    for line_no, line in enumerate(read("u.data", "utf-8"), 1):
        parts = line.split("\t")
        if len(parts) != 4:
            raise DataError(f"{source}/u.data, line {line_no}: expected 4 tab-separated fields, got {len(parts)}")
        if not parts[3].strip().isdigit():
            raise DataError(f"{source}/u.data, line {line_no}: timestamp {parts[3]!r} is not an integer")
        rows.append((parts[0], parts[1], int(parts[3])))
    first_user = {}
    for u, _, _ in rows:
        first_user.setdefault(u, int(u))
    # MovieLens users come in numeric id order (as in the shared folder), each chronological.
    order = sorted(range(len(rows)), key=lambda i: (int(rows[i][0]), rows[i][2], i))
    interactions = [rows[i] for i in order]
    items = []
    for line_no, line in enumerate(read("u.item", "latin-1"), 1):
        parts = line.split("|")
        if len(parts) != 24:
            raise DataError(f"{source}/u.item, line {line_no}: expected 24 '|'-separated fields, got {len(parts)}")
        raw_title = parts[1].strip()
        m = re.match(r"^(.*?)\s*\((\d{4})\)\s*$", raw_title)
        title, year = (m.group(1), int(m.group(2))) if m else (raw_title, None)
        if year is None and re.search(r"(\d{4})$", parts[2]):
            year = int(parts[2][-4:])
        if title.lower() in ("unknown", ""):
            title = None
        genres = [g for g, flag in zip(ML_GENRES, parts[5:], strict=True) if flag.strip() == "1" and g != "unknown"]
        items.append({"item_id": parts[0], "title": title, "year": year, "genres": genres})
    _write_outputs(out_dir, interactions, items)
    return {"users": len(first_user), "items": len(items), "interactions": len(interactions)}


def _fetch(url: str, dest: Path) -> Path:
    """Download ``url`` to ``dest`` unless it exists; atomic (partial downloads never look complete)."""
    if dest.exists():
        return dest
    def download(tmp: str) -> None:
        with urllib.request.urlopen(url) as response, open(tmp, "wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)

    atomic_write_file(dest, download, mode=0o644)
    return dest


def download(dataset: str, out_dir, raw_dir=None, base_url: str | None = None) -> Path:
    """Download ``dataset`` (``amazon-beauty|amazon-sports|amazon-toys|ml-100k``) and convert it.

    Writes ``<out_dir>/<name>/`` (``amazon_beauty``, ``ml_100k``, ...) and returns that folder.
    """
    out_dir = Path(out_dir)
    raw_dir = Path(raw_dir) if raw_dir else out_dir / "raw"
    if dataset in AMAZON_CATEGORIES:
        cat = AMAZON_CATEGORIES[dataset]
        base = base_url or AMAZON_URL
        reviews = _fetch(f"{base}reviews_{cat}_5.json.gz", raw_dir / f"reviews_{cat}_5.json.gz")
        meta = _fetch(f"{base}meta_{cat}.json.gz", raw_dir / f"meta_{cat}.json.gz")
        target = out_dir / dataset.replace("-", "_")
        preprocess_amazon(reviews, meta, target)
    elif dataset == "ml-100k":
        archive = _fetch(base_url or MOVIELENS_100K_URL, raw_dir / "ml-100k.zip")
        target = out_dir / "ml_100k"
        preprocess_movielens_100k(archive, target)
    else:
        raise ValueError(f"unknown dataset '{dataset}'; choose from {sorted(AMAZON_CATEGORIES) + ['ml-100k']}")
    return target


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=sorted(AMAZON_CATEGORIES) + ["ml-100k"])
    p.add_argument("--out", required=True, help="parent folder of the converted dataset (use it as GENREC_DATA_DIR)")
    p.add_argument("--raw-dir", help="where raw downloads are kept (default <out>/raw)")
    p.add_argument("--base-url", help="alternative mirror (a URL prefix for Amazon, the zip URL for MovieLens)")
    args = p.parse_args(argv)
    print(download(args.dataset, args.out, args.raw_dir, args.base_url))


if __name__ == "__main__":
    main()
