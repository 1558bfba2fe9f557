"""genrec.data.io: the standard folder format, the generic loaders and every validation error."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

from genrec.data import DataError, RecDataset, load_dataset, load_interactions, load_items, resolve_data_dir


def write_folder(folder, interactions_csv: str, items: list[dict]):
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "interactions.csv.gz", "wt") as f:
        f.write(interactions_csv)
    with gzip.open(folder / "items.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in items)
    return folder


def test_resolve_data_dir_argument_env_and_errors(tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("GENREC_DATA_DIR", str(tmp_path))
    assert resolve_data_dir() == tmp_path
    assert resolve_data_dir(other) == other  # the argument wins over the environment
    with pytest.raises(DataError, match="data directory does not exist: .*nowhere"):
        resolve_data_dir(tmp_path / "nowhere")
    monkeypatch.delenv("GENREC_DATA_DIR")
    with pytest.raises(DataError, match="export GENREC_DATA_DIR="):
        resolve_data_dir()


def test_standard_folder_keeps_file_order_types_and_nulls(tmp_path):
    # Ids that look like numbers keep their spelling ("007", "0012"); rows stay in file order.
    folder = write_folder(tmp_path / "toy", "user_id,item_id,timestamp\n007,0012,5\n007,NA,3\nx,0012,9\n", [
        {"item_id": "NA", "title": "Null Island Map", "year": None, "tags": []},
        {"item_id": "0012", "title": None, "year": 1995, "tags": ["a", "b"]},
    ])
    ds = load_dataset(folder)
    assert ds.name == "toy" and ds.path == folder
    assert ds.interactions.to_dict("list") == {"user_id": ["007", "007", "x"], "item_id": ["0012", "NA", "0012"], "timestamp": [5, 3, 9]}
    assert str(ds.interactions["timestamp"].dtype) == "int64"
    assert ds.item_ids == ["NA", "0012"]  # catalogue order = file order
    assert ds.items.loc[1, "title"] is None and ds.items.loc[1, "tags"] == ["a", "b"]
    assert ds.num_users == 2 and "items=2" in repr(ds)


def test_load_dataset_by_name_lists_available(tmp_path):
    write_folder(tmp_path / "toy", "user_id,item_id,timestamp\nu,i,0\n", [{"item_id": "i"}])
    assert load_dataset("toy", tmp_path).item_ids == ["i"]
    with pytest.raises(DataError, match=r"dataset folder not found: .*beauty; datasets in .*\['toy'\]"):
        load_dataset("beauty", tmp_path)


def test_missing_files_and_columns_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"file not found: .*empty/interactions.csv.gz"):
        load_dataset(tmp_path / "empty")
    folder = tmp_path / "noitems"
    folder.mkdir()
    with gzip.open(folder / "interactions.csv.gz", "wt") as f:
        f.write("user_id,item_id,timestamp\nu,i,0\n")
    with pytest.raises(DataError, match=r"file not found: .*noitems/items.jsonl.gz"):
        load_dataset(folder)
    write_folder(tmp_path / "badcol", "user,item_id,time\nu,i,0\n", [{"item_id": "i"}])
    with pytest.raises(DataError, match=r"badcol/interactions.csv.gz: missing column\(s\) \['user_id', 'timestamp'\]; "
                                         r"columns found: \['user', 'item_id', 'time'\]"):
        load_dataset(tmp_path / "badcol")
    write_folder(tmp_path / "baditems", "user_id,item_id,timestamp\nu,i,0\n", [{"asin": "i"}])
    with pytest.raises(DataError, match=r"items.jsonl.gz: missing column\(s\) \['item_id'\]; columns found: \['asin'\]"):
        load_dataset(tmp_path / "baditems")


def test_duplicate_and_unknown_items_are_named(tmp_path):
    write_folder(tmp_path / "dup", "user_id,item_id,timestamp\nu,a,0\n", [{"item_id": "a"}, {"item_id": "b"}, {"item_id": "a"}, {"item_id": "b"}])
    with pytest.raises(DataError, match=r"items.jsonl.gz: duplicate item ids \(2 id\(s\) appear more than once\): \['a', 'b'\]"):
        load_dataset(tmp_path / "dup")
    rows = "".join(f"u,{i},{t}\n" for t, i in enumerate(["a", "ghost1", "ghost2", "ghost1"]))
    write_folder(tmp_path / "ghost", "user_id,item_id,timestamp\n" + rows, [{"item_id": "a"}])
    with pytest.raises(DataError, match=r"ghost/interactions.csv.gz: 3 interaction\(s\) reference item ids missing from the item "
                                         r"table \(1 items\), e.g. \['ghost1', 'ghost2'\]"):
        load_dataset(tmp_path / "ghost")


def test_bad_values_name_the_row(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\nu,a,1\n,b,2\n")
    with pytest.raises(DataError, match=r"log.csv: column 'user_id' is empty on 1 row\(s\), first at data row 2 \(line 3\)"):
        load_interactions(path)
    path.write_text("user_id,item_id,timestamp\nu,a,1\nu,b,soon\n")
    with pytest.raises(DataError, match=r"column 'timestamp' is not numeric at data row 2 \(line 3\): 'soon'"):
        load_interactions(path)
    path.write_text("user_id,item_id,timestamp\nu,a,1.5\n")
    with pytest.raises(DataError, match="non-integer timestamp at data row 1"):
        load_interactions(path)
    bad_json = tmp_path / "items.jsonl"
    bad_json.write_text('{"item_id": "a"}\n{"item_id": "b", oops}\n')
    with pytest.raises(DataError, match=r"items.jsonl, line 2: not valid JSON"):
        load_items(bad_json)
    with pytest.raises(DataError, match="cannot tell the format"):
        load_items(tmp_path / "log.xlsx")
    with pytest.raises(DataError, match="unknown format 'xls'"):
        load_items(path, fmt="xls")


def test_generic_loaders_every_format_with_mapping(tmp_path):
    frame = pd.DataFrame({"who": ["x", "x", "y"], "what": ["0012", "B7", "0012"], "when": [1300000000, 1200000000, 5]})
    frame.to_csv(tmp_path / "log.csv", index=False)
    frame.to_csv(tmp_path / "log.tsv.gz", index=False, sep="\t")
    frame.to_parquet(tmp_path / "log.parquet")
    with gzip.open(tmp_path / "log.jsonl.gz", "wt") as f:  # "when" is not read as a date; "0012" stays a string
        f.writelines(json.dumps(r) + "\n" for r in frame.to_dict("records"))
    (tmp_path / "log.txt").write_text(frame.to_csv(index=False))
    expected = {"user_id": ["x", "x", "y"], "item_id": ["0012", "B7", "0012"], "timestamp": [1300000000, 1200000000, 5]}
    for name, fmt in [("log.csv", None), ("log.tsv.gz", None), ("log.parquet", None), ("log.jsonl.gz", None), ("log.txt", "csv")]:
        got = load_interactions(tmp_path / name, user_col="who", item_col="what", time_col="when", fmt=fmt)
        assert got.to_dict("list") == expected, name
        assert str(got["timestamp"].dtype) == "int64"
    no_time = load_interactions(tmp_path / "log.csv", user_col="who", item_col="what", time_col=None)
    assert no_time["timestamp"].tolist() == [0, 1, 2]  # file order is the time order


def test_iso_dates_become_unix_seconds(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\nu,a,1970-01-01T00:01:00Z\nu,b,2014-01-01\n")
    assert load_interactions(path)["timestamp"].tolist() == [60, 1388534400]


def test_from_files_with_and_without_item_table(tmp_path):
    log = tmp_path / "clicks.tsv"
    log.write_text("uid\tsku\tts\nu1\tB\t2\nu1\tA\t1\nu2\tB\t3\n")
    ds = RecDataset.from_files(log, user_col="uid", item_col="sku", time_col="ts")
    assert ds.name == "clicks" and ds.item_ids == ["B", "A"]  # first appearance
    assert list(ds.items.columns) == ["item_id"]
    catalogue = tmp_path / "catalogue.csv"
    catalogue.write_text("product,title\nA,Apple\nB,\nC,Cherry\n")
    ds = RecDataset.from_files(log, catalogue, user_col="uid", item_col="sku", time_col="ts", item_id_col="product")
    assert ds.item_ids == ["A", "B", "C"] and ds.items["title"].tolist() == ["Apple", None, "Cherry"]
    catalogue.write_text("product,title\nA,Apple\n")
    with pytest.raises(DataError, match=r"clicks.tsv: 2 interaction\(s\) reference item ids missing.*\['B'\]"):
        RecDataset.from_files(log, catalogue, user_col="uid", item_col="sku", time_col="ts", item_id_col="product")


def test_damaged_and_degenerate_logs_get_clear_errors(tmp_path):
    items = [{"item_id": "a"}, {"item_id": "b"}]
    folder = write_folder(tmp_path / "ds", "user_id,item_id,timestamp\nu1,a,1\nu1,b,2\n", items)
    whole = (folder / "interactions.csv.gz").read_bytes()
    (folder / "interactions.csv.gz").write_bytes(whole[: len(whole) // 2])  # a truncated download
    with pytest.raises(DataError, match=r"interactions\.csv\.gz: could not be read as csv \(EOFError"):
        load_dataset(folder)
    write_folder(folder, "user_id,item_id,timestamp\n", items)
    with pytest.raises(DataError, match="no interactions"):
        load_dataset(folder)
    write_folder(folder, "user_id,item_id,timestamp\nu1,a,1\nu1,b,99999999999999999999\n", items)  # beyond int64
    with pytest.raises(DataError, match=r"data row 2 \(line 3\).*beyond the int64 range"):
        load_dataset(folder)
    write_folder(folder, "user_id,item_id,timestamp\nu1,a,1\nu1,b,18446744073709551615\n", items)  # uint64 max
    with pytest.raises(DataError, match=r"beyond the int64 range"):
        load_dataset(folder)


def test_repeated_rows_are_an_error_or_dropped_with_a_count(tmp_path, caplog):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\nu1,a,1\nu1,b,2\nu1,b,2\nu2,a,5\nu1,b,2\n")
    with pytest.raises(DataError, match=r"2 row\(s\) repeat an earlier row exactly .* first at data row 3 \(line 4\)"):
        load_interactions(path)
    with caplog.at_level("WARNING"):
        kept = load_interactions(path, duplicates="drop")
    assert kept["item_id"].tolist() == ["a", "b", "a"] and "dropped 2 row(s)" in caplog.text
    assert len(load_interactions(path, duplicates="keep")) == 5
