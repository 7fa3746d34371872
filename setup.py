"""Build and install mptcpsec; the C core is compiled by cffi (csrc/build_core.py)."""

from pathlib import Path

from setuptools import find_packages, setup

TEST = [
    "pytest>=7.4",
    "pytest-timeout>=2.2",
    "hypothesis>=6.80",
    "ruff>=0.5",
    # The fuzz targets' short runs in the test suite (wheels for Linux x86_64/aarch64).
    'atheris>=2.3; platform_system == "Linux"',
    # Static types of the protocol engine ([tool.mypy] in pyproject.toml).
    "mypy>=1.8",
]
BENCH = [
    "pytest-benchmark>=4.0",
]

setup(
    name="mptcpsec",
    version="0.1.0",
    description="Secure multipath transport research toolkit: MPTCPsec records over TCP subflows",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["mptcpsec", "mptcpsec.*"]),
    package_data={"mptcpsec": ["py.typed", "*.pyi"]},
    setup_requires=["cffi>=1.16"],
    cffi_modules=["csrc/build_core.py:ffibuilder"],
    install_requires=[
        "cffi>=1.16",
        "cryptography>=42",
        "pynacl>=1.5",
        "matplotlib>=3.7",
        "rich>=13",
        "pyOpenSSL>=24",
        "scapy>=2.5",
    ],
    extras_require={"test": TEST, "bench": BENCH, "dev": TEST + BENCH},
    entry_points={"console_scripts": ["mptcpsec=mptcpsec.cli:main"]},
    zip_safe=False,
)
