"""CDG's fused CPU gate kernels and the private torch APIs: ``loader`` builds and loads
``csrc/cdg_gate_cpu.cpp``, ``kernels`` calls it, ``torch_private`` is the one module that
touches private torch APIs."""
