"""The product ships without its simulator: the wheel's packages and the image's build context
leave sandbox/ (and the tests) out, while every app of the product is in."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_every_app_and_no_simulator() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = set(find_packages(where=str(ROOT), include=include))
    apps = {
        "config",
        "paycore",
        "orders",
        "payments",
        "refunds",
        "inbox",
        "reconciliation",
        "outbox",
        "channels",
        "schedulers",
    }
    assert apps <= packages
    assert not {p for p in packages if p.split(".")[0] in {"sandbox", "tests", "bench"}}


def test_the_image_build_context_leaves_the_simulator_out() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {"sandbox", "tests", "bench"} <= ignored


def test_no_product_module_imports_the_simulator() -> None:
    product = [
        "config",
        "paycore",
        "orders",
        "payments",
        "refunds",
        "inbox",
        "reconciliation",
        "channels",
        "schedulers",
    ]
    offenders = [
        str(path.relative_to(ROOT))
        for app in product
        for path in (ROOT / app).rglob("*.py")
        if any(
            line.lstrip().startswith(("from sandbox", "import sandbox"))
            for line in path.read_text(encoding="utf-8").splitlines()
        )
    ]
    assert offenders == []
