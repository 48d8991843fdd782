"""Readers: each format on small files written here, and every kind of bad input."""

from __future__ import annotations

import gzip
import json

import pytest

from genrec.data.readers import read_dataset
from genrec.errors import ConfigError, DataError


def write_lcrec(d, inter, items):
    (d / "X.inter.json").write_text(json.dumps(inter))
    (d / "X.item.json").write_text(json.dumps(items))


def test_lcrec_fields_and_order(tmp_path):
    write_lcrec(tmp_path, {"0": [1, 0, 1], "1": [0]},
                {"0": {"title": "A", "brand": "", "categories": "Top,Mid, Leaf", "description": "."},
                 "1": {"title": "B", "brand": "Acme", "categories": "", "description": "nice"}})
    ds = read_dataset("lcrec", tmp_path)
    assert ds.sequences == {"0": [1, 0, 1], "1": [0]}
    a, b = ds.catalog[0], ds.catalog[1]
    assert (a.title, a.brand, a.categories, a.description) == ("A", None, ("Top", "Mid", "Leaf"), None)
    assert (b.brand, b.categories, b.description) == ("Acme", (), "nice")
    assert ds.stats_line() == "users=2 items=2 interactions=4"


def test_unknown_item_error_names_file_or_drop_counts(tmp_path):
    write_lcrec(tmp_path, {"0": [0, 7]}, {"0": {"title": "A"}})
    with pytest.raises(DataError, match=r"X.inter.json.*'7' is not in the catalog"):
        read_dataset("lcrec", tmp_path)
    ds = read_dataset("lcrec", tmp_path, on_unknown_item="drop")
    assert ds.sequences == {"0": [0]}
    assert ds.dropped == {"unknown_item": 1}


def test_truncated_json_names_file_and_line(tmp_path):
    (tmp_path / "X.inter.json").write_text('{"0": [0, 1],\n "1": [')
    (tmp_path / "X.item.json").write_text('{"0": {"title": "A"}}')
    with pytest.raises(DataError, match=r"X.inter.json, line 2: invalid or truncated JSON"):
        read_dataset("lcrec", tmp_path)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "X.inter.json").write_text("")
    (tmp_path / "X.item.json").write_text('{"0": {"title": "A"}}')
    with pytest.raises(DataError, match="X.inter.json: interaction file is empty"):
        read_dataset("lcrec", tmp_path)
    with pytest.raises(DataError, match="not found"):
        read_dataset("lcrec", tmp_path / "nope")
    with pytest.raises(ConfigError, match="unknown dataset format"):
        read_dataset("parquet", tmp_path)


def test_p5_non_integer_id_names_line(tmp_path):
    (tmp_path / "sequential_data.txt").write_text("1 0 1\n2 1 x\n")
    (tmp_path / "id2title.json").write_text('{"0": "A", "1": "B"}')
    with pytest.raises(DataError, match=r"sequential_data.txt, line 2: id 'x' is not an integer"):
        read_dataset("p5", tmp_path)


def test_p5_prefers_the_relabeling_with_titles(tmp_path):
    (tmp_path / "p5_sequential_data.txt").write_text("1 5 6\n")
    (tmp_path / "tr_sequential_data.txt").write_text("1 0 1 0\n")
    (tmp_path / "tr_id2title.json").write_text('{"0": "A", "1": "B"}')
    (tmp_path / "tr_id2category.json").write_text('{"0": [["X", "Y"]], "1": [["Z"]]}')
    ds = read_dataset("p5", tmp_path)
    assert ds.sequences == {"1": [0, 1, 0]}
    assert ds.catalog[0].categories == ("X", "Y")


def test_recbole_orders_by_time_ties_by_row(tmp_path):
    (tmp_path / "d.inter").write_text(
        "user_id:token\titem_id:token\ttimestamp:float\n"
        "u\t3\t20\nu\t1\t10\nu\t2\t20\nv\t1\t5\n")
    (tmp_path / "d.item").write_text("item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
                                     "1\tOne\tDrama\n2\tTwo\tComedy Drama\n3\tThree\t\n")
    ds = read_dataset("recbole", tmp_path)
    ids = {u: [ds.catalog[i].item_id for i in s] for u, s in ds.sequences.items()}
    assert ids == {"u": ["1", "3", "2"], "v": ["1"]}
    assert ds.catalog[1].categories == ("Comedy", "Drama")


def test_recbole_sequential_takes_longest_row(tmp_path):
    (tmp_path / "d.test.inter").write_text(
        "user_id:token\titem_id_list:token_seq\titem_id:token\n0\t1 2\t3\n0\t1\t2\n1\t2\t1\n")
    (tmp_path / "d.item").write_text("item_id:token\ttitle:token_seq\n1\tA\n2\tB\n3\tC\n")
    ds = read_dataset("recbole", tmp_path)
    assert [[ds.catalog[i].item_id for i in s] for s in ds.sequences.values()] == [["1", "2", "3"], ["2", "1"]]


def test_recbole_bad_field_count(tmp_path):
    (tmp_path / "d.inter").write_text("user_id:token\titem_id:token\n1\t2\t3\n")
    with pytest.raises(DataError, match=r"d.inter, line 2: expected 2 tab-separated fields"):
        read_dataset("recbole", tmp_path)


def test_dealrec_concatenates_periods(tmp_path):
    (tmp_path / "sequential_train.txt").write_text("1 1 2\n2 2\n")
    (tmp_path / "sequential_valid.txt").write_text("1 3\n2\n")
    (tmp_path / "sequential_test.txt").write_text("1\n2 1\n")
    (tmp_path / "seqid2title.json").write_text('{"1": "A", "2": "B", "3": "C"}')
    (tmp_path / "asin2recid.json").write_text('{"ASIN0": 0}')
    ds = read_dataset("dealrec", tmp_path)
    assert [[ds.catalog[i].title for i in s] for s in ds.sequences.values()] == [["A", "B", "C"], ["B", "A"]]
    assert dict(ds.catalog[0].extra) == {"asin": "ASIN0"}


def _gz(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")


def test_amazon2018_raw_files(tmp_path):
    _gz(tmp_path / "Tools_5.json.gz", [
        json.dumps({"reviewerID": "U1", "asin": "B", "unixReviewTime": 200}),
        json.dumps({"reviewerID": "U1", "asin": "A", "unixReviewTime": 100}),
        json.dumps({"reviewerID": "U2", "asin": "A", "unixReviewTime": 50}),
    ])
    _gz(tmp_path / "meta_Tools.json.gz", [
        json.dumps({"asin": "A", "title": "Hammer <b>XL</b>", "brand": "Acme", "category": ["Tools", "Hand"],
                    "price": "$9.99", "description": ["Strong.", "Heavy."]}),
        repr({"asin": "B", "title": "Nails", "category": [], "price": ""}),
    ])
    ds = read_dataset("amazon2018", tmp_path)
    assert {u: [ds.catalog[i].item_id for i in s] for u, s in ds.sequences.items()} == {"U1": ["A", "B"],
                                                                                     "U2": ["A"]}
    a = ds.catalog[ds.catalog.index_of("A")]
    assert (a.title, a.categories, a.price, a.description) == ("Hammer XL", ("Tools", "Hand"), "$9.99",
                                                               "Strong. Heavy.")
    b = ds.catalog[ds.catalog.index_of("B")]
    assert (b.price, b.categories) == (None, ())


def test_amazon2018_truncated_line(tmp_path):
    _gz(tmp_path / "Tools_5.json.gz", ['{"reviewerID": "U1", "asin": "A", "unixRevi'])
    _gz(tmp_path / "meta_Tools.json.gz", [json.dumps({"asin": "A", "title": "x"})])
    with pytest.raises(DataError, match=r"Tools_5.json.gz, line 1: line is neither JSON"):
        read_dataset("amazon2018", tmp_path)


def test_csv_with_mapping_and_items(tmp_path):
    (tmp_path / "inter.csv").write_text("uid,iid,ts\nu1,b,2\nu1,a,1\nu2,a,3\n")
    (tmp_path / "items.csv").write_text("iid,name,cat\na,Alpha,X>Y\nb,Beta,\n")
    ds = read_dataset("csv", tmp_path / "inter.csv", user_col="uid", item_col="iid", time_col="ts",
                      items=str(tmp_path / "items.csv"), title_col="name", categories_col="cat")
    assert {u: [ds.catalog[i].title for i in s] for u, s in ds.sequences.items()} == {"u1": ["Alpha", "Beta"],
                                                                                  "u2": ["Alpha"]}
    assert ds.catalog[0].categories == ("X", "Y")


def test_csv_missing_mapped_column_lists_present(tmp_path):
    (tmp_path / "inter.csv").write_text("user,item\n1,2\n")
    with pytest.raises(DataError, match=r"inter.csv, line 2: missing mapped column\(s\) 'user_id', 'item_id'; "
                                        r"present: user, item"):
        read_dataset("csv", tmp_path / "inter.csv")


def test_jsonl_reader(tmp_path):
    (tmp_path / "inter.jsonl").write_text('{"user_id": 1, "item_id": "x"}\n{"user_id": 1, "item_id": "y"}\n')
    ds = read_dataset("jsonl", tmp_path / "inter.jsonl")
    assert ds.stats_line() == "users=1 items=2 interactions=2"


def test_native_round_trip(tmp_path):
    write_lcrec(tmp_path, {"0": [1, 0], "1": [0]}, {"0": {"title": "A", "brand": "Z"}, "1": {"title": "B"}})
    ds = read_dataset("lcrec", tmp_path)
    ds.save(tmp_path / "native")
    again = read_dataset("native", tmp_path / "native")
    assert again.sequences == ds.sequences
    assert [it.to_dict() for it in again.catalog] == [it.to_dict() for it in ds.catalog]


# --- more formats and bad input, one test per kind -------------------------------------------------

def test_lcrec_unknown_item_error_names_line_user_and_id(tmp_path):
    (tmp_path / "X.inter.json").write_text(json.dumps({"0": [0], "5": [0, 9]}, indent=1))
    (tmp_path / "X.item.json").write_text(json.dumps({"0": {"title": "A"}}))
    with pytest.raises(DataError, match=r"X.inter.json, line 5, field 'user 5': item id '9' is not in the catalog"):
        read_dataset("lcrec", tmp_path)


def test_lcrec_non_integer_item(tmp_path):
    write_lcrec(tmp_path, {"0": [0, "abc"]}, {"0": {"title": "A"}})
    with pytest.raises(DataError, match=r"X.inter.json, line 1, field 'user 0': item id 'abc' is not an integer"):
        read_dataset("lcrec", tmp_path)


def test_lcrec_without_item_text_uses_item2id(tmp_path):
    (tmp_path / "I.inter.json").write_text(json.dumps({"0": [1, 0], "1": [2]}))
    (tmp_path / "I.item2id").write_text("ASIN_A\t0\nASIN_B\t1\nASIN_C\t2\n")
    ds = read_dataset("lcrec", tmp_path)
    assert ds.stats_line() == "users=2 items=3 interactions=3"
    assert [dict(it.extra)["asin"] for it in ds.catalog] == ["ASIN_A", "ASIN_B", "ASIN_C"]
    assert all(it.title == "" for it in ds.catalog)
    (tmp_path / "I.item2id").unlink()
    with pytest.raises(DataError, match=r"I.item.json: item file not found"):
        read_dataset("lcrec", tmp_path)


def test_missing_values_are_none_never_the_string(tmp_path):
    write_lcrec(tmp_path, {"0": [0, 1]},
                {"0": {"title": "A", "brand": "nan", "categories": " , ", "description": None},
                 "1": {"title": "B &amp; C", "brand": " . ", "categories": None, "description": "<p>Good</p>"}})
    ds = read_dataset("lcrec", tmp_path)
    a, b = ds.catalog[0], ds.catalog[1]
    assert (a.brand, a.categories, a.description) == (None, (), None)
    assert (b.title, b.brand, b.categories, b.description) == ("B & C", None, (), "Good")


def test_option_and_setting_errors(tmp_path):
    write_lcrec(tmp_path, {"0": [0]}, {"0": {"title": "A"}})
    with pytest.raises(ConfigError, match="on_unknown_item must be 'error' or 'drop'"):
        read_dataset("lcrec", tmp_path, on_unknown_item="skip")
    with pytest.raises(ConfigError, match="takes no option.*user_col"):
        read_dataset("lcrec", tmp_path, user_col="u")


def test_p5_unknown_item_names_line_and_drop_counts(tmp_path):
    (tmp_path / "sequential_data.txt").write_text("1 0 1\n2 1 7 0\n3 7\n")
    (tmp_path / "id2title.json").write_text('{"0": "A", "1": "B"}')
    with pytest.raises(DataError, match=r"sequential_data.txt, line 2: item id '7' is not in the catalog"):
        read_dataset("p5", tmp_path)
    ds = read_dataset("p5", tmp_path, on_unknown_item="drop")
    assert ds.sequences == {"1": [0, 1], "2": [1, 0]}
    assert ds.dropped == {"unknown_item": 2, "users_left_empty": 1}


def test_p5_empty_and_blank_files(tmp_path):
    (tmp_path / "sequential_data.txt").write_text("")
    with pytest.raises(DataError, match=r"sequential_data.txt: sequence file is empty"):
        read_dataset("p5", tmp_path)
    (tmp_path / "sequential_data.txt").write_text("\n\n")
    with pytest.raises(DataError, match=r"sequential_data.txt: sequence file has no sequence lines"):
        read_dataset("p5", tmp_path)


def test_p5_truncated_title_map(tmp_path):
    (tmp_path / "sequential_data.txt").write_text("1 0 1\n")
    (tmp_path / "id2title.json").write_text('{"0": "A",\n "1": "B')
    with pytest.raises(DataError, match=r"id2title.json, line 2: invalid or truncated JSON"):
        read_dataset("p5", tmp_path)


def test_dealrec_bad_inputs(tmp_path):
    (tmp_path / "sequential_train.txt").write_text("1 1 2\n")
    with pytest.raises(DataError, match=r"seqid2title.json: title map not found"):
        read_dataset("dealrec", tmp_path)
    (tmp_path / "seqid2title.json").write_text('{"1": "A", "2": "B"}')
    (tmp_path / "sequential_valid.txt").write_text("1 2.5\n")
    with pytest.raises(DataError, match=r"sequential_valid.txt, line 1: id '2.5' is not an integer"):
        read_dataset("dealrec", tmp_path)
    (tmp_path / "sequential_valid.txt").write_text("1\n")
    (tmp_path / "sequential_test.txt").write_text("1 3\n")
    with pytest.raises(DataError, match=r"sequential_test.txt, line 1: item id '3' is not in the catalog"):
        read_dataset("dealrec", tmp_path)
    ds = read_dataset("dealrec", tmp_path, on_unknown_item="drop")
    assert ds.sequences == {"1": [0, 1]} and ds.dropped == {"unknown_item": 1}


def test_recbole_unknown_item_names_line(tmp_path):
    (tmp_path / "d.inter").write_text("user_id:token\titem_id:token\n1\t1\n1\t5\n")
    (tmp_path / "d.item").write_text("item_id:token\ttitle:token_seq\n1\tA\n")
    with pytest.raises(DataError, match=r"d.inter, line 3: item id '5' is not in the catalog"):
        read_dataset("recbole", tmp_path)


def test_recbole_header_only_bad_timestamp_missing_column(tmp_path):
    (tmp_path / "d.inter").write_text("user_id:token\titem_id:token\n")
    with pytest.raises(DataError, match=r"d.inter: interaction file has a header but no rows"):
        read_dataset("recbole", tmp_path)
    (tmp_path / "d.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t1\tyesterday\n")
    with pytest.raises(DataError, match=r"d.inter, line 2, field 'timestamp': timestamp 'yesterday' is not a number"):
        read_dataset("recbole", tmp_path)
    (tmp_path / "d.inter").write_text("uid:token\titem_id:token\n1\t1\n")
    with pytest.raises(DataError, match=r"d.inter: missing column 'user_id'; present: uid, item_id"):
        read_dataset("recbole", tmp_path)


def test_recbole_folder_prefers_test_file(tmp_path):
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    (tmp_path / "d.train.inter").write_text(head + "0\t1\t2\n")
    (tmp_path / "d.valid.inter").write_text(head + "0\t1 2\t3\n")
    (tmp_path / "d.test.inter").write_text(head + "0\t1 2 3\t1\n")
    ds = read_dataset("recbole", tmp_path)  # no item file: the catalog is the ids seen
    assert [ds.catalog[i].item_id for i in ds.sequences["0"]] == ["1", "2", "3", "1"]
    ds = read_dataset("recbole", tmp_path / "d.train.inter")
    assert [ds.catalog[i].item_id for i in ds.sequences["0"]] == ["1", "2"]


def test_recbole_unisrec_text_is_split(tmp_path):
    (tmp_path / "S.test.inter").write_text("user_id:token\titem_id_list:token_seq\titem_id:token\n0\t0 1\t2\n")
    (tmp_path / "S.text").write_text(
        "item_id:token\ttext:token_seq\n"
        "B1\tGlue No. 5, Strong. Ind & Sci Adhesives Glue. Mr. Fix. \n"
        "B2\tTape. Ind & Sci Tapes. Acme. \n"
        "B3\tFan, 24 in. . TPI. \n")
    (tmp_path / "S.item2index").write_text("B1\t0\nB2\t1\nB3\t2\n")
    ds = read_dataset("recbole", tmp_path)
    a, b, c = (ds.catalog[i] for i in range(3))
    assert (a.title, a.categories, a.brand, dict(a.extra)) == (
        "Glue No. 5, Strong", ("Ind & Sci Adhesives Glue",), "Mr. Fix", {"asin": "B1"})
    assert (b.title, b.categories, b.brand) == ("Tape", ("Ind & Sci Tapes",), "Acme")
    assert (c.title, c.categories, c.brand) == ("Fan, 24 in", (), "TPI")


def test_amazon2018_drop_counts_and_file_path(tmp_path):
    _gz(tmp_path / "Tools_5.json.gz", [
        json.dumps({"reviewerID": "U1", "asin": "A", "unixReviewTime": 5}),
        json.dumps({"reviewerID": "U1", "asin": "GONE", "unixReviewTime": 6}),
        json.dumps({"reviewerID": "U1", "asin": "A", "unixReviewTime": 5}),  # tie: file order
    ])
    _gz(tmp_path / "meta_Tools.json.gz", [
        json.dumps({"asin": "A", "title": "Saw &amp; Blade", "price": ".a-box{display:block}",
                    "description": [], "brand": ""}),
    ])
    with pytest.raises(DataError, match=r"Tools_5.json.gz, line 2: item id 'GONE' is not in the catalog"):
        read_dataset("amazon2018", tmp_path)
    ds = read_dataset("amazon2018", tmp_path / "Tools_5.json.gz", on_unknown_item="drop")
    assert ds.name == "Tools" and ds.sequences == {"U1": [0, 0]} and ds.dropped == {"unknown_item": 1}
    a = ds.catalog[0]
    assert (a.title, a.price, a.description, a.brand) == ("Saw & Blade", None, None, None)


def test_amazon2018_truncated_gzip_and_missing_meta(tmp_path):
    _gz(tmp_path / "Tools_5.json.gz",
        [json.dumps({"reviewerID": f"U{i}", "asin": "A", "unixReviewTime": i}) for i in range(2000)])
    data = (tmp_path / "Tools_5.json.gz").read_bytes()
    with pytest.raises(DataError, match=r"meta_Tools.json.gz: metadata file not found"):
        read_dataset("amazon2018", tmp_path / "Tools_5.json.gz")
    _gz(tmp_path / "meta_Tools.json.gz", [json.dumps({"asin": "A", "title": "x"})])
    (tmp_path / "Tools_5.json.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"Tools_5.json.gz, line \d+: cannot read past this point"):
        read_dataset("amazon2018", tmp_path)


def test_amazon2018_bad_review_fields(tmp_path):
    _gz(tmp_path / "meta_Tools.json.gz", [json.dumps({"asin": "A", "title": "x"})])
    _gz(tmp_path / "Tools_5.json.gz", [json.dumps({"reviewerID": "U", "asin": "A", "unixReviewTime": 1}),
                                       json.dumps({"reviewerID": "U", "asin": "A"})])
    with pytest.raises(DataError, match=r"Tools_5.json.gz, line 2, field 'unixReviewTime': missing"):
        read_dataset("amazon2018", tmp_path)
    _gz(tmp_path / "Tools_5.json.gz", [json.dumps({"reviewerID": "U", "asin": "A", "unixReviewTime": "soon"})])
    with pytest.raises(DataError, match=r"line 1, field 'unixReviewTime': unixReviewTime 'soon' is not an integer"):
        read_dataset("amazon2018", tmp_path)


def test_csv_folder_auto_timestamp_iso_dates(tmp_path):
    (tmp_path / "interactions.csv").write_text(
        "user_id,item_id,timestamp\nu,b,2024-01-02\nu,a,2024-01-01T10:00:00\nu,c,2024-01-02\n")
    (tmp_path / "items.csv").write_text("item_id,title,categories,price\na,Alpha,X > Y,nan\nb,Beta,,3\nc,Gamma,Z,\n")
    ds = read_dataset("csv", tmp_path)
    assert [ds.catalog[i].title for i in ds.sequences["u"]] == ["Alpha", "Beta", "Gamma"]  # tie b/c: file order
    assert (ds.catalog[0].categories, ds.catalog[0].price, ds.catalog[1].price) == (("X", "Y"), None, "3")
    ds = read_dataset("csv", tmp_path / "interactions.csv", time_col=None)  # file order
    assert [ds.catalog[i].item_id for i in ds.sequences["u"]] == ["b", "a", "c"]


def test_csv_bad_inputs(tmp_path):
    (tmp_path / "inter.csv").write_text("user_id,item_id\n")
    with pytest.raises(DataError, match=r"inter.csv: no interaction rows"):
        read_dataset("csv", tmp_path / "inter.csv")
    (tmp_path / "inter.csv").write_text("user_id,item_id\n1,a\n2\n")
    with pytest.raises(DataError, match=r"inter.csv, line 3, field 'item_id': empty or missing value"):
        read_dataset("csv", tmp_path / "inter.csv")
    (tmp_path / "inter.csv").write_text("user_id,item_id\n1,a\n")
    (tmp_path / "items.csv").write_text("item_id,name\na,Alpha\n")
    with pytest.raises(DataError, match=r"items.csv, line 2: missing mapped column\(s\) 'headline'; "
                                        r"present: item_id, name"):
        read_dataset("csv", tmp_path / "inter.csv", items="items.csv", title_col="headline")
    (tmp_path / "items.csv").write_text("item_id,title\nb,Beta\n")
    with pytest.raises(DataError, match=r"inter.csv, line 2: item id 'a' is not in the catalog"):
        read_dataset("csv", tmp_path / "inter.csv", items="items.csv")
    with pytest.raises(DataError, match=r"missing.csv: not found"):
        read_dataset("csv", tmp_path / "missing.csv")


def test_jsonl_truncated_line(tmp_path):
    (tmp_path / "inter.jsonl").write_text('{"user_id": 1, "item_id": "x"}\n{"user_id": 1, "item_')
    with pytest.raises(DataError, match=r"inter.jsonl, line 2: invalid or truncated JSON"):
        read_dataset("jsonl", tmp_path / "inter.jsonl")


def test_stats_reports_drops(tmp_path):
    from genrec.data.stats import dataset_stats

    write_lcrec(tmp_path, {"0": [0, 7, 8], "1": [0]}, {"0": {"title": "A"}})
    lines = dataset_stats("lcrec", str(tmp_path), on_unknown_item="drop").splitlines()
    assert "dropped (unknown_item): 2" in lines
    assert lines[-1] == "users=2 items=1 interactions=2"


def test_csv_with_byte_order_mark_and_tsv(tmp_path):
    (tmp_path / "inter.csv").write_bytes("\ufeffuser_id,item_id\nu,a\n".encode())  # as Excel saves it
    assert read_dataset("csv", tmp_path / "inter.csv").stats_line() == "users=1 items=1 interactions=1"
    (tmp_path / "inter.tsv").write_text("user\titem\nu\ta\nu\tb\n")
    ds = read_dataset("csv", tmp_path / "inter.tsv", user_col="user", item_col="item")
    assert ds.stats_line() == "users=1 items=2 interactions=2"


def test_jsonl_given_a_json_array(tmp_path):
    (tmp_path / "inter.json").write_text('[{"user_id": 1, "item_id": "x"},\n {"user_id": 2, "item_id": "y"}]\n')
    with pytest.raises(DataError, match=r"inter.json, line 1: invalid or truncated JSON.*JSON Lines"):
        read_dataset("jsonl", tmp_path / "inter.json")
