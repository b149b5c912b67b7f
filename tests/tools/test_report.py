"""The report on a small real results directory: the planted changes are in it, triage moves them in and
out of the headline, machines stay apart, and bad files or triage entries are named while the rest is
reported."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest

from tests.tools import site_data
from tools import detect, error_rates, mtb, report, site
from tools import timeline as tl

SETTINGS = detect.Settings()
SOFTMAX = "ops.normalization.Softmax.time_forward"
ARGMAX = "ops.reductions.Argmax.time_forward"  # slowed 2x at 'planted': the step found at this VM's noise


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return site_data.make(tmp_path / "site")


def _planted(built: report.Report) -> list[dict]:
    return [
        c for m in built.machines for c in m.changes if c["point"] == "planted" and c["kind"] == "regression"
    ]


def test_the_planted_slowdown_heads_the_report_with_its_ratio_change(config, tmp_path):
    built = report.build(config, tmp_path / "triage.toml", SETTINGS)
    (machine,) = built.machines
    assert machine.points == ["aa-1", "aa-2", "planted"]
    argmax = [c for c in _planted(built) if c["benchmark"] == ARGMAX]
    timings = [c for c in argmax if c["unit"] == "seconds"]
    ratios = [c for c in argmax if c["unit"] == "ratio"]
    assert timings and all("mlx-cpu" in c["params"] and c["evidence"] == "processes" for c in timings)
    assert ratios and all("mlx-cpu/torch-cpu" in c["params"] for c in ratios)
    assert all(1.6 < c["ratio"] < 2.4 and c["headline"] for c in argmax)
    assert all(c["ci_low"] > 1 + c["band"] for c in argmax), "the interval clears the band"
    assert all(c["other"] and "torch-cpu" in c["other"] for c in timings), "torch's figure beside MLX's"
    families = {(s.family, s.dtype) for s in machine.standing}
    assert ("ops: normalization", "float32") in families
    assert all(s.point == "planted" and s.geometric_mean > 0 for s in machine.standing)
    markdown = report.to_markdown(built)
    assert "## Machine vm" in markdown and ARGMAX in markdown and "| mlx-cpu/torch-cpu |" in markdown
    as_json = json.loads(json.dumps(built.as_json()))
    assert as_json["machines"][0]["changes"][0]["point"] == "planted", "newest first"


def test_triage_moves_a_change_out_of_the_headline_but_keeps_it_listed(config, tmp_path):
    triage_file = tmp_path / "triage.toml"
    before = report.build(config, triage_file, SETTINGS)
    regressions = before.untriaged_regressions()
    assert regressions
    first, rest = regressions[0], regressions[1:]
    entries = [
        f'[[change]]\nseries = "{first["series"]}"\npoint = "planted"\nstatus = "ignored"\n'
        'reason = "planted"\n'
    ]
    entries += [
        f'[[change]]\nseries = "{c["series"]}"\npoint = "planted"\nstatus = "expected"\n' for c in rest
    ]
    triage_file.write_text("\n".join(entries))
    after = report.build(config, triage_file, SETTINGS)
    assert after.problems == [] and after.untriaged_regressions() == []
    assert first["series"] not in {c["series"] for c in after.headline() if c["unit"] == first["unit"]}
    listed = {c["series"]: c for m in after.machines for c in m.changes}
    assert listed[first["series"]]["triage"]["status"] == "ignored"
    markdown = report.to_markdown(after)
    assert f"### {report.NOT_IN_HEADLINE}" in markdown and "triage: ignored, planted" in markdown


def test_fail_on_untriaged_exits_1_until_every_regression_is_triaged(config, tmp_path):
    triage_file = tmp_path / "triage.toml"
    args = ["report", "--config", str(config), "--triage", str(triage_file), "--fail-on-untriaged"]
    assert mtb.main([*args, "--markdown", str(tmp_path / "r.md")]) == 1
    regressions = report.build(config, triage_file, SETTINGS).untriaged_regressions()
    triage_file.write_text(
        "\n".join(
            f'[[change]]\nseries = "{c["series"]}"\npoint = "{c["point"]}"\nstatus = "acknowledged"\n'
            for c in regressions
        )
    )
    assert mtb.main([*args, "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["machines"][0]["machine"] == "vm"


def test_machines_are_reported_apart_and_never_share_a_series(config, tmp_path):
    results = Path(json.loads(config.read_text())["results_dir"])
    other = results / "gpu-box"
    shutil.copytree(results / "vm", other)
    for path in other.glob("*-*.json"):
        data = json.loads(path.read_text())
        data["params"]["machine"] = "gpu-box"
        data["results"] = {
            name: [*row[:11], [[v * 0.25 for v in s] if s else s for s in row[11]]]
            for name, row in data["results"].items()
            if len(row) > 11
        }
        path.write_text(json.dumps(data))
    built = report.build(config, tmp_path / "triage.toml", SETTINGS)
    assert [m.machine for m in built.machines] == ["gpu-box", "vm"]
    for m in built.machines:
        assert {s.machine for s in m.series.values()} == {m.machine}
        assert all(c["machine"] == m.machine for c in m.changes)
        assert {s.machine for s in m.standing} == {m.machine}
    gpu, vm = built.machines
    assert [c["series"] for c in gpu.changes] == [c["series"] for c in vm.changes], (
        "a scaled copy: same changes"
    )
    gpu_time, vm_time = (next(c for c in m.changes if c["unit"] == "seconds") for m in (gpu, vm))
    assert gpu_time["before"] == pytest.approx(vm_time["before"] * 0.25, rel=1e-6)
    html = tmp_path / "html"
    report.write_site(built, html, tmp_path / "facts")
    plots = {c["plot"] for m in built.machines for c in m.changes}
    assert len(plots) == sum(len(m.changes) for m in built.machines), "one plot per change and machine"
    assert all((html / "mtb" / "plots" / p).is_file() for p in plots)


def test_bad_results_and_triage_entries_are_named_and_the_rest_is_reported(config, tmp_path):
    results = Path(json.loads(config.read_text())["results_dir"]) / "vm"
    files = sorted(p for p in results.glob("*-*.json"))
    files[0].write_text(files[0].read_text()[:500])  # a partial file
    data = json.loads(files[1].read_text())
    data["version"] = 3
    files[1].write_text(json.dumps(data))
    triage_file = tmp_path / "triage.toml"
    triage_file.write_text(
        f'[[change]]\nseries = "{SOFTMAX}(nope)"\npoint = "planted"\nstatus = "ignored"\n'
        f'\n[[change]]\nseries = "x"\npoint = "mlx-9.9"\nstatus = "acknowledged"\n'
    )
    built = report.build(config, triage_file, SETTINGS)
    text = "\n".join(built.problems)
    assert f"{files[0]}: not an asv results file (JSONDecodeError: " in text and "line 1 column" in text
    assert f"{files[1]}: asv results format 3; this reads version 2" in text
    assert f"{triage_file}: [[change]] #1 ({SOFTMAX}(nope) at planted): no such series" in text
    assert (
        f"{triage_file}: [[change]] #2 (x at mlx-9.9): point 'mlx-9.9' is not a point of the timeline" in text
    )
    (machine,) = built.machines
    left = {tuple(i for i, x in enumerate(s.samples) if x) for s in machine.series.values()} - {()}
    assert left == {(machine.points.index(_tag_of(config, files[2])),)}, "only the readable point is reported"
    assert report.to_markdown(built).count("> problem: ") == 5  # two files, entry #1 once, entry #2 twice


def _tag_of(config: Path, path: Path) -> str:
    repo = Path(json.loads(config.read_text())["repo"])
    return next(p["tag"] for p in tl.read_points(repo) if path.name.startswith(p["commit"][:8]))


def test_our_pages_are_linked_from_asvs_navigation_once(tmp_path):
    html = tmp_path / "html"
    html.mkdir()
    (html / "index.html").write_text(
        '<body><nav><ul>\n\t<li id="nav-li-regressions"><a href="#/regressions">Regressions</a></li>\n'
        "</ul></nav>"
    )
    assert site.link_our_pages(html) and site.link_our_pages(html)
    page = (html / "index.html").read_text()
    assert page.count(site.OUR_LINK) == 1 and page.index("nav-li-regressions") < page.index("nav-li-mtb")
    (html / "index.html").write_text("<body>no asv navigation</body>")
    assert not site.link_our_pages(html)
    assert site.OUR_ANCHOR in (html / "index.html").read_text()


def test_the_real_aa_pair_flags_nothing_and_the_planted_point_only_planted_series(config, tmp_path):
    """aa-1 and aa-2 ran the same releases one after the other: no change between them.  At 'planted'
    only the slowed mlx-cpu functions' series may be flagged, and only as regressions."""
    built = report.build(config, tmp_path / "triage.toml", SETTINGS)
    (machine,) = built.machines
    assert [c for c in machine.changes if c["point"] == "aa-2"] == []
    planted_benchmarks = {benchmark for _, benchmark in error_rates.DEFAULT_PLAN.values()}
    for change in machine.changes:
        assert change["benchmark"] in planted_benchmarks and change["kind"] == "regression", change["series"]
        assert any(p.startswith("mlx-cpu") for p in change["params"]), change["series"]


def test_a_point_where_the_held_framework_moved_is_not_trusted(config, tmp_path):
    """Both frameworks were held between aa-1 and aa-2; make every torch-cpu series at aa-2 3x slower (a
    busy machine: torch-cpu's two OpenMP threads read 10x on this VM beside a CI run) and the changes
    at aa-2 leave the headline, each saying why, while the check names the backend and the factor.  At
    'planted' a package outside the frameworks changed, so nothing is held there."""
    before = report.build(config, tmp_path / "triage.toml", SETTINGS)
    assert [c.disturbed for c in before.machines[0].checks] == [False, False]
    assert {c.point for c in before.machines[0].checks} == {"aa-2"}
    drift = next(c.drift for c in before.machines[0].checks if c.backend == "torch-cpu")
    conf = json.loads(config.read_text())
    commit = next(p["commit"] for p in tl.read_points(Path(conf["repo"])) if p["tag"] == "aa-2")
    path = mtb.results_store.point_file(Path(conf["results_dir"]), commit, "vm")
    data = json.loads(path.read_text())
    for row in data["results"].values():
        combos = list(itertools.product(*row[1]))
        row[11] = [
            [v * 3 for v in s] if s and "'torch-cpu'" in combo else s
            for s, combo in zip(row[11], combos, strict=True)
        ]
    path.write_text(json.dumps(data))
    built = report.build(config, tmp_path / "triage.toml", SETTINGS)
    (machine,) = built.machines
    changed = [c for c in machine.checks if c.disturbed]
    assert [(c.point, c.backend) for c in changed] == [("aa-2", "torch-cpu")]
    assert changed[0].drift == pytest.approx(3 * drift, rel=1e-6)
    at_aa2 = [c for c in machine.changes if c["point"] == "aa-2"]
    assert at_aa2, "torch-cpu's series all read 3x"
    assert not any(c["headline"] for c in at_aa2)
    assert all("torch-cpu (its framework held) moved x" in c["machine_changed"] for c in at_aa2)
    assert any(c["headline"] for c in machine.changes if c["point"] == "planted"), "planted is not affected"
    assert "- **changed**: torch-cpu (its framework held) moved x" in report.to_markdown(built)


def test_only_frameworks_whose_pins_all_stayed_are_held():
    mlx_release = ({"mlx": "0.32.2", "mlx-cpu": "0.32.2", "mlx-lm": "0.32.2", "torch": "2.13.0"},
                   {"mlx": "0.32.3", "mlx-cpu": "0.32.3", "mlx-lm": "0.32.2", "torch": "2.13.0"})  # fmt: skip
    assert report.held_frameworks(*mlx_release) == {"torch"}
    assert report.held_frameworks({"torch": "2.12.0"}, {"torch": "2.13.0"}) == {"mlx"}
    assert report.held_frameworks({"mlx": "1", "x": "1"}, {"mlx": "1", "x": "2"}) == set(), (
        "x could move either"
    )
    assert report.held_frameworks({"mlx": "1"}, {"mlx": "1"}) == {"mlx", "torch"}


def test_asvs_site_keeps_a_gpu_machine_with_other_parameters_beside_the_cpu_machine(config, tmp_path):
    """A GPU host records other backends (and a GPU-only dtype) than the CPU machine, and the benchmark
    list of a fresh CPU run names only the CPU's: published, each machine keeps its own graphs."""
    import subprocess
    import sys

    from tools import results as results_store

    results = Path(json.loads(config.read_text())["results_dir"])
    gpu = results / "cuda-box"
    shutil.copytree(results / "vm", gpu)
    renamed = {"'mlx-cpu'": "'mlx-gpu'", "'torch-cpu'": "'torch-cuda'", "'torch-compile'": "'torch-cuda'"}
    for path in gpu.glob("*-*.json"):
        data = json.loads(path.read_text())
        data["params"]["machine"] = "cuda-box"
        columns = data["result_columns"]
        for row in data["results"].values():
            params = row[columns.index("params")]
            if params:
                params[-1] = list(dict.fromkeys(renamed.get(v, v) for v in params[-1]))
                row[columns.index("result")] = (row[columns.index("result")] or [])[: _count(params)]
                for name in ("samples", *(c for c in columns if c.startswith("stats_"))):
                    if name in columns and row[columns.index(name)]:
                        row[columns.index(name)] = row[columns.index(name)][: _count(params)]
        path.write_text(json.dumps(data))
    (gpu / "machine.json").write_text(json.dumps({"machine": "cuda-box", "version": 1}))
    before = json.loads((results / "benchmarks.json").read_text())[SOFTMAX]["params"][-1]
    assert "'mlx-gpu'" not in before
    assert results_store.widen_benchmark_list(results)
    after = json.loads((results / "benchmarks.json").read_text())[SOFTMAX]["params"][-1]
    assert after[: len(before)] == before and {"'mlx-gpu'", "'torch-cuda'"} <= set(after)
    assert not results_store.widen_benchmark_list(results), "a second pass changes nothing"
    out = subprocess.run(
        [sys.executable, "-m", "asv", "publish", "--config", str(config)],
        cwd=config.parent, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    html = Path(json.loads(config.read_text())["html_dir"])
    index = json.loads((html / "index.json").read_text())
    assert {"vm", "cuda-box"} <= set(index["params"]["machine"])
    combos = list(
        itertools.product(*json.loads((results / "benchmarks.json").read_text())[SOFTMAX]["params"])
    )

    def backends_drawn(machine: str) -> set[str]:
        (graph,) = [p for p in (html / "graphs").rglob(f"{SOFTMAX}.json") if f"machine-{machine}" in str(p)]
        drawn = set()
        for _, values in json.loads(graph.read_text()):
            drawn |= {combo[-1] for combo, v in zip(combos, values, strict=True) if v is not None}
        return drawn

    assert backends_drawn("vm") == {"'mlx-cpu'", "'torch-cpu'", "'torch-compile'"}
    assert backends_drawn("cuda-box") == {"'mlx-gpu'", "'torch-cuda'"}, "each machine its own lines"


def _count(params: list[list[str]]) -> int:
    return len(list(itertools.product(*params)))


def test_the_facts_page_lists_backends_from_run_facts_not_the_files_kept_beside_them(tmp_path):
    # the side files' names, written out: the readers and writers of facts/ all go through beside()
    from benchmarks.harness import facts

    run_facts = tmp_path / "cuda-h200" / "e0ac29bf-existing.jsonl"
    run_facts.parent.mkdir()
    run_facts.write_text(json.dumps({"backend": "torch-cuda", "recorded_at": "2026-12-01T10:00:00"}) + "\n")
    clocks, skips = (run_facts.with_name(f"e0ac29bf-existing.{kind}.jsonl") for kind in ("clocks", "skips"))
    assert (facts.beside(run_facts, "clocks"), facts.beside(run_facts, "skips")) == (clocks, skips)
    clocks.write_text(json.dumps({"benchmark": "GELU", "phase": "before"}) + "\n")
    skips.write_text(json.dumps({"benchmark": "GELU", "reason": "r"}) + "\n")
    assert facts.side_files(tmp_path, "skips") == [skips] == facts.side_files(tmp_path, "skips", "cuda-h200")
    listed = {host: list(backends) for host, backends in report.latest_facts(tmp_path).items()}
    assert listed == {"cuda-h200": ["torch-cuda"]}
    with pytest.raises(ValueError, match="unknown side file 'notes'"):
        facts.beside(run_facts, "notes")
