"""Endpoint definitions plugged into :mod:`radsurv.study.engine`: survival and binary."""
