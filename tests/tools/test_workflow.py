"""The nightly workflow (.github/workflows/nightly.yml): GitHub's schema accepts it, its references
resolve, it has the shape the README promises, and its results-branch steps work against a real git
remote (two machine kinds pushing to one branch)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"
MACHINE_KINDS = ["linux-cpu", "linux-cuda", "macos-arm64"]
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", flags=re.S)


def schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with its vendored copy of SchemaStore's github-workflows schema (no network)."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def load(text: str) -> dict[str, Any]:
    """The workflow as data: PyYAML where installed, else ruamel.yaml (check-jsonschema brings it)."""
    try:
        import yaml
    except ImportError:
        try:
            from ruamel.yaml import YAML
        except ImportError:
            pytest.skip("no YAML parser (PyYAML or ruamel.yaml) installed")
        return dict(YAML(typ="safe").load(text))
    data = yaml.safe_load(text)
    # YAML 1.1 (PyYAML) reads the key `on` as the boolean true
    if True in data:
        data["on"] = data.pop(True)
    return data


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return load(WORKFLOW.read_text())


def strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return [node] if isinstance(node, str) else []


def reference_problems(wf: dict[str, Any]) -> list[str]:
    """What the schema cannot see: `needs` naming no job, `matrix.X` naming no matrix key, and
    `steps.ID` naming no step before it in the job."""
    problems = []
    jobs = wf["jobs"]
    for name, job in jobs.items():
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            if need not in jobs:
                problems.append(f"{name}: needs {need!r}, which is no job")
        matrix = set((job.get("strategy") or {}).get("matrix") or {}) - {"include", "exclude"}
        steps = job.get("steps", [])
        ids = [s.get("id") for s in steps]
        # the job's own keys may name any step (environment.url names the deploying one); a step,
        # only the steps before it
        scopes = [({k: v for k, v in job.items() if k != "steps"}, set(ids))]
        scopes += [(s, set(ids[:i])) for i, s in enumerate(steps)]
        for scope, known in scopes:
            for text in strings(scope):
                for expression in EXPRESSION.findall(text):
                    for key in re.findall(r"\bmatrix\.([\w-]+)", expression):
                        if key not in matrix:
                            problems.append(f"{name}: matrix.{key} is not in the job's matrix")
                    for step_id in re.findall(r"\bsteps\.([\w-]+)", expression):
                        if step_id not in known:
                            problems.append(f"{name}: steps.{step_id} is no earlier step")
    return problems


def test_schema_accepts_the_workflow():
    done = schema_check(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "ok -- validation done", done.stdout + done.stderr


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("    runs-on: [self-hosted", "    runs-onn: [self-hosted"),  # a key typo
        ("  schedule:", "  schedul:"),  # an event GitHub does not have
        ("    timeout-minutes: 720", "    timeout-minutes: [720]"),  # a value of the wrong type
    ],
)
def test_schema_rejects_a_broken_copy(tmp_path: Path, old: str, new: str):
    text = WORKFLOW.read_text()
    assert text.count(old) == 1, f"the test's anchor {old!r} is not once in the workflow"
    broken = tmp_path / "nightly.yml"
    broken.write_text(text.replace(old, new))
    done = schema_check(broken)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Schema validation errors" in done.stdout


def test_references_resolve(workflow):
    assert reference_problems(workflow) == []


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("group: nightly-measure-${{ matrix.kind }}", "group: x-${{ matrix.nope }}", "matrix.nope"),
        ("    needs: measure", "    needs: [measure, nope]", "needs 'nope'"),
        ("steps.results-branch.outcome", "steps.results-brunch.outcome", "steps.results-brunch"),
    ],
)
def test_broken_references_are_found(old: str, new: str, problem: str):
    text = WORKFLOW.read_text()
    assert text.count(old) == 1, f"the test's anchor {old!r} is not once in the workflow"
    problems = reference_problems(load(text.replace(old, new)))
    assert any(problem in p for p in problems), problems


def test_triggers_nightly_and_by_hand_with_a_profile(workflow):
    on = workflow["on"]
    assert on["schedule"][0]["cron"]
    profile = on["workflow_dispatch"]["inputs"]["profile"]
    assert profile["default"] == "quick"
    assert profile["options"] == ["quick", "full"]
    assert workflow["env"]["MTB_PROFILE"] == "${{ inputs.profile || 'quick' }}"


def test_measure_legs_are_the_three_machine_kinds(workflow):
    measure = workflow["jobs"]["measure"]
    assert measure["strategy"]["matrix"]["kind"] == MACHINE_KINDS
    assert measure["strategy"]["fail-fast"] is False
    assert measure["runs-on"] == ["self-hosted", "${{ matrix.kind }}"]
    assert "${{ matrix.kind }}" in measure["concurrency"]["group"]
    assert measure["concurrency"]["cancel-in-progress"] is False


def test_each_leg_runs_the_suite_its_way(workflow):
    steps = workflow["jobs"]["measure"]["steps"]

    def commands(condition: str) -> str:
        return " ".join(step["run"] for step in steps if "run" in step and step.get("if") == condition)

    cpu = commands("matrix.kind != 'linux-cuda'")
    assert 'pip install -e ".[cpu]"' in cpu
    assert 'python3 -m tools.mtb main --profile "$MTB_PROFILE"' in cpu
    assert "python3 -m tools.mtb gpu --bundle" in commands("matrix.kind == 'linux-cuda'")


def test_publish_follows_every_leg_and_deploys_pages(workflow):
    publish = workflow["jobs"]["publish"]
    assert publish["needs"] == "measure"
    assert publish["if"] == "${{ !cancelled() }}"
    assert publish["runs-on"] == "ubuntu-latest"
    assert publish["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    assert publish["environment"]["name"] == "github-pages"
    commands = " ".join(step.get("run", "") for step in publish["steps"])
    assert commands.index("tools.mtb timeline") < commands.index("tools.mtb publish")
    uses = [step["uses"] for step in publish["steps"] if "uses" in step]
    assert uses[-2:] == ["actions/upload-pages-artifact@v3", "actions/deploy-pages@v4"]


def test_timeline_of_publish_is_the_one_main_measures(workflow):
    from tools import mtb

    commands = " ".join(step.get("run", "") for step in workflow["jobs"]["publish"]["steps"])
    assert f'tools.mtb timeline --mlx-range "{mtb.DEFAULT_MLX_RANGE}"' in commands


def test_permissions_are_least_by_default(workflow):
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["jobs"]["measure"]["permissions"] == {"contents": "write"}


def test_actions_are_pinned_to_a_major_version(workflow):
    uses = {s for job in workflow["jobs"].values() for step in job["steps"] for s in [step.get("uses")] if s}
    assert uses, "no actions used"
    assert uses <= {
        "actions/checkout@v4",
        "actions/setup-python@v5",
        "actions/upload-pages-artifact@v3",
        "actions/deploy-pages@v4",
    }


def test_results_go_to_the_results_branch(workflow):
    assert workflow["env"]["RESULTS_BRANCH"] == "results"
    push = step(workflow, "push-results")["run"]
    assert 'git push origin "HEAD:refs/heads/$RESULTS_BRANCH"' in push
    assert 'git pull --rebase -X theirs origin "$RESULTS_BRANCH"' in push


# The results-branch steps themselves, run by bash against a bare repository standing in for GitHub.


def step(wf: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in wf["jobs"]["measure"]["steps"] if s.get("id") == step_id)


def git(*args: str, cwd: Path) -> str:
    env = dict(os.environ, GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


class Leg:
    """One machine kind's checkout of main, with the environment the runner gives its steps."""

    def __init__(self, wf: dict[str, Any], tmp: Path, origin: Path, kind: str) -> None:
        self.wf, self.kind = wf, kind
        self.work = tmp / kind / "work"
        (tmp / kind).mkdir(parents=True)
        git("clone", "-q", str(origin), str(self.work), cwd=tmp)
        stubs = tmp / kind / "bin"
        stubs.mkdir()
        # the retry loop's back-off, made instant
        (stubs / "sleep").write_text("#!/bin/sh\nexit 0\n")
        (stubs / "sleep").chmod(0o755)
        (tmp / kind / "temp").mkdir()
        self.github_env = tmp / kind / "github_env"
        self.github_env.write_text("")
        self.env = dict(
            os.environ,
            PATH=f"{stubs}{os.pathsep}{os.environ['PATH']}",
            GIT_CONFIG_GLOBAL=os.devnull,
            GIT_CONFIG_NOSYSTEM="1",
            RUNNER_TEMP=str(tmp / kind / "temp"),
            GITHUB_ENV=str(self.github_env),
            GITHUB_WORKSPACE=str(self.work),
            RESULTS_BRANCH=wf["env"]["RESULTS_BRANCH"],
            MTB_PROFILE="quick",
        )

    def run(self, step_id: str) -> subprocess.CompletedProcess[str]:
        values = {"matrix.kind": self.kind, "github.run_id": "1"}
        script = EXPRESSION.sub(lambda m: values[m.group(1).strip()], step(self.wf, step_id)["run"])
        for line in self.github_env.read_text().splitlines():
            key, _, value = line.partition("=")
            self.env[key] = value
        return subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def measure(self, files: dict[str, str]) -> None:
        """Stand-in for the suite: files written under the work tree's results/ and facts/."""
        for name, text in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)


def branch_files(origin: Path) -> dict[str, str]:
    names = git("ls-tree", "-r", "--name-only", "results", cwd=origin).split()
    return {name: git("show", f"results:{name}", cwd=origin) for name in names}


def test_legs_share_the_results_branch(workflow, tmp_path: Path):
    origin = tmp_path / "origin.git"
    git("init", "-q", "--bare", "-b", "main", str(origin), cwd=tmp_path)
    seed = tmp_path / "seed"
    git("init", "-q", "-b", "main", str(seed), cwd=tmp_path)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "main", cwd=seed)
    git("push", "-q", str(origin), "main", cwd=seed)

    # the first night: no results branch yet; both legs find it absent, both create it
    cpu, mac = (Leg(workflow, tmp_path, origin, kind) for kind in ("linux-cpu", "macos-arm64"))
    for leg in (cpu, mac):
        done = leg.run("results-branch")
        assert done.returncode == 0, done.stderr
    cpu.measure(
        {"results/cpu-host/p1.json": "cpu 1", "results/benchmarks.json": "cpu", "facts/cpu-host/a": "x"}
    )
    mac.measure({"results/mac-host/p1.json": "mac 1", "results/benchmarks.json": "mac"})
    for leg in (cpu, mac):
        done = leg.run("push-results")
        assert done.returncode == 0, done.stdout + done.stderr
    assert branch_files(origin) == {
        "facts/cpu-host/a": "x",
        "results/benchmarks.json": "mac",  # the later push's; every run rewrites it
        "results/cpu-host/p1.json": "cpu 1",
        "results/mac-host/p1.json": "mac 1",
    }

    # the next night: the legs see everything recorded before, and add to it
    cpu, mac = (Leg(workflow, tmp_path / "night2", origin, kind) for kind in ("linux-cpu", "macos-arm64"))
    for leg in (cpu, mac):
        assert leg.run("results-branch").returncode == 0
    assert (cpu.work / "results" / "mac-host" / "p1.json").read_text() == "mac 1"
    assert (mac.work / "facts" / "cpu-host" / "a").read_text() == "x"
    cpu.measure({"results/cpu-host/p2.json": "cpu 2", "results/benchmarks.json": "cpu"})
    assert cpu.run("push-results").returncode == 0
    done = mac.run("push-results")  # nothing new on this machine
    assert done.returncode == 0, done.stderr
    assert "nothing new to push" in done.stdout
    files = branch_files(origin)
    assert files["results/cpu-host/p2.json"] == "cpu 2"
    assert files["results/mac-host/p1.json"] == "mac 1"
    assert files["results/benchmarks.json"] == "cpu"
