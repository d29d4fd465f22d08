"""The GPU session script at toy size on the CPU: every stage reports numbers or the reason it
did not run, the recorded REPA-B/2 run reads back as the training pages read it, and the global
deadline skips the stages it leaves no time for."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--size", "tiny", "--device", "cpu"]


def _session():
    spec = importlib.util.spec_from_file_location("gpu_session", ROOT / "benchmarks/gpu_session.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One whole session at toy size, compilation on (dynamo with the eager backend), the curve
    long enough to be stopped by its budget. Returns (module, returned dict, out folder)."""
    g = _session()
    out, work = tmp_path_factory.mktemp("out"), tmp_path_factory.mktemp("work")
    flags = ["--compile", "--compile-backend", "eager", "--curve-max-steps", "2000"]
    session = g.main([*TINY, "--out", str(out), "--work", str(work), *flags])
    return g, session, out


@pytest.mark.slow
def test_every_stage_reports_its_numbers(tiny_run):
    g, session, out = tiny_run
    assert json.loads((out / "gpu_session.json").read_text()) == json.loads(json.dumps(session))
    stages = session["stages"]
    assert list(stages) == list(g.STAGES)
    assert all(s["status"] == "ok" and s["seconds"] > 0 for s in stages.values()), stages
    assert session["commit"] and session["device"] and session["finished"]
    assert all(not v.startswith("missing") for v in session["imports"].values())

    for name, model in stages["sampling"]["models"].items():
        variants = model["variants"]
        assert list(variants) == ["official", "default", "default_compiled", "bf16"], name
        assert all(v["images_per_s"] > 0 and v["model_rows"] > 0 for v in variants.values())
        assert variants["official"]["samples"] == 2 and variants["default"]["samples"] == 4
        assert variants["default_compiled"]["compiled"] and variants["bf16"]["compiled"]
        # the same noise: the default path (fp32) agrees with the official way to rounding
        for label in ("default", "default_compiled"):
            assert model["agreement"][label]["within_tolerance"], (name, label)
            assert model["agreement"][label]["samples"] == 2
        assert model["agreement"]["bf16"]["finite"]
        assert model["speedup_default_vs_official"] > 0 and model["flops_per_row"] > 0
        assert model["forward_bf16"]["tflops_per_s"] > 0
        assert model["forward_bf16"]["fraction_of_peak"] is None  # no known peak on a CPU
    sit = stages["sampling"]["models"]["sit-xl-2"]["variants"]["official"]
    assert sit["full_sampler_rows_per_image"] == 500  # 250 guided evaluations of 2 rows
    assert stages["sampling"]["matmul_bf16_tflops"] is None

    training = stages["training"]
    assert set(training["variants"]) == {"naive", "trainer", "trainer_compiled"}
    assert all(v["steps_per_s"] > 0 for v in training["variants"].values())
    fastest = max(training["variants"][k]["steps_per_s"] for k in ("trainer", "trainer_compiled"))
    assert training["speedup"] == pytest.approx(
        fastest / training["variants"]["naive"]["steps_per_s"]
    )

    curve = stages["curve"]
    assert curve["stopped_by"] == "time budget" and 2 <= curve["steps"] < 2000
    assert curve["steps"] % curve["log_every"] == 0  # it stops on a logged step
    assert curve["logged_records"] == curve["steps"] // curve["log_every"] + 1
    assert curve["model_config"]["input_size"] == 32 and curve["model_config"]["in_channels"] == 4
    assert (
        0 < curve["classes_npr"]["end"] <= 1 and curve["classes_npr"]["end_step"] == curve["steps"]
    )
    assert (out / "curve.png").stat().st_size > 10_000

    e2e = stages["e2e"]
    assert set(e2e["families"]) == set(g.E2E_FAMILIES) == set(e2e["families_ok"])
    for family, result in e2e["families"].items():
        assert result["status"] == "ok" and result["generate"]["rc"] == 0, family
        assert result["generate"]["samples"] == 12 and result["generate"]["dtype"] == "uint8"
        assert result["generate"]["distinct_images"] > 1 and result["checkpoint"]["bytes"] > 0
    row = e2e["families"]["repa"]["sweep_row"]
    assert row["row"] == g.E2E_ROW and row["finite"] and row["removed"] > 0
    assert all(math.isfinite(row[k]) for k in ("fid", "is_adm", "clip", "precision", "recall"))
    assert e2e["families"]["dit"]["sweep_row"] == {"skipped": "not in --sweep-families"}


@pytest.mark.slow
def test_the_recorded_run_reads_back_as_the_training_pages_read_it(tiny_run, tmp_path):
    from semantic_bottleneck.sections.semantics import recorded_gpu_runs
    from semantic_bottleneck.training import runs

    g, session, out = tiny_run
    curve = session["stages"]["curve"]
    found = runs.recorded_runs(folder=out / "runs")
    assert [r["name"] for r in found] == [g.CURVE_NAME]
    run = found[0]
    assert run["steps"] == curve["steps"] == run["config"]["steps"]
    assert run["records"][-1]["step"] == curve["steps"] and "classes_npr_mean" in run["records"][0]
    assert "batch_npr_mean" in run["records"][-1] and run["config"]["timestep_set"] == 0
    assert "32x32x4" in run["scale"] and run["command"].startswith("python benchmarks/gpu_session")
    assert run["commit"] == session["commit"] and run["stopped_by"] == "time budget"
    # committed under data/runs, it is the Fig. 12 page's GPU run (not Fig. 43's)
    (tmp_path / "_toc.yml").write_text("root: intro\n")
    shutil.copytree(out / "runs", tmp_path / "data" / "runs")
    fig12 = recorded_gpu_runs(False, root=tmp_path)
    assert fig12["figure"] is not None and g.CURVE_NAME in fig12["text"]
    assert fig12["provenance"]["steps"].tolist() == [curve["steps"]]
    assert recorded_gpu_runs(True, root=tmp_path)["figure"] is None


def test_a_spent_deadline_skips_every_stage(tmp_path):
    session = _session().main([*TINY, "--out", str(tmp_path), "--deadline", "0"])
    written = json.loads((tmp_path / "gpu_session.json").read_text())
    assert written["stages"] == json.loads(json.dumps(session["stages"]))
    for report in written["stages"].values():
        assert report["status"] == "skipped" and report["reason"].startswith("global deadline")


def test_a_stage_that_overruns_leaves_the_later_ones_skipped(tmp_path):
    g = _session()
    now = [0.0]
    seen = []
    path = tmp_path / "gpu_session.json"

    def sampling(args, budget, report, flush):
        now[0] += 100
        report["images_per_s"] = 1.0

    def training(args, budget, report, flush):
        seen.append(json.loads(path.read_text())["stages"]["sampling"]["status"])
        raise RuntimeError("out of memory")

    def curve(args, budget, report, flush):
        assert budget.seconds == 50  # its own budget, within what the deadline leaves
        now[0] += 300

    fakes = {"sampling": sampling, "training": training, "curve": curve, "e2e": None}
    g.STAGE_FUNCTIONS.update(fakes)
    args = g.parse_args([*TINY, "--deadline", "400", "--budget-curve", "50"])
    session = {"stages": {}}
    g.run_stages(args, session, lambda: g.write_json(path, session), clock=lambda: now[0])
    stages = json.loads(path.read_text())["stages"]
    assert seen == ["ok"]  # written before the next stage started
    assert stages["sampling"] == {"budget_s": 60.0, "status": "ok", "images_per_s": 1.0,
                                  "seconds": 100.0}  # fmt: skip
    assert (
        stages["training"]["status"] == "error" and "out of memory" in stages["training"]["error"]
    )
    assert stages["curve"]["status"] == "ok" and stages["curve"]["seconds"] == 300
    assert stages["e2e"]["status"] == "skipped" and "0 s of 400 s left" in stages["e2e"]["reason"]


def test_the_xl_checkpoints_and_vae_have_the_official_layouts():
    import torch

    from semantic_bottleneck.generation import vavae
    from semantic_bottleneck.zoo import build_model, registry

    g = _session()
    for family in g.E2E_FAMILIES:
        entry = g.e2e_entry(family)
        with torch.device("meta"):
            model = build_model(entry.family, **entry.config)
        layout = {k: list(v.shape) for k, v in model.state_dict().items()}
        assert layout == registry.read_manifest(entry.manifest)["keys"], family
    shapes = g.ldm_layout(**g.LDM_LAYOUTS["xl"])
    state = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    assert vavae.infer_ldm_config(state) == vavae.VAVAE_F16D32


def test_the_wheels_name_each_package_once():
    names = [w.split("==")[0].lower().replace("-", "_") for w in _session().WHEELS]
    assert len(names) == len(set(names)) and "torch_fidelity" in names


@pytest.mark.slow
def test_families_run_in_their_own_processes(tmp_path):
    flags = ["--stages", "e2e", "--families", "dit", "--e2e-workers", "1", "--sweep-families", ""]
    session = _session().main([*TINY, "--out", str(tmp_path / "out"), *flags])
    families = session["stages"]["e2e"]["families"]
    assert families["dit"]["status"] == "ok" and families["dit"]["generate"]["samples"] == 12
    assert families["sit"] == {"status": "skipped", "reason": "not in --families"}
