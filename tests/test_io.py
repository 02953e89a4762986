"""Reading and checking the long table: every table-level error names file, column, value and row."""

import gzip

import numpy as np
import pandas as pd
import pytest
from conftest import make_table

from forecast.errors import InputError, OutputExistsError
from forecast.outputs import prepare_out_dir
from forecast.sources import read_table, split_series


def read(path, id_cols=("unique_id",), time_col="ds", target_col="y", duplicates="error"):
    return read_table(path, id_cols, time_col, target_col, duplicates)


def test_reads_csv_gzip_and_parquet_alike(tmp_path):
    frame = make_table(n_series=3, days=10)
    frame.to_csv(tmp_path / "t.csv", index=False)
    with gzip.open(tmp_path / "t.csv.gz", "wt") as f:
        frame.to_csv(f, index=False)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    tables = [read(tmp_path / name)[0] for name in ("t.csv", "t.csv.gz", "t.parquet")]
    for table in tables:
        assert list(table.columns) == ["unique_id", "ds", "y"]
        assert len(table) == 30
        np.testing.assert_allclose(table["y"].to_numpy(), frame["y"].to_numpy())
        assert (table["ds"].to_numpy() == frame["ds"].to_numpy()).all()


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.csv: no such file$"):
        read(tmp_path / "nope.csv")


def test_empty_file_and_empty_table(write_csv):
    with pytest.raises(InputError, match=r"empty\.csv: the file is empty$"):
        read(write_csv("", "empty.csv"))
    with pytest.raises(InputError, match=r"header\.csv: the table has no data rows$"):
        read(write_csv("unique_id,ds,y\n", "header.csv"))


def test_unreadable_parquet(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match=r"broken\.parquet: cannot read as parquet: "):
        read(path)


def test_unknown_extension(tmp_path):
    path = tmp_path / "table.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(InputError, match=r"unknown file type; expected \.csv, \.csv\.gz or \.parquet"):
        read(path)


def test_missing_column_lists_columns_and_suggests_closest(write_csv):
    path = write_csv("series_id,date,sales\nA,2024-01-01,1\n")
    with pytest.raises(InputError) as e:
        read(path, id_cols=("series_id",), time_col="date", target_col="sale")
    assert str(e.value) == (
        f"{path}: target column 'sale' not found; columns are: series_id, date, sales; "
        "did you mean 'sales'? pass --target-col sales"
    )


def test_time_value_that_does_not_parse(write_csv):
    path = write_csv("unique_id,ds,y\nA,2024-01-01,1\nA,2024-01-02,2\nA,yesterday,3\n")
    with pytest.raises(InputError) as e:
        read(path)
    assert str(e.value) == (
        f"{path}: column 'ds' has a value that is not a time: 'yesterday' at row 3 (1 such row(s)); "
        "use ISO dates such as 2024-01-31"
    )


def test_non_numeric_target_but_blanks_and_na_are_missing(write_csv):
    path = write_csv("unique_id,ds,y\nA,2024-01-01,1\nA,2024-01-02,\nA,2024-01-03,NA\nA,2024-01-04,abc\n")
    with pytest.raises(InputError) as e:
        read(path)
    assert str(e.value) == (
        f"{path}: column 'y' has a value that is not a number: 'abc' at row 4 (1 such row(s)); "
        "leave a blank cell for a missing value"
    )
    ok = write_csv("unique_id,ds,y\nA,2024-01-01,1\nA,2024-01-02,\nA,2024-01-03,NA\n", "ok.csv")
    table, _ = read(ok)
    assert table["y"].isna().tolist() == [False, True, True]


def test_duplicates_are_an_error_with_count_and_example(write_csv):
    path = write_csv("store,item,ds,y\n1,a,2024-01-01,1\n1,a,2024-01-01,2\n1,b,2024-01-01,3\n")
    with pytest.raises(InputError) as e:
        read(path, id_cols=("store", "item"))
    assert str(e.value) == (
        f"{path}: 1 duplicate (store, item, ds) row(s), e.g. store=1, item=a, ds=2024-01-01 00:00:00; "
        "pass --duplicates sum, mean or last to combine them"
    )


@pytest.mark.parametrize("policy,expected", [("sum", 3.0), ("mean", 1.5), ("last", 2.0)])
def test_duplicates_combined_by_policy(write_csv, policy, expected):
    path = write_csv("unique_id,ds,y\nA,2024-01-01,1\nA,2024-01-01,2\nA,2024-01-02,5\n")
    table, _ = read(path, duplicates=policy)
    assert table.sort_values("ds")["y"].tolist() == [expected, 5.0]


def test_last_of_repeated_rows_is_the_last_in_the_file_even_when_rows_are_out_of_order(write_csv):
    path = write_csv("unique_id,ds,y\nB,2024-01-02,7\nA,2024-01-02,1\nB,2024-01-01,6\nA,2024-01-02,2\n"
                     "A,2024-01-01,0\nA,2024-01-02,3\n")
    table, _ = read(path, duplicates="last")
    series = split_series(table, ["unique_id"])
    assert [(s.key, s.y.tolist()) for s in series] == [(("A",), [0.0, 3.0]), (("B",), [6.0, 7.0])]


@pytest.mark.slow
def test_csv_and_gzipped_csv_of_a_large_table_read_alike_block_by_block(tmp_path):
    # more than one 16 MB block of text: categories of keys and times must agree across blocks
    frame = make_table(n_series=400, days=1_500)
    frame["unique_id"] = frame["unique_id"].str.replace("S", "00", regex=False)  # keys that look like numbers
    frame = frame.sample(frac=1, random_state=2)
    plain, packed = tmp_path / "big.csv", tmp_path / "big.csv.gz"
    frame.to_csv(plain, index=False)
    frame.to_csv(packed, index=False)
    assert plain.stat().st_size > 16 << 20
    a, _ = read(plain)
    b, _ = read(packed)
    pd.testing.assert_frame_equal(a.astype({"unique_id": str}), b.astype({"unique_id": str}))
    expected = frame.assign(ds=pd.to_datetime(frame["ds"])).sort_values(["unique_id", "ds"]).reset_index(drop=True)
    assert a["unique_id"].astype(str).tolist() == expected["unique_id"].tolist()  # leading zeros kept, key order
    np.testing.assert_array_equal(a["ds"].to_numpy(), expected["ds"].to_numpy())
    np.testing.assert_array_equal(a["y"].to_numpy(), expected["y"].to_numpy())


def test_timezone_aware_times_are_made_naive_and_said(write_csv):
    path = write_csv("unique_id,ds,y\nA,2024-01-01T10:00:00+02:00,1\nA,2024-01-02T10:00:00+02:00,2\n")
    table, notes = read(path)
    assert table["ds"].dt.tz is None
    assert table["ds"].iloc[0] == pd.Timestamp("2024-01-01 10:00:00")
    assert len(notes) == 1 and "timezone" in notes[0] and "naive" in notes[0]


def test_empty_key_is_an_error(write_csv):
    path = write_csv("unique_id,ds,y\nA,2024-01-01,1\n,2024-01-02,2\n")
    with pytest.raises(InputError, match=r"id column 'unique_id' is empty at row 2"):
        read(path)


def test_texts_like_na_or_null_are_keys_but_a_blank_key_is_empty(write_csv):
    # "NA" is Namibia: in a key column only an empty or all-blank cell is a missing key
    rows = "".join(f"{k},2024-01-0{d},{d}\n" for k in ("NA", "null", "None", "nan") for d in (1, 2))
    table, _ = read(write_csv("unique_id,ds,y\n" + rows))
    assert [s.key for s in split_series(table, ["unique_id"])] == [("NA",), ("None",), ("nan",), ("null",)]
    with pytest.raises(InputError, match=r"id column 'unique_id' is empty at row 2; every row needs a series key"):
        read(write_csv("unique_id,ds,y\nA,2024-01-01,1\n  ,2024-01-02,2\n"))


def test_a_row_with_more_or_fewer_fields_than_the_header_is_an_error_naming_it(write_csv):
    # an unquoted thousands separator: pandas' reader would drop "234" and keep y = 1
    with pytest.raises(InputError, match=r"a row has 4 fields where the header has 3: 'A,2024-01-02,1,234'; quote"):
        read(write_csv("unique_id,ds,y\nA,2024-01-01,5\nA,2024-01-02,1,234\n"))
    with pytest.raises(InputError, match=r"a row has 2 fields where the header has 3: 'A,2024-01-02'"):
        read(write_csv("unique_id,ds,y\nA,2024-01-01,5\nA,2024-01-02\n"))


def test_a_key_with_a_line_break_in_quotes_is_read(write_csv):
    table, _ = read(write_csv('unique_id,ds,y\n"A\nB",2024-01-01,1\n"A\nB",2024-01-02,2\n'))
    assert [s.key for s in split_series(table, ["unique_id"])] == [("A\nB",)]


def test_day_first_dates_are_read_day_first_throughout(write_csv):
    days = pd.date_range("2024-01-01", "2024-02-29")  # 01/01/2024 alone would read either way
    rows = "".join(f"A,{d:%d/%m/%Y},1\n" for d in days)
    table, _ = read(write_csv("unique_id,ds,y\n" + rows))
    np.testing.assert_array_equal(table["ds"].to_numpy(), days.to_numpy(dtype="datetime64[ns]"))


def test_dates_that_read_either_way_are_read_month_first_and_said(write_csv):
    # 01/02/2024 .. 01/12/2024: the 1st of each month, or 2 to 12 January; nothing in the column tells
    rows = "".join(f"A,01/{m:02d}/2024,{m}\n" for m in range(1, 13))
    table, notes = read(write_csv("unique_id,ds,y\n" + rows))
    assert table["ds"].iloc[1] == pd.Timestamp("2024-01-02")
    assert notes == ["column 'ds' has dates such as '01/02/2024' that read either way; they were read month first; "
                     "if the day comes first, write ISO dates (2024-01-31)"]


def test_mixed_formats_where_day_and_month_could_swap_are_an_error(write_csv):
    path = write_csv("unique_id,ds,y\nA,01/02/2024,1\nA,2024-01-03 10:00,2\nA,13/02/2024,3\n")
    with pytest.raises(InputError, match=r"column 'ds' mixes date formats, and '01/02/2024' reads as 2024-01-02 or "
                                         r"2024-02-01; write ISO dates"):
        read(path)


def test_utc_offsets_that_change_keep_each_local_wall_time_and_say_so(write_csv):
    # a daylight-saving change: +01:00 then +02:00; converting to UTC would move every date to 22:00 the day before
    path = write_csv("unique_id,ds,y\nA,2024-03-30T00:00:00+01:00,1\nA,2024-03-31T00:00:00+01:00,2\n"
                     "A,2024-04-01T00:00:00+02:00,3\n")
    table, notes = read(path)
    assert list(table["ds"].dt.strftime("%Y-%m-%d %H:%M")) == ["2024-03-30 00:00", "2024-03-31 00:00",
                                                               "2024-04-01 00:00"]
    assert notes == ["column 'ds' had UTC offsets that differ between rows (+01:00, +02:00); timestamps were made "
                     "naive (local wall time)"]


def test_an_hour_repeated_by_a_daylight_saving_change_is_explained(write_csv):
    # 27 October 2024 in Berlin: 02:00 comes twice, once at +02:00 and once at +01:00
    path = write_csv("unique_id,ds,y\nA,2024-10-27T01:00:00+02:00,1\nA,2024-10-27T02:00:00+02:00,2\n"
                     "A,2024-10-27T02:00:00+01:00,3\nA,2024-10-27T03:00:00+01:00,4\n")
    with pytest.raises(InputError, match=r"1 duplicate \(unique_id, ds\) row\(s\).*; the times had a time zone, "
                                         r"and at local wall time the hour that a daylight-saving change repeats "
                                         r"occurs twice: store them in UTC to keep both$"):
        read(path)


def test_times_outside_pandas_range_are_an_error_not_a_traceback(write_csv, tmp_path):
    with pytest.raises(InputError, match=r"column 'ds' has a time outside the range pandas holds \(1677-09-22 to "
                                         r"2262-04-11\): '9999-12-31' at row 2 \(1 such row\(s\)\)$"):
        read(write_csv("unique_id,ds,y\nA,2024-01-01,1\nA,9999-12-31,2\n"))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"unique_id": ["A", "A"], "ds": pa.array([0, 10_000_000_000_000], pa.timestamp("ms")),
                             "y": [1.0, 2.0]}), tmp_path / "far.parquet")
    with pytest.raises(InputError, match=r"'ds' has a time outside the range pandas holds .*: 2286-11-20 17:46:40 at row 2"):
        read(tmp_path / "far.parquet")


def test_parquet_numbers_as_times_or_lists_as_keys_are_errors(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"unique_id": ["A", "A"], "ds": [1704067200, 1704153600], "y": [1.0, 2.0]}),
                   tmp_path / "epoch.parquet")
    with pytest.raises(InputError, match=r"column 'ds' holds numbers \(e.g. 1704067200\), not times"):
        read(tmp_path / "epoch.parquet")
    pq.write_table(pa.table({"unique_id": [["A"], ["A"]], "ds": pa.array([0, 86_400_000], pa.timestamp("ms")),
                             "y": [1.0, 2.0]}), tmp_path / "listkey.parquet")
    with pytest.raises(InputError, match=r"id column 'unique_id' holds lists or records, not text or numbers"):
        read(tmp_path / "listkey.parquet")


def test_a_file_separated_by_semicolons_is_named_as_such(write_csv):
    with pytest.raises(InputError, match=r"the header is one column, 'unique_id;ds;y': the file seems to separate "
                                         r"columns with ';'"):
        read(write_csv("unique_id;ds;y\nA;2024-01-01;1\n"))


def test_keys_keep_leading_zeros_and_composite_keys_stay_separate(write_csv):
    path = write_csv("store,item,ds,y\n007,0012,2024-01-01,1\n007,0012,2024-01-02,2\n008,0012,2024-01-01,3\n")
    table, _ = read(path, id_cols=("store", "item"))
    series = split_series(table, ["store", "item"])
    assert [s.key for s in series] == [("007", "0012"), ("008", "0012")]


def test_split_series_sorts_by_key_then_time(write_csv):
    frame = make_table(n_series=3, days=5).sample(frac=1, random_state=1)  # shuffled rows
    table, _ = read(write_csv(frame))
    series = split_series(table, ["unique_id"])
    assert [s.key for s in series] == [("S0",), ("S1",), ("S2",)]
    for s in series:
        assert (np.diff(s.ds.astype("int64")) > 0).all()
        assert len(s.y) == 5


def test_out_dir_with_a_finished_run_is_refused(tmp_path):
    (tmp_path / "summary.json").write_text('{"status": "ok"}')
    with pytest.raises(OutputExistsError, match="holds a finished run .*pass --overwrite"):
        prepare_out_dir(tmp_path, overwrite=False)
    prepare_out_dir(tmp_path, overwrite=True)


def test_a_missing_regressor_is_not_matched_to_a_column_with_another_role(write_csv):
    path = write_csv("series_id,ds,y\nA,2024-01-01,1\n")
    with pytest.raises(InputError, match=r"extra column 'price' not found; columns are: series_id, ds, y; pass "
                                         r"--regressor NAME$"):
        read_table(path, ["series_id"], "ds", "y", extra_cols=["price"])
