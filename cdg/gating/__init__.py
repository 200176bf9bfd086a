"""Layer level and training control of Contrastive Dual Gating (CDG) and the dynamic-pruning
baselines (CGNet, FBS, DGNet). One job per module:

=====================  ==========================================================================
``registry``           gate method name -> its ``GateMethod`` class (one line per method)
``spec``               ``GateSpec`` (method, G / S / b structure, the method's own settings),
                       ``make_gate``, ``validate_gate``
``base``               the ``GateMethod`` contract, the ``GatedConv`` layer base, ``GateRecord``
``ops``                decision-grid pooling / expansion, straight-through gate, gated sum
``split``              base/conditional split shared by cdg and cgnet
``predictor``          what the predictor-gated methods (fbs, dgnet) share
``methods/<name>``     one gate method each: settings, validation, layer, MACs, regulariser
``native/``            CDG's fused C++ CPU kernels and the one module touching private torch APIs
``accounting``         method-neutral MAC counting of dense and gated convs (output-only
                       convention; the full one adds ``cdg.tracing.input_credit``)
``selection``          which convs are gated (``gate_for``, ``gate.static_off``) and the gated
                       backbone builders
``controller``         ``GateController``: schedule, regulariser, branch policy, target control
``cross_branch``       CDG's cross-branch term: gate agreement where the two views' crops overlap
``calibration``        the post-training gate shift that meets the target
``price_masks``        the model's own masks at a density, for hardware prices on real masks
=====================  ==========================================================================

Build a gated backbone without copying it::

    from cdg.gating.selection import default_selection, gated_conv_factory
    from cdg.gating.spec import make_gate
    from cdg.models.resnet import ResNet

    net = ResNet("resnet18", conv_factory=gated_conv_factory(default_selection(make_gate("cdg", groups=4))))

Each gated layer leaves a ``GateRecord`` (mask, differentiable density, per-image MACs) in
``layer.record`` after every forward; ``cdg.gating.base.collect_records(net)`` gathers them.

This package's ``__init__`` imports nothing: ``cdg.config`` reads ``registry`` without torch.
"""
