"""Micro-benchmarks of the host CPU under torch, fitted into hwsim's cpu model config
(``accel_configs/cpu_host.yaml``): ``timing.py`` (medians of repeated calls), ``micro.py`` (the
benchmarks), ``fit.py`` (their parameters), ``host_yaml.py`` (the YAML with its provenance).
The command line is ``python -m cdg.calibrate_cpu``. Never fitted on whole networks: those are
the validation points (``python -m analysis.validate``).
"""
