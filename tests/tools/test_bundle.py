"""The offline GPU bundle: what it downloads, how it splits and joins, and the one-line refusals."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tools import bundle, mtb


def fake_download(requirements, python, dest):
    """Stands in for pip: one small file per requirement, named as pip names wheels."""
    for requirement in requirements:
        name, version = requirement.split("==")
        (dest / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(
            (requirement * 50_000).encode()
        )


@pytest.fixture
def timeline(tmp_path):
    repo = tmp_path / "timeline"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "timeline-point.json").write_text("{}")
    return repo


def test_the_bundle_names_what_a_cuda_host_lacks():
    names = {r.split("==")[0] for r in bundle.REQUIREMENTS}
    assert {"mlx", "mlx-cuda-13", "asv", "asv-runner", "mlx-lm", "mlx-whisper"} <= names
    assert all("==" in r for r in bundle.REQUIREMENTS), "every wheel is pinned"
    assert "manylinux_2_35_x86_64" in bundle.PLATFORMS and "manylinux2014_x86_64" in bundle.PLATFORMS


def test_parts_split_and_join_back_to_the_same_archive(tmp_path, timeline):
    out = tmp_path / "bundle"
    made = bundle.make(out, "3.12", 0.5, timeline, download=fake_download)
    assert len(made.wheels) == len(bundle.REQUIREMENTS)
    assert len(made.parts) >= 3 and all(p.size <= 0.5 * 2**20 for p in made.parts)
    assert sum(p.size for p in made.parts) == made.archive_size
    assert sorted(p.name for p in out.iterdir()) == sorted([bundle.MANIFEST, *(p.file for p in made.parts)])
    read = bundle.Manifest.read(out)
    assert read == made and read.timeline
    joined = bundle.joined(out, read, tmp_path)
    assert bundle.sha256_of(joined) == made.archive_sha256
    # one part: no size given
    single = bundle.make(tmp_path / "one", "3.12", None, None, download=fake_download)
    assert len(single.parts) == 1 and not single.timeline


def test_a_missing_or_damaged_part_is_named(tmp_path, timeline):
    out = tmp_path / "bundle"
    made = bundle.make(out, "3.12", 0.5, timeline, download=fake_download)
    (out / made.parts[1].file).unlink()
    with pytest.raises(bundle.BundleError, match=r"1 of \d+ bundle parts are not in .*part-001"):
        bundle.joined(out, made, tmp_path)
    made = bundle.make(out, "3.12", 0.5, timeline, download=fake_download)
    damaged = out / made.parts[0].file
    damaged.write_bytes(b"x" + damaged.read_bytes()[1:])
    with pytest.raises(bundle.BundleError, match="part-000 is damaged or from another bundle"):
        bundle.joined(out, made, tmp_path)


def test_a_bundle_for_another_python_is_refused_before_anything_is_installed(tmp_path):
    made = bundle.make(tmp_path / "b", "3.9", None, None, download=fake_download)
    with pytest.raises(bundle.BundleError, match=r"made for Python 3\.9 and this is Python 3\.\d+.*--python"):
        bundle.install(tmp_path / "b", tmp_path / "site", tmp_path / "timeline")
    assert not (tmp_path / "site").exists()
    assert made.python == "3.9"


def test_no_manifest_and_bad_part_size_are_one_line_errors(tmp_path):
    with pytest.raises(bundle.BundleError, match=r"bundle\.json is missing: point --bundle at the folder"):
        bundle.Manifest.read(tmp_path)
    with pytest.raises(bundle.BundleError, match="a part must be larger than 0 MB"):
        bundle.make(tmp_path, "3.12", -1, None, download=fake_download)


@pytest.mark.parametrize(
    ("found", "message"),
    [
        ({"torch": "2.13.0+cpu", "torch_cuda": False}, "sees no CUDA device.*CPU machines use"),
        (
            {"torch_cuda": True, "mlx_error": "ImportError: libcublas.so.13: cannot open shared object file"},
            "cannot load its libraries.*nvidia must point at",
        ),
        ({"torch_cuda": True, "mlx": "0.32.4", "mlx_cuda": False}, "has no CUDA device here.*mlx-cuda-13"),
        ({"torch_error": "ModuleNotFoundError: torch"}, "torch cannot be imported"),
    ],
)
def test_framework_checks_name_the_problem_and_the_fix(tmp_path, found, message):
    with pytest.raises(bundle.BundleError, match=message):
        bundle.check_frameworks(found, tmp_path)
    bundle.check_frameworks({"torch_cuda": True, "mlx": "0.32.4", "mlx_cuda": True}, tmp_path)


def test_mtb_gpu_on_a_machine_without_cuda_stops_with_one_line():
    """Here (no GPU): a clear refusal before anything runs, not a skip hidden in the results."""
    out = subprocess.run(
        [sys.executable, "-m", "tools.mtb", "gpu", "--install-only"],
        cwd=mtb.ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "sees no CUDA device" in lines[0], out.stderr


def test_machine_names_come_from_the_device():
    assert mtb._device_slug("NVIDIA H200") == "cuda-h200"
    assert mtb._device_slug("NVIDIA H100 80GB HBM3") == "cuda-h100-80gb-hbm3"


def test_mtb_gpu_starts_on_a_host_without_asv():
    """A CUDA host has no asv until the bundle is installed: mtb must get as far as its checks."""
    code = (
        "import sys; sys.modules['asv'] = None; sys.modules['asv.util'] = None;"
        "from tools import mtb; sys.exit(mtb.main(['gpu', '--install-only']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=mtb.ROOT, capture_output=True, text=True, check=False
    )
    assert out.returncode == 1 and "sees no CUDA device" in out.stderr, out.stderr


def test_a_python_that_is_not_major_minor_is_refused(tmp_path):
    with pytest.raises(bundle.BundleError, match=r"--python '3\.12\.1': give the host's Python as major"):
        bundle.make(tmp_path, "3.12.1", None, None, download=fake_download)
    assert not list(tmp_path.iterdir()), "nothing written"


def test_a_site_folder_holding_other_files_is_never_replaced(tmp_path):
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    bundle.make(tmp_path / "b", here, None, None, download=fake_download)
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / "torch").mkdir()
    with pytest.raises(bundle.BundleError, match="holds files no bundle installed: give --site a new"):
        bundle.install(tmp_path / "b", site, tmp_path / "timeline")
    assert (site / "torch").is_dir()


def test_a_failed_download_keeps_the_previous_bundle(tmp_path):
    made = bundle.make(tmp_path, "3.12", None, None, download=fake_download)

    def failing(requirements, python, dest):
        raise bundle.BundleError("pip could not download the wheels for Python 3.12: ERROR: no network")

    with pytest.raises(bundle.BundleError, match="no network"):
        bundle.make(tmp_path, "3.12", None, None, download=failing)
    assert bundle.Manifest.read(tmp_path) == made
    assert bundle.sha256_of(bundle.joined(tmp_path, made, tmp_path / "..")) == made.archive_sha256


@pytest.fixture
def host_environment(monkeypatch):
    """Restores what ``use_bundle_site`` changes in this process."""
    for name in ("PYTHONPATH", "ASV_PYTHONPATH", "PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(mtb, "probe_backends", lambda: {"mlx-gpu": None})
    return monkeypatch


def test_commands_on_a_gpu_host_run_with_the_installed_bundle(tmp_path, host_environment, capsys):
    """After `mtb gpu` installed a bundle, `mtb fidelity`, `mtb job` and `mtb probe` import what it
    installed, in their own process and in every process they start."""
    import os

    site = tmp_path / "site"
    site.mkdir()
    linked: list = []
    host_environment.setattr(mtb.bundle, "link_cuda_libraries", linked.append)
    host_environment.setattr(mtb, "BUNDLE_SITE", site)
    host_environment.setenv("PYTHONDONTWRITEBYTECODE", "1")
    mtb.main(["probe"])
    assert "mlx-gpu" in capsys.readouterr().out
    assert linked == [site] and sys.path[0] == str(site)
    for name in ("PYTHONPATH", "ASV_PYTHONPATH"):
        assert os.environ[name].split(os.pathsep) == [str(site), str(mtb.ROOT)]
    assert "PYTHONDONTWRITEBYTECODE" not in os.environ
    assert os.environ["PYTHONPYCACHEPREFIX"] == str(tmp_path / "pycache")


def test_without_an_installed_bundle_nothing_is_linked(tmp_path, host_environment):
    linked: list = []
    host_environment.setattr(mtb.bundle, "link_cuda_libraries", linked.append)
    host_environment.setattr(mtb, "BUNDLE_SITE", tmp_path / "never-installed")
    mtb.main(["probe"])
    assert linked == [] and str(tmp_path / "never-installed") not in sys.path


def test_a_bundle_whose_cuda_libraries_cannot_be_linked_stops_with_one_line(tmp_path, host_environment):
    def refuse(site):
        raise bundle.BundleError("no nvidia/ folder of CUDA libraries beside torch: install its CUDA build")

    (tmp_path / "site").mkdir()
    host_environment.setattr(mtb.bundle, "link_cuda_libraries", refuse)
    host_environment.setattr(mtb, "BUNDLE_SITE", tmp_path / "site")
    with pytest.raises(SystemExit, match=r"^mtb fidelity: no nvidia/ folder"):
        mtb.main(["fidelity", "--bench", "nothing"])
