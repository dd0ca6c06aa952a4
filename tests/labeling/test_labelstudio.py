"""Label Studio interop: labelling config, task export, label import, ML backend endpoints.

The request bodies below follow what Label Studio sends (its ``ml/api_connector.py``:
``/setup`` with ``project``, ``schema``, ``hostname``, ``access_token``, ``extra_params``;
``/predict`` with ``tasks``, ``project``, ``label_config``, ``params``; ``/webhook`` with
the ``action`` and the webhook serializers' ``annotation``, ``task``, ``project``) and the
answers are those the ``label-studio-ml-backend`` package gives (``{"results": [...]}``,
``{"model_version": ...}``, ``{"status": "UP", ...}``).
"""

import base64
import doctest
import json
import random
from pathlib import Path

import pytest

from skpeal.labeling import labelstudio
from skpeal.labeling.labelstudio import (
    ID_KEY,
    TaskImage,
    export_tasks,
    import_labels,
    labeling_config,
    local_files_url,
    parse_labeling_config,
)

CLASSES = ["T-shirt/top", "Trouser", "Bag"]


def test_docstring_examples_run():
    pytest.importorskip("fastapi")
    from skpeal.labeling.labelstudio import backend, bridge, config, tasks

    attempted = 0
    for module in (labelstudio, config, tasks, backend, bridge):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.__name__
        attempted += result.attempted
    assert attempted >= 6


# ----------------------------------------------------------------------- labelling config
def test_labeling_config_round_trips_and_escapes():
    classes = ['a "quoted" & <odd> class', "plain", "ünïcode"]
    xml = labeling_config(classes, from_name="label", to_name="img", data_key="url")
    assert '<Image name="img" value="$url"/>' in xml
    assert '<Choices name="label" toName="img"' in xml
    ui = parse_labeling_config(xml)
    assert ui == ("label", "img", "url", tuple(classes))


def test_labeling_config_refuses_bad_classes():
    with pytest.raises(ValueError, match="empty"):
        labeling_config([])
    with pytest.raises(ValueError, match="repeats"):
        labeling_config([1, "1"])
    with pytest.raises(ValueError, match="list of class labels"):
        labeling_config("cat")
    with pytest.raises(ValueError, match="from_name"):
        labeling_config(["a"], from_name="")


def test_parse_labeling_config_reads_alias_and_label_studio_templates():
    # Label Studio's own "Image Classification" template, with an alias on one choice
    xml = """<View>
      <Image name="image" value="$image"/>
      <Choices name="choice" toName="image">
        <Choice value="Adult content"/>
        <Choice value="Weapons" alias="weapons"/>
        <Choice value="Violence"/>
      </Choices>
    </View>"""
    ui = parse_labeling_config(xml)
    assert ui.choices == ("Adult content", "weapons", "Violence")
    assert ui.data_key == "image"


@pytest.mark.parametrize(
    "xml, match",
    [
        ("", "empty"),
        ("<View><Image", "not valid XML"),
        ('<View><Image name="image" value="$image"/></View>', "no <Choices>"),
        ('<View><Choices name="c"/></View>', "name and a toName"),
        ('<View><Image name="img" value="$image"/><Choices name="c" toName="image">'
         '<Choice value="a"/></Choices></View>', "no tag named 'image'"),
    ],
)
def test_parse_labeling_config_errors(xml, match):
    with pytest.raises(ValueError, match=match):
        parse_labeling_config(xml)


def test_local_files_url(tmp_path):
    (tmp_path / "sub dir").mkdir()
    f = tmp_path / "sub dir" / "x#1.png"
    f.write_bytes(b"")
    assert local_files_url(f, tmp_path) == "/data/local-files/?d=sub%20dir/x%231.png"
    with pytest.raises(ValueError, match="not inside the document root"):
        local_files_url("/etc/passwd", tmp_path)


# ----------------------------------------------------------------------- export / import
def test_export_shapes():
    tasks = export_tasks(["u/0.png", "u/1.png"], ids=["a", 7], predictions=["Bag", None],
                         scores=[0.5, None], model_version="round-3", labels=[None, "Trouser"],
                         classes=CLASSES)
    assert tasks[0] == {
        "data": {"image": "u/0.png", ID_KEY: "a"},
        "predictions": [{"model_version": "round-3", "score": 0.5, "result": [
            {"from_name": "choice", "to_name": "image", "type": "choices",
             "value": {"choices": ["Bag"]}}]}],
    }
    assert "predictions" not in tasks[1]
    assert tasks[1]["annotations"][0]["result"][0]["value"] == {"choices": ["Trouser"]}
    assert tasks[1]["annotations"][0]["was_cancelled"] is False
    json.dumps(tasks)  # JSON-ready


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ids": ["a"]}, "ids has 1 entries for 2 images"),
        ({"ids": ["a", "a"]}, "id 'a'.*repeated"),
        ({"ids": [1.5, 2]}, "strings or integers"),
        ({"predictions": ["Bag", "Shoe"], "classes": CLASSES}, "image 1: suggestion 'Shoe'"),
        ({"labels": ["Dress", None], "classes": CLASSES}, "image 0: label 'Dress'"),
        ({"predictions": ["Bag", "Bag"], "scores": [float("nan"), 1]}, "finite"),
        ({"scores": [0.3, 0.2]}, "score without a suggestion"),
        ({"model_version": ""}, "model_version"),
    ],
)
def test_export_refuses_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        export_tasks(["a.png", "b.png"], **kwargs)


def test_export_refuses_a_single_string():
    with pytest.raises(ValueError, match="not a single string"):
        export_tasks("a.png")


@pytest.mark.parametrize("seed", range(5))
def test_export_import_round_trip(seed, tmp_path):
    rng = random.Random(seed)
    classes = [0, 1, 2, 3]  # integer classes come back as integers
    n = 40
    images = [f"/data/local-files/?d=img/{i}.png" for i in range(n)]
    ids = [f"id-{i}" for i in range(n)] if seed % 2 == 0 else None
    labels = [rng.choice(classes) if rng.random() < 0.6 else None for _ in range(n)]
    preds = [rng.choice(classes) for _ in range(n)]
    tasks = export_tasks(images, ids=ids, labels=labels, predictions=preds,
                         scores=[rng.random() for _ in range(n)], classes=classes)
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    got = {x.key: x.label for x in import_labels(path, classes=classes)}
    keys = ids or images
    assert got == {k: lab for k, lab in zip(keys, labels) if lab is not None}
    assert all(type(v) is int for v in got.values())


def _ann(id, label, updated, **kw):
    return {"id": id, "completed_by": 1, "was_cancelled": False, "ground_truth": False,
            "created_at": "2026-12-01T10:00:00.000000Z", "updated_at": updated,
            "result": [{"id": f"r{id}", "from_name": "choice", "to_name": "image",
                        "type": "choices", "origin": "manual",
                        "value": {"choices": [label] if isinstance(label, str) else label}}],
            **kw}


def _task(id, annotations, **data):
    return {"id": id, "data": {"image": f"/data/upload/1/{id}.png", **data},
            "annotations": annotations, "predictions": [], "meta": {}, "project": 1,
            "created_at": "2026-12-01T09:00:00.000000Z", "updated_at": "2026-12-01T09:00Z"}


def test_import_latest_annotation_wins_and_cancelled_is_ignored():
    tasks = [
        # listed newest first: the order in the list must not decide
        _task(1, [_ann(12, "Bag", "2026-12-01T12:00:00.000000Z"),
                  _ann(11, "Trouser", "2026-12-01T11:00:00.000000Z")]),
        # the newest was cancelled (skipped): the one before counts
        _task(2, [_ann(21, "Bag", "2026-12-01T11:00:00Z"),
                  _ann(22, "Trouser", "2026-12-01T13:00:00Z", was_cancelled=True)]),
        _task(3, [_ann(31, "Bag", "2026-12-01T11:00:00Z", was_cancelled=True)]),
        _task(4, []),
        _task(5, [_ann(51, [], "2026-12-01T11:00:00Z")]),  # no choice given
    ]
    got = import_labels(tasks, classes=CLASSES)
    assert [(x.key, x.label, x.annotation_id) for x in got] == [
        ("/data/upload/1/1.png", "Bag", 12), ("/data/upload/1/2.png", "Bag", 21)]
    assert got[0].task_id == 1 and got[0].annotator == 1
    assert got[0].updated_at == "2026-12-01T12:00:00.000000Z"


def test_import_key_is_the_skpeal_id_when_present():
    got = import_labels([_task(1, [_ann(1, "Bag", None)], **{ID_KEY: 42})])
    assert got[0].key == 42 and got[0].label == "Bag"


def test_import_names_the_task_for_a_label_outside_the_classes():
    tasks = [_task(1, [_ann(1, "Bag", None)]), _task(99, [_ann(5, "Sandal", None)])]
    with pytest.raises(ValueError, match=r"task 99, annotation 5: label 'Sandal' is not one"):
        import_labels(tasks, classes=CLASSES)


def test_import_refuses_several_choices():
    with pytest.raises(ValueError, match="task 3.*2 choices"):
        import_labels([_task(3, [_ann(1, ["Bag", "Trouser"], None)])])


def test_import_from_name_filters_results():
    ann = _ann(1, "Bag", None)
    ann["result"].append({"from_name": "quality", "to_name": "image", "type": "choices",
                          "value": {"choices": ["blurry"]}})
    got = import_labels([_task(1, [ann])], from_name="choice")
    assert got[0].label == "Bag"
    with pytest.raises(ValueError, match="2 choices"):
        import_labels([_task(1, [ann])])


@pytest.mark.parametrize(
    "export, match",
    [
        ([{"image": "a.png", "choice": "Bag"}], "JSON-MIN"),
        ({"not": "a list"}, "JSON-MIN"),
        ("nope", "No such file"),
        ([{"id": 4, "data": {"text": "x"}, "annotations": []}], "task 4: its data has neither"),
    ],
)
def test_import_refuses_other_formats(export, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        import_labels(export)


def test_import_refuses_a_file_that_is_not_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("id,image\n1,a.png\n")
    with pytest.raises(ValueError, match="is not JSON"):
        import_labels(p)


# ----------------------------------------------------------------------- ML backend
fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from skpeal.labeling.labelstudio import ml_backend_app  # noqa: E402

CONFIG = labeling_config(CLASSES)


class Predictor:
    """A stand-in for the labelling session: fixed answers, records what it is given."""

    classes = CLASSES

    def __init__(self):
        self.seen, self.annotations, self.trained = [], [], 0
        self.model_version = "skpeal-round-2"

    def predict(self, images):
        self.seen.extend(images)
        return [("Bag" if "bag" in im.ref else "Trouser", 0.25 + 0.5 * i / len(images))
                for i, im in enumerate(images)]

    def add_annotation(self, image, label, annotation):
        self.annotations.append((image, label, annotation))

    def train(self):
        self.trained += 1
        return {"rounds": self.trained}


@pytest.fixture
def predictor():
    return Predictor()


@pytest.fixture
def client(predictor):
    return TestClient(ml_backend_app(predictor))


def _predict_request(tasks, label_config=CONFIG):
    # as label_studio/ml/api_connector.py MLApi._prep_prediction_req builds it
    return {"tasks": tasks, "project": "1.1764583200", "label_config": label_config,
            "params": {"login": None, "password": None, "context": None}}


def _ls_task(id, image, **data):
    # a task as Label Studio serializes it for the ML backend
    return {"id": id, "data": {"image": image, **data}, "meta": {}, "annotations": [],
            "predictions": [], "drafts": [], "created_at": "2026-12-01T09:00:00.000000Z",
            "updated_at": "2026-12-01T09:00:00.000000Z", "is_labeled": False,
            "overlap": 1, "inner_id": id, "total_annotations": 0, "cancelled_annotations": 0,
            "total_predictions": 0, "comment_count": 0, "unresolved_comment_count": 0,
            "last_comment_updated_at": None, "project": 1, "updated_by": None,
            "file_upload": None, "comment_authors": []}


def test_health(client):
    for path in ("/health", "/"):
        r = client.get(path)
        assert r.status_code == 200
        assert r.json()["status"] == "UP" and r.json()["model_class"] == "Predictor"


def test_setup_answers_the_model_version(client):
    r = client.post("/setup", json={
        "project": "1.1764583200", "schema": CONFIG, "hostname": "http://localhost:8080",
        "access_token": "abc", "extra_params": None})
    assert r.status_code == 200
    assert r.json() == {"model_version": "skpeal-round-2"}


def test_setup_refuses_a_config_without_the_classes(client):
    r = client.post("/setup", json={"project": "1.1", "schema": labeling_config(["Bag"])})
    assert r.status_code == 422
    assert "lacks the classes ['T-shirt/top', 'Trouser']" in r.json()["detail"]
    r = client.post("/setup", json={"project": "1.1", "schema": "<View><Text name='t' "
                                    "value='$text'/></View>"})
    assert r.status_code == 422 and "no <Choices>" in r.json()["detail"]
    r = client.post("/setup", json={"project": "1.1"})
    assert r.status_code == 422 and "schema" in r.json()["detail"]


def test_predict_answers_one_result_per_task(client, predictor):
    tasks = [_ls_task(7, "/data/upload/1/bag.png", **{ID_KEY: "img-7"}),
             _ls_task(8, "/data/upload/1/trouser.png")]
    r = client.post("/predict", json=_predict_request(tasks))
    assert r.status_code == 200
    assert r.json() == {"results": [
        {"result": [{"from_name": "choice", "to_name": "image", "type": "choices",
                     "value": {"choices": ["Bag"]}}],
         "score": 0.25, "model_version": "skpeal-round-2"},
        {"result": [{"from_name": "choice", "to_name": "image", "type": "choices",
                     "value": {"choices": ["Trouser"]}}],
         "score": 0.5, "model_version": "skpeal-round-2"},
    ]}
    assert predictor.seen[0] == TaskImage("/data/upload/1/bag.png", 7)
    assert predictor.seen[0].image_id == "img-7" and predictor.seen[1].image_id is None


def test_predict_uses_the_names_of_the_config(client):
    xml = labeling_config(CLASSES, from_name="cls", to_name="pic", data_key="url")
    tasks = [{"id": 1, "data": {"url": "bag.png"}}]
    res = client.post("/predict", json=_predict_request(tasks, xml)).json()["results"][0]
    assert (res["result"][0]["from_name"], res["result"][0]["to_name"]) == ("cls", "pic")
    # a request without label_config uses the config of the project's /setup
    assert client.post("/setup", json={"project": "5.99", "schema": xml}).status_code == 200
    r = client.post("/predict", json={"tasks": tasks, "project": "5.99"})
    assert r.json()["results"][0]["result"][0]["from_name"] == "cls"


def test_predict_per_prediction_model_version():
    app = ml_backend_app(lambda images: [("cat", 0.5, "v9") for _ in images])
    r = TestClient(app).post("/predict", json={"tasks": [{"id": 1, "data": {"image": "x"}}]})
    assert r.json()["results"][0]["model_version"] == "v9"


@pytest.mark.parametrize(
    "body, status, match",
    [
        (b"{not json", 400, "not JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b"{}", 422, "tasks"),
        (json.dumps({"tasks": []}).encode(), 422, "non-empty list"),
        (json.dumps({"tasks": [{"id": 3}]}).encode(), 422, "task 3 has no 'data'"),
        (json.dumps({"tasks": [{"id": 4, "data": {"text": "hi"}}]}).encode(), 422,
         "task 4: its data has no image under 'image'"),
        (json.dumps({"tasks": [{"id": 1, "data": {"image": "a"}}],
                     "label_config": "<View"}).encode(), 422, "not valid XML"),
        (json.dumps({"tasks": [{"id": 1, "data": {"image": "a"}}], "label_config": 5}).encode(),
         422, "label_config"),
    ],
)
def test_predict_bad_requests_get_4xx_and_reach_no_model(client, predictor, body, status,
                                                         match):
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    assert match in json.dumps(r.json()["detail"])
    assert predictor.seen == []


def test_predict_limits_the_body_and_chunks_any_number_of_tasks(predictor):
    client = TestClient(ml_backend_app(predictor, max_tasks=2, max_body=2000))
    r = client.post("/predict", json={"tasks": [{"id": 0, "data": {"image": "a"}}],
                                      "pad": "x" * 3000})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    assert predictor.seen == []
    # 1,001 tasks (Label Studio's "Retrieve Predictions" on a big selection): all answered
    client = TestClient(ml_backend_app(predictor, max_tasks=100))
    tasks = [{"id": i, "data": {"image": f"{i}.png"}} for i in range(1001)]
    r = client.post("/predict", json={"tasks": tasks})
    assert r.status_code == 200 and len(r.json()["results"]) == 1001


def test_predict_refuses_a_model_label_outside_the_config():
    app = ml_backend_app(lambda images: [("Sandal", 0.5) for _ in images])
    r = TestClient(app).post("/predict", json=_predict_request([_ls_task(1, "a.png")]))
    assert r.status_code == 422 and "'Sandal' is not a choice" in r.json()["detail"]


def _webhook(action, label="Bag", **ann_kw):
    # as label_studio/webhooks/utils.py emits it for ANNOTATION_CREATED / UPDATED
    annotation = _ann(31, label, "2026-12-01T12:00:00.000000Z", task=7, project=1,
                      lead_time=3.2, **ann_kw)
    return {"action": action, "annotation": annotation,
            "task": _ls_task(7, "/data/upload/1/bag.png", **{ID_KEY: "img-7"}),
            "project": {"id": 1, "title": "shoes", "label_config": CONFIG}}


@pytest.mark.parametrize("action", ["ANNOTATION_CREATED", "ANNOTATION_UPDATED"])
def test_webhook_hands_new_annotations_to_the_predictor(client, predictor, action):
    r = client.post("/webhook", json=_webhook(action))
    assert r.status_code == 201
    assert r.json() == {"status": "ok", "result": {"task": 7, "label": "Bag"}}
    (image, label, annotation), = predictor.annotations
    assert image.image_id == "img-7" and image.task_id == 7 and label == "Bag"
    assert annotation["completed_by"] == 1 and annotation["id"] == 31


def test_webhook_ignores_cancelled_and_other_actions(client, predictor):
    r = client.post("/webhook", json=_webhook("ANNOTATION_CREATED", was_cancelled=True))
    assert r.status_code == 200 and r.json()["status"] == "skipped"
    for action in ("PROJECT_UPDATED", "TASKS_CREATED"):
        r = client.post("/webhook", json={"action": action, "project": {"id": 1}})
        assert r.status_code == 200 and r.json() == {"status": "Unknown event"}
    # a predictor without remove_annotations acknowledges deletions and ignores them
    r = client.post("/webhook", json={"action": "ANNOTATIONS_DELETED",
                                      "annotations": [{"id": 1}]})
    assert r.status_code == 200 and r.json()["status"] == "ignored"
    assert predictor.annotations == []


def test_webhook_start_training_calls_train(client, predictor):
    r = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    assert r.status_code == 201 and r.json() == {"status": "ok", "result": {"rounds": 1}}
    assert predictor.trained == 1


@pytest.mark.parametrize(
    "body, match",
    [
        ({"project": {"id": 1}}, "action"),
        ({"action": "ANNOTATION_CREATED"}, "'annotation' and 'task'"),
        (_webhook("ANNOTATION_CREATED", label="Sandal"), "label 'Sandal' is not one"),
        (_webhook("ANNOTATION_CREATED", label=["Bag", "Trouser"]), "2 choices"),
    ],
)
def test_webhook_bad_requests(client, predictor, body, match):
    r = client.post("/webhook", json=body)
    assert r.status_code == 422 and match in r.json()["detail"]
    assert predictor.annotations == []


def test_webhook_without_add_annotation_acknowledges():
    app = ml_backend_app(lambda images: [])
    r = TestClient(app).post("/webhook", json=_webhook("ANNOTATION_CREATED"))
    assert r.status_code == 200 and r.json()["status"] == "ignored"


def test_basic_auth(predictor):
    client = TestClient(ml_backend_app(predictor, basic_auth=("ls", "s3cret")))
    assert client.get("/health").status_code == 401
    bad = base64.b64encode(b"ls:wrong").decode()
    assert client.get("/health", headers={"Authorization": f"Basic {bad}"}).status_code == 401
    good = base64.b64encode(b"ls:s3cret").decode()
    assert client.get("/health", headers={"Authorization": f"Basic {good}"}).status_code == 200
    with pytest.raises(ValueError, match="basic_auth"):
        ml_backend_app(predictor, basic_auth=("ls", ""))


def test_predictor_must_predict():
    with pytest.raises(TypeError, match="predict"):
        ml_backend_app(object())


# ----------------------------------------------------------------------- recorded requests
# What a real Label Studio (1.23.2) sent to skpeal's backend and exported, recorded by
# the end-to-end test: the endpoints and the import must take them as they are.
RECORDED = json.loads((Path(__file__).parent / "data" / "label_studio_1.23.2.json").read_text())


def test_recorded_setup(client):
    r = client.post("/setup", json=RECORDED["setup"])
    assert r.status_code == 200 and r.json() == {"model_version": "skpeal-round-2"}


def test_recorded_predict(client, predictor):
    body = RECORDED["predict"]
    r = client.post("/predict", json=body)
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == len(body["tasks"])
    assert [im.image_id for im in predictor.seen] == [t["data"][ID_KEY] for t in body["tasks"]]
    assert [im.task_id for im in predictor.seen] == [t["id"] for t in body["tasks"]]
    for res in results:
        assert set(res) == {"result", "score", "model_version"}
        assert res["result"][0]["value"]["choices"][0] in CLASSES


def test_recorded_webhook(client, predictor):
    r = client.post("/webhook", json=RECORDED["webhook"])
    assert r.status_code == 201
    (image, label, annotation), = predictor.annotations
    assert (image.image_id, label) == ("img-1", "Trouser")
    assert annotation["completed_by"] == 1


def test_recorded_export():
    got = {x.key: x.label for x in import_labels(RECORDED["export"], classes=CLASSES)}
    assert got == {"img-0": "Bag", "img-1": "Trouser", "img-2": "Trouser",
                   "img-4": "T-shirt/top"}
