"""The names io.py held before it was split, for code not yet moved to their new homes (other branches merging
into this one): reading the input lives in forecast/sources/, writing outputs and reading a run back in
forecast/outputs.py. Import from those; this module goes once nothing imports it."""

from .outputs import (RunDir, csv_safe, csv_unsafe, default_out_dir, errors_frame, forecast_frame, is_run_file,
                      key_label, key_title, model_label, natural_key, params_frame, prepare_out_dir, read_history,
                      read_params, read_run_dir, timings_frame, write_atomic, write_json, write_table,
                      written_by_forecast)
from .sources import (STDIN, attach_future, inputs_read_once, key_types, load_series, read_future, read_holidays,
                      read_series_subset, read_table, sort_by_series, split_series)
from .sources.files import input_bytes

__all__ = ["RunDir", "STDIN", "attach_future", "csv_safe", "csv_unsafe", "default_out_dir", "errors_frame",
           "forecast_frame", "input_bytes", "inputs_read_once", "is_run_file", "key_label", "key_title", "key_types",
           "load_series", "model_label", "natural_key", "params_frame", "prepare_out_dir", "read_future",
           "read_history", "read_holidays", "read_params", "read_run_dir", "read_series_subset", "read_table",
           "sort_by_series", "split_series", "timings_frame", "write_atomic", "write_json", "write_table",
           "written_by_forecast"]
