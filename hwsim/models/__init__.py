"""The accelerator models (systolic, sparse-PE, GPU) and the contract between them and ``hwsim.api``.

A model is a package ``hwsim/models/<name>/`` whose ``MODEL`` (a :class:`~hwsim.models.registry.Model`)
is found through :data:`hwsim.models.registry.MODELS` by the config's ``model`` field. It gives
its config class (a subclass of :class:`hwsim.models.base.AccelConfig`) and three functions:

``dense(work, cfg) -> Figures``
    one image of the layer with no sparsity exploited (the baseline every speed-up is against);
``sparse(work, cfg, gate_masks, act_masks, act_density) -> list[Figures]``
    one Figures per image. ``gate_masks``: bool (n, C_out, H_out, W_out), 1 = the output's
    conditional part is computed, or None for a layer without a gate (all outputs whole).
    ``act_masks``: bool (n_a, C_in, H_in, W_in), 1 = non-zero input activation, or None;
    ``act_density``: the trace's mean non-zero fraction of the input (statistics), or None.
    Models that do not exploit input zeros ignore both. With all gates on and no activation
    information the result must equal ``dense``. Without gate masks (an ungated layer) return
    ONE Figures, the exact mean over the activation images: the API aligns every layer with the
    gate-mask images and repeats one-image layers;
``granularity(work, cfg) -> str``
    the unit of work the hardware can skip for this layer (e.g. ``fold 32x32 outputs``).

:class:`hwsim.figures.Figures` carries what every model reports, including the typed loss fields;
``counters`` holds model-specific counts (folds, tiles, imbalance, metadata bits...) which end up
as extra CSV columns. Shared pieces: ``base.py`` (config base classes), ``kernel_helpers.py``
(numba helpers), ``hwsim/costs.py`` (energy / traffic / roofline arithmetic).
"""
