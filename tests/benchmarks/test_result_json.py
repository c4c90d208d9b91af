"""Result JSONs: the content of ``json.dumps`` (float32 values in their shortest digits), one line per list of scalars."""

import json
import math

import numpy as np

from benchmarks import _harness as harness


def test_dumps_round_trips_nested_results():
    payload = {"rows": [{"method": "a", "curve": [0.1, 2, None, "inf"]}, {"method": "b", "curve": []}],
               "grid": [[1, 2], [3]], "empty": {}, "nan": math.nan, "name": "x\"y"}
    text = harness.dumps(payload)
    back = json.loads(text)
    assert back.keys() == payload.keys() and back["rows"] == payload["rows"] and back["grid"] == payload["grid"]
    assert math.isnan(back["nan"]) and back["name"] == 'x"y' and back["empty"] == {}


def test_dumps_puts_each_list_of_scalars_on_one_line():
    text = harness.dumps({"curve": list(range(50)), "rows": [{"v": [1.5, 2.5]}]})
    assert '"curve": [0, 1, 2,' in text and '"v": [1.5, 2.5]' in text
    assert len(text.splitlines()) == 8


def test_write_json_records_the_environment(tmp_path):
    path = harness.write_json(tmp_path / "new", "bench", {"rows": [1, 2]})
    assert json.loads(path.read_text())["rows"] == [1, 2]
    assert "environment" in json.loads(path.read_text()) and not path.with_suffix(".json.tmp").exists()


def test_dumps_keeps_a_curve_of_pairs_on_one_line_and_nests_longer_lists():
    text = harness.dumps({"curve": [[0.0, 0.5], [1.0, 0.25]], "blocks": [list(range(5)), [1]]})
    assert '"curve": [[0.0, 0.5], [1.0, 0.25]]' in text
    assert '"blocks": [\n' in text and json.loads(text)["blocks"] == [list(range(5)), [1]]


def test_dumps_writes_float32_values_with_their_shortest_digits_and_keeps_float64_ones():
    single = float(np.float32(0.1))  # 0.10000000149011612: a float32 result held in a Python float
    values = [single, 0.1, 1e-45, float(np.float32(3.4e38)), 2.0, -0.0, 1e300, 7]
    text = harness.dumps({"curve": [[0, single]], "v": values})
    assert '"curve": [[0, 0.1]]' in text and "0.10000000149011612" not in text
    back = json.loads(text)["v"]
    assert [np.float32(b) for b in back[:4]] == [np.float32(v) for v in values[:4]]  # float32 round trip
    assert back[1] == 0.1 and back[4:] == [2.0, -0.0, 1e300, 7]  # float64 and int values exactly
