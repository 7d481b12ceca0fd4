"""The Report is plain data: JSON round trip, schema, and the JSON Schema in docs/."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import networkx
import pytest

import shapetrace
from shapetrace.report import Report

SCHEMA = json.loads((Path(__file__).parent.parent / "docs" / "schema.json").read_text())


@pytest.mark.parametrize(("model", "size"), [("resnet50", "448"), ("codereview_resnet50", "448")])
def test_report_round_trips_through_json_and_matches_the_schema(model: str, size: str) -> None:
    report = shapetrace.analyze(model, size)
    data = json.loads(report.to_json())
    jsonschema.validate(data, SCHEMA)
    again = Report.from_json(report.to_json())
    assert again.to_dict() == data
    assert data["schema"] == 1
    assert data["source"]["model"] == model and data["source"]["trace"] == "fx"
    assert set(data["source"]["versions"]) >= {"shapetrace", "torch", "torchvision"}


def test_failure_record_names_the_node_and_its_input() -> None:
    data = json.loads(shapetrace.analyze("codereview_resnet50", "1x3x448x448").to_json())
    assert data["failure"] == {
        "node": "fc_layer",
        "module": "fc_layer",
        "type": "Linear",
        "input_shapes": [[1, 131072]],
        "message": "fc_layer: Linear(2048 -> 2) received 131072 features",
        "kind": "rejected",
    }
    names = [n["name"] for n in data["nodes"]]
    assert names[-3:] == ["size", "view", "fc_layer"]
    by_name = {n["name"]: n for n in data["nodes"]}
    assert by_name["view"]["shape"] == [1, 131072]
    assert by_name["size"]["shape"] is None and by_name["size"]["value"] == 1
    assert by_name["fc_layer"]["shape"] is None


def test_other_schema_numbers_are_refused() -> None:
    data = json.loads(shapetrace.analyze("alexnet", "224").to_json())
    data["schema"] = 2
    with pytest.raises(ValueError, match="schema"):
        Report.from_dict(data)


def test_to_networkx_gives_the_graph_for_queries_of_ones_own() -> None:
    report = shapetrace.analyze("resnet50", "224")
    graph = report.to_networkx()
    assert isinstance(graph, networkx.DiGraph)
    assert graph.number_of_nodes() == len(report.nodes)
    assert graph.number_of_edges() == len({(i, n.name) for n in report.nodes for i in n.inputs})
    assert networkx.has_path(graph, "x", "fc")
    assert "layer1.0.conv1" in networkx.ancestors(graph, "layer1.0.add")
    assert {"layer1.0.downsample.0", "maxpool"} <= networkx.ancestors(graph, "layer1.0.add")
    assert graph.nodes["layer4.2.relu_2"]["shape"] == [1, 2048, 7, 7]
    assert graph.nodes["fc"]["type"] == "Linear" and graph.nodes["fc"]["params"] == 2_049_000
    assert graph.graph["model"] == "resnet50"


def test_readme_json_sample_is_real_output() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("## The JSON report (schema 1)", 1)[1].split("```json\n", 1)[1]
    sample = json.loads(block.split("```", 1)[0])
    real = json.loads(shapetrace.analyze("resnet50", "1x3x448x448").to_json())
    assert list(sample) == list(real)
    for key, value in sample.items():
        if key == "nodes":
            assert value == [n for n in real["nodes"] if n["name"] == value[0]["name"]]
        elif key == "modules":
            assert value == [m for m in real["modules"] if m["path"] == value[0]["path"]]
        elif key == "verdict":
            assert real["verdict"].startswith(value.rstrip(". "))
        elif key == "source":
            assert {k: v for k, v in value.items() if k != "versions"} == {
                k: v for k, v in real["source"].items() if k != "versions"
            }
        else:
            assert value == real[key], key
