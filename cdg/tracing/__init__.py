"""Measuring a trained backbone and handing it to hwsim: the conv inventory and the hwsim layer rows
(``inventory``), the evaluation-set measurement and the trace writer (``measure``), the input-side
credit of the full MAC accounting (``input_credit``), and the hardware prices of gated MACs (``hw_prices``, the one cdg module that calls hwsim's models).

It reads gated convs through what they expose (``spec``, ``gate``, ``record``, ``record.zeroed_outputs()``) and does not import
``cdg.gating``, which builds on it."""
