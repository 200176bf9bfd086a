"""hwsim: accelerator models that turn runtime sparsity traces into cycles, energy and traffic.

Never imports torch or cdg: traces (see ``hwsim.trace``) are the only contract.
"""
