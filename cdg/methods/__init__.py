"""Self-supervised methods (SimCLR, MoCo v2, BYOL, SimSiam) behind one interface, ``base.SSLMethod``.

One module per method holds its ``SSLMethod`` subclass; ``registry.METHOD_SPECS`` names each
method's class, config fields, presets and augmentation, and ``registry.build_method`` builds one
from the config's ``method`` section. This package file imports nothing, so that the torch-free
registry can be read by ``cdg.config``.
"""
