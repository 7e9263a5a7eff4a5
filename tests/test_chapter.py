"""The chapter API (mmlib.chapter): declared artifact names, the TrainingRecord, and a Chapter built on a
hand-made pipeline context (paths, saving, parameter checks, modality orders, saved networks)."""
import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest

from mmlib import chapter, train
from mmlib.pipeline import Context

TINY = dict(width=8, heads=2, max_epochs=2, batch_size=64)


# ------------------------------------------------------------------------------------------ artifact_name
def test_artifact_name_fills_the_pattern():
    assert chapter.artifact_name("02", "embeddings", cohort="mds_ed") == "embeddings_mds_ed.npz"
    assert chapter.artifact_name("04", "models", cohort="mimic_eye") == "models_mimic_eye.pt"
    assert chapter.artifact_name("03", "summary") == "summary.parquet"
    assert chapter.artifact_name("03", "findings") == "summary.json"
    # a pattern without {cohort} ignores extra keywords
    assert chapter.artifact_name("03", "config", cohort="x") == "config.json"


def test_artifact_name_errors_name_what_is_declared():
    declared = "['config', 'findings', 'predictions', 'summary', 'training_log']"
    with pytest.raises(KeyError, match=re.escape("chapter 03 declares no artifact 'nope'")) as e:
        chapter.artifact_name("03", "nope")
    assert declared in str(e.value)
    with pytest.raises(KeyError, match=re.escape("chapter 99 declares no artifact 'summary'") + ".*declares \\[\\]"):
        chapter.artifact_name("99", "summary")
    with pytest.raises(KeyError, match=re.escape("artifact 'embeddings' of chapter 02 (embeddings_{cohort}.npz) "
                                                 "needs cohort=...")):
        chapter.artifact_name("02", "embeddings")


# ----------------------------------------------------------------------------------------- TrainingRecord
def _record(**kw):
    base = dict(config=train.config_dict(train.TrainConfig(**TINY)), seeds=[0, 1], models=["paper", "late"],
                race_grouping="race_binary")
    return chapter.TrainingRecord(**(base | kw))


def test_training_record_json_round_trip_keeps_extra():
    rec = _record(orders={"toy": ("good", "noise")}, every_order=False, extra={"note": "demo", "n": 3})
    blob = rec.to_json()
    assert blob["orders"] == {"toy": ["good", "noise"]}, "orders become lists"
    assert blob["every_order"] is False, "False is recorded (only None is left out)"
    assert blob["note"] == "demo" and blob["n"] == 3, "extra keys sit at the top level"
    assert blob["seeds"] == [0, 1] and blob["models"] == ["paper", "late"] and blob["race_grouping"] == "race_binary"
    back = chapter.TrainingRecord.from_json(json.loads(json.dumps(blob)))
    assert back.extra == {"note": "demo", "n": 3}
    assert back.orders == {"toy": ["good", "noise"]}
    assert back == dataclasses.replace(rec, orders={"toy": ["good", "noise"]})
    # optional fields left at their defaults are not written, and read back as the defaults
    bare = chapter.TrainingRecord({"lr": 0.1}, [3], ["linear"])
    assert bare.to_json() == {"config": {"lr": 0.1}, "seeds": [3], "models": ["linear"]}
    assert chapter.TrainingRecord.from_json(bare.to_json()) == bare


def test_training_record_from_json_names_missing_keys_and_path():
    with pytest.raises(ValueError, match=re.escape("build/04/config.json: training record lacks ['seeds', 'models']")):
        chapter.TrainingRecord.from_json({"config": {}}, "build/04/config.json")


def test_training_record_order():
    rec = _record(orders={"toy": ["noise", "good"]})
    order = rec.order("toy")
    assert isinstance(order, train.ModalityOrder)
    assert order == ("noise", "good") and order.full == "noise+good"
    with pytest.raises(KeyError, match=re.escape("no modality order for cohort 'mds_ed' (it has ['toy'])")):
        rec.order("mds_ed")


def test_same_training():
    cfg = train.TrainConfig(**TINY)
    rec = chapter.TrainingRecord.from_json(json.loads(json.dumps(_record().to_json())))
    assert rec.same_training(cfg, [0, 1])
    assert rec.same_training(cfg, (0, 1)), "any sequence of the same seeds"
    assert not rec.same_training(dataclasses.replace(cfg, lr=0.01), [0, 1]), "a changed configuration key"
    assert not rec.same_training(cfg, [0, 2]), "changed seeds"
    assert not rec.same_training(cfg, [0]), "fewer seeds"
    assert rec.same_training(dataclasses.replace(cfg, device="cpu"), [0, 1], ignore=("device",)), "an ignored key"
    assert not rec.same_training(dataclasses.replace(cfg, device="cpu"), [0, 1], ignore=("lr",))
    assert rec.same_training(cfg, [0, 1], race_grouping="race_binary")
    assert not rec.same_training(cfg, [0, 1], race_grouping="race5"), "a different race grouping"
    assert chapter.TrainingRecord(rec.config, [0, 1], ["paper"]).same_training(cfg, [0, 1]), \
        "the race grouping is compared only when given"


# ------------------------------------------------------------------------------------------------ Chapter
@pytest.fixture
def make_chapter(tmp_path):
    """``make_chapter(params, chapter="03", upstream=("01", "02"))``: a Chapter on a hand-made Context whose
    upstream folders exist under ``tmp_path``."""

    def make(params=None, chapter_id="03", upstream=("01", "02")):
        for u in upstream:
            (tmp_path / u).mkdir(exist_ok=True)
        ctx = Context(chapter=chapter_id, out=tmp_path / chapter_id, inputs={u: tmp_path / u for u in upstream},
                      params=dict(params or {}))
        return chapter.Chapter(ctx)

    return make


def test_chapter_paths_of_own_and_upstream_artifacts(make_chapter, tmp_path):
    ch = make_chapter({"cohorts": ["toy"]})
    assert ch.id == "03" and ch.params["cohorts"] == ["toy"] and ch.cohort_names == ["toy"]
    assert ch.path("03", "summary") == tmp_path / "03" / "summary.parquet"
    assert ch.path("02", "embeddings", cohort="toy") == tmp_path / "02" / "embeddings_toy.npz"
    assert ch.path("01", "cohort", cohort="mds_ed") == tmp_path / "01" / "cohort_mds_ed"
    with pytest.raises(KeyError, match="does not declare chapter 04"):
        ch.path("04", "config")
    with pytest.raises(KeyError, match="declares no artifact 'embeddings'"):
        ch.path("03", "embeddings")
    gone = chapter.Chapter(Context("03", tmp_path / "03", {"02": tmp_path / "absent"}, {}))
    with pytest.raises(RuntimeError, match=re.escape("run `python -m mmlib run 02` first")):
        gone.path("02", "summary")


def test_chapter_save_frame_dict_and_record(make_chapter, tmp_path):
    ch = make_chapter()
    df = pd.DataFrame({"metric": ["auroc", "f1"], "mean": [0.8, 0.5]})
    p = ch.save("summary", df)
    assert p == tmp_path / "03" / "summary.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(p), df)
    pd.testing.assert_frame_equal(ch.frame("03", "summary"), df)
    p = ch.save("findings", {"b": 2, "a": [1, 2]})
    assert p.name == "summary.json" and json.loads(p.read_text()) == {"a": [1, 2], "b": 2}
    rec = _record(extra={"note": "x"})
    p = ch.save("config", rec)
    assert json.loads(p.read_text()) == rec.to_json()
    assert ch.training_record("03") == rec
    with pytest.raises(TypeError, match="artifact 'summary': cannot write a list"):
        ch.save("summary", [1, 2])
    with pytest.raises(KeyError, match="declares no artifact 'nope'"):
        ch.save("nope", df)


def test_chapter_checks_list_parameters(make_chapter):
    ch = make_chapter({"metrics": ["auroc", "bogus", "f1", "nope"], "fusion_models": ["paper", "gpt", "linear"],
                       "ok_models": ["late", "logreg"]})
    assert ch.choices("metrics", ["auroc", "f1", "bogus", "nope"]) == ["auroc", "bogus", "f1", "nope"]
    with pytest.raises(ValueError, match=re.escape("parameter metrics: unknown ['bogus', 'nope']; "
                                                   "expected some of ['auroc', 'f1']")):
        ch.choices("metrics", ("auroc", "f1"))
    assert ch.models("ok_models") == ["late", "logreg"]
    with pytest.raises(ValueError, match=re.escape("parameter fusion_models: unknown models ['gpt']")):
        ch.models("fusion_models")


def test_chapter_cohort_display_names():
    assert chapter.Chapter.name("mds_ed") == "MIMIC-IV-Ext-MDS-ED"
    assert chapter.Chapter.name("mimic_eye") == "MIMIC-Eye"
    assert chapter.Chapter.name("toy") == "toy", "an unknown cohort keeps its key"


def test_chapter_orders_are_checked_against_the_data(make_chapter, toy_data):
    ch = make_chapter({"cohorts": ["toy"], "order_toy": ["noise", "good"]})
    ch._cache["fusion_data"] = {"toy": toy_data()}
    orders = ch.orders()
    assert list(orders) == ["toy"]
    assert isinstance(orders["toy"], train.ModalityOrder) and orders["toy"] == ("noise", "good")
    for bad in (["good"], ["good", "good"], ["good", "noise", "cxr"]):
        ch.params["order_toy"] = bad
        with pytest.raises(ValueError, match=re.escape(f"parameter order_toy must name each modality of toy once "
                                                       f"(['good', 'noise']), got {bad}")):
            ch.orders()


def test_chapter_is_real_follows_the_source_parameter_not_the_data(make_chapter, toy_data):
    d = toy_data(n=40)
    ch = make_chapter({"cohorts": ["toy"], "source": "synthetic"})
    ch._cache["fusion_data"] = {"toy": dataclasses.replace(d, origin="real")}
    assert ch.is_real() is False, "the loader checks that the folder agrees with the parameter"
    assert make_chapter({"cohorts": ["toy"], "source": "real"}).is_real() is True


def test_chapter_saved_models(make_chapter, toy_data, tmp_path):
    data = toy_data()
    cfg = train.TrainConfig(**TINY)
    fits = train.run_grid(data, [("paper", ["good", "noise"])], [0, 1], cfg, keep={("paper", "good+noise")},
                          progress=False).fits
    train.save_fits(fits, tmp_path / "04" / "models_toy.pt", cfg)
    (tmp_path / "04" / "config.json").write_text(json.dumps(
        chapter.TrainingRecord(train.config_dict(cfg), [0, 1], ["paper"], orders={"toy": ["good", "noise"]}).to_json()))
    ch = make_chapter({"cohorts": ["toy"], "sweep_models": ["paper"], "more_models": ["paper", "late", "linear"]},
                      chapter_id="05", upstream=("04",))
    saved = ch.saved_models("04", "sweep_models")
    assert saved.seeds == [0, 1]
    assert saved.order("toy") == ("good", "noise")
    got = saved.of("toy", "paper")
    assert [f.seed for f in got] == [0, 1] and all(f.modalities == ["good", "noise"] for f in got)
    te = data.rows("test")
    for f in got:  # the networks come back with their weights
        assert np.allclose(train.predict(f, data.x[te], data.mask[te]),
                           train.predict(fits[("paper", "good+noise", f.seed)], data.x[te], data.mask[te]))
        assert f.threshold == fits[("paper", "good+noise", f.seed)].threshold
    with pytest.raises(ValueError, match=re.escape("parameter more_models: chapter 04 saved no all-modality fits of "
                                                   "['late', 'linear'] for toy (it has ['paper'])")):
        ch.saved_models("04", "more_models")
