"""Result JSONs: the same content as ``json.dumps``, one line per list of scalars."""

import json
import math

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
