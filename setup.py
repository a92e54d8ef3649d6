"""setuptools shim: cffi's `cffi_modules` has no pyproject.toml form."""

from setuptools import setup

setup(cffi_modules=["csrc/build_core.py:ffibuilder"])
